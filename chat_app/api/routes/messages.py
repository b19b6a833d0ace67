"""`/session/messages` (history, send with a JSON or streamed reply) and `/session/transcript`.

The user's message is saved before the reply starts, so an assistant failure never loses it;
the reply is saved when its stream ends, also when the client goes away mid-stream.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse

from chat_app.api.deps import RequestContextDep, ServicesDep, SessionIdHeader
from chat_app.api.problems import problem_responses
from chat_app.api.rate_limit import limit_messages, limit_read
from chat_app.api.schemas import MessageIn, MessagePublic, MessagesPublic, TurnPublic
from chat_app.services.chat import Reply

EVENT_STREAM = "text/event-stream"
MARKDOWN = "text/markdown; charset=utf-8"

router = APIRouter(prefix="/session", tags=["messages"])

MESSAGE_SCHEMA = {"$ref": "#/components/schemas/MessagePublic"}


def _event_schema(name: str, payload: dict) -> dict:
    return {
        "properties": {
            "event": {"const": name},
            "data": {"type": "string", "contentMediaType": "application/json",
                     "contentSchema": payload},
        },
    }


#: One server-sent event as a client's parser hands it over (OpenAPI 3.2's model of an event
#: stream item, which tools reading 3.1 apply to `schema`): its name and one line of JSON.
EVENT_SCHEMA = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"enum": ["message", "token", "error", "done"]},
        "data": {"type": "string"},
    },
    "oneOf": [
        _event_schema("message", MESSAGE_SCHEMA),
        _event_schema("token", {"type": "object", "required": ["text"],
                                "properties": {"text": {"type": "string"}}}),
        _event_schema("error", {"type": "object", "required": ["detail"],
                                "properties": {"detail": {"type": "string"}}}),
        _event_schema("done", {"anyOf": [MESSAGE_SCHEMA, {"type": "null"}]}),
    ],
}


@router.get(
    "/messages",
    dependencies=[Depends(limit_read)],
    responses=problem_responses(400, 404, 422, 429, 500, 503),
)
def list_messages(
    session_id: SessionIdHeader, services: ServicesDep, ctx: RequestContextDep
) -> MessagesPublic:
    """The conversation, oldest first."""
    views = services.chat.history(session_id, ctx)
    return MessagesPublic(items=[MessagePublic.from_view(view) for view in views])


@router.post(
    "/messages",
    dependencies=[Depends(limit_messages)],
    responses={
        200: {
            "description": "The saved message and reply as JSON, or, when the request's "
            "`Accept` is `text/event-stream`, server-sent events: `message` (the saved user "
            "message), `token` (`{\"text\"}` pieces of the reply), `error` (`{\"detail\"}`, "
            "when the assistant failed) and `done` (the saved reply).",
            "content": {EVENT_STREAM: {"schema": EVENT_SCHEMA}},
        },
        **problem_responses(400, 404, 422, 429, 500, 503),
    },
)
async def send_message(
    body: MessageIn,
    request: Request,
    session_id: SessionIdHeader,
    services: ServicesDep,
    ctx: RequestContextDep,
) -> TurnPublic:
    """Send a message; the reply comes as JSON, or streamed when `Accept: text/event-stream`."""
    turn = await run_in_threadpool(services.chat.begin_turn, session_id, body.content, ctx)
    reply = services.chat.reply(turn)
    message = MessagePublic.from_view(turn.message)
    if EVENT_STREAM in request.headers.get("accept", ""):
        return StreamingResponse(  # type: ignore[return-value]
            _events(message, reply),
            media_type=EVENT_STREAM,
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
    async for _piece in reply.tokens():
        pass
    return TurnPublic(message=message, reply=_public(reply))


@router.get(
    "/transcript",
    dependencies=[Depends(limit_read)],
    response_class=Response,
    responses={
        200: {"description": "The conversation and the file list as Markdown.",
              "content": {"text/markdown": {"schema": {"type": "string"}}}},
        **problem_responses(400, 404, 422, 429, 500, 503),
    },
)
def transcript(
    session_id: SessionIdHeader, services: ServicesDep, ctx: RequestContextDep
) -> Response:
    """Download the session's transcript (Markdown)."""
    document = services.chat.transcript(session_id, ctx)
    return Response(
        document,
        media_type=MARKDOWN,
        headers={"Content-Disposition": 'attachment; filename="transcript.md"'},
    )


def _public(reply: Reply) -> MessagePublic | None:
    return MessagePublic.from_view(reply.message) if reply.message is not None else None


async def _events(message: MessagePublic, reply: Reply) -> AsyncIterator[str]:
    yield _event("message", message.model_dump(mode="json"))
    async for piece in reply.tokens():
        yield _event("token", {"text": piece})
    if reply.error is not None:
        yield _event("error", {"detail": reply.error.detail})
    saved = _public(reply)
    yield _event("done", saved.model_dump(mode="json") if saved is not None else None)


def _event(name: str, data: object) -> str:
    # json.dumps escapes newlines, so every payload is exactly one `data:` line.
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"

