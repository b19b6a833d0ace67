"""`/session/files`: list, upload (multipart, one file per request), download (302), delete.

Every route resumes the caller's active session first; another session's file is a 404, exactly
like a missing one. Upload bodies are capped before and while they are read (UploadLimitedRoute),
then streamed from Starlette's spooled temp file into the store by the upload protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Request, Response, UploadFile
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from starlette.datastructures import UploadFile as StarletteUploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message, Receive

from chat_app.api.deps import RequestContextDep, ServicesDep, SessionIdHeader, get_services
from chat_app.api.problems import problem_responses
from chat_app.api.rate_limit import limit_read, limit_upload
from chat_app.api.schemas import FilePublic, FilesPublic
from chat_app.errors import InvalidInput
from chat_app.services.file_rules import FileTooLarge
from chat_app.services.uploads import upload_stream

#: Room for the multipart framing (boundaries, part headers) around the file's own bytes.
MULTIPART_OVERHEAD = 64 * 1024
#: The multipart field carrying the upload.
FILE_FIELD = "file"


class RequestTooLarge(FileTooLarge):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"The request is larger than the {max_bytes / 2**20:g} MiB upload limit.")


class OneFilePerRequest(InvalidInput):
    type_slug = "one-file-per-request"

    def __init__(self) -> None:
        super().__init__(f"Send exactly one file per request, in the `{FILE_FIELD}` field.")


def _capped(receive: Receive, *, limit: int, max_bytes: int) -> Receive:
    """`receive`, raising RequestTooLarge once more than `limit` body bytes have arrived."""
    received = 0

    async def receive_capped() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise RequestTooLarge(max_bytes)
        return message

    return receive_capped


class UploadLimitedRoute(APIRoute):
    """A route whose request body may not exceed the upload limit plus the multipart framing.

    A declared Content-Length over the cap is refused before any byte is read; a body without
    one (chunked) is counted as it arrives, so Starlette never spools more than the cap to disk.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap FastAPI's handler with the body cap."""
        handle = super().get_route_handler()
        if self.body_field is None:
            return handle  # FastAPI never reads a body it does not expect

        async def handler(request: Request) -> Response:
            services = await get_services(request)
            max_bytes = services.files.limits.max_bytes
            limit = max_bytes + MULTIPART_OVERHEAD
            declared = request.headers.get("content-length", "")
            # isascii first: isdigit alone accepts "²", which int() refuses.
            if declared.isascii() and declared.isdigit() and int(declared) > limit:
                raise RequestTooLarge(max_bytes)
            capped = Request(request.scope, _capped(request.receive, limit=limit,
                                                    max_bytes=max_bytes))
            try:
                return await handle(capped)
            except StarletteHTTPException as exc:
                # FastAPI reports any failure while parsing the body as a 400; ours is a 413.
                if isinstance(exc.__cause__, RequestTooLarge):
                    raise exc.__cause__ from None
                raise

        return handler


async def require_one_file(request: Request) -> None:
    """422 when the multipart body carries more than one file (in any field)."""
    form = await request.form()  # already parsed (and cached) by FastAPI
    files = [value for _name, value in form.multi_items()
             if isinstance(value, StarletteUploadFile)]
    if len(files) > 1:
        raise OneFilePerRequest()


router = APIRouter(prefix="/session/files", tags=["files"], route_class=UploadLimitedRoute)


@router.get(
    "",
    dependencies=[Depends(limit_read)],
    responses=problem_responses(400, 404, 422, 429, 500, 503),
)
def list_files(
    session_id: SessionIdHeader, services: ServicesDep, ctx: RequestContextDep
) -> FilesPublic:
    """The session's stored files, oldest first."""
    views = services.files.list_files(session_id, ctx)
    return FilesPublic(items=[FilePublic.from_view(view) for view in views])


@router.post(
    "",
    status_code=201,
    dependencies=[Depends(limit_upload), Depends(require_one_file)],
    responses=problem_responses(400, 404, 409, 413, 415, 422, 429, 500, 503),
)
def upload_file(
    file: Annotated[UploadFile, File(description="The file; one per request.")],
    session_id: SessionIdHeader,
    services: ServicesDep,
    ctx: RequestContextDep,
) -> FilePublic:
    """Upload one file (multipart field `file`): 413 too large, 415 type, 409 too many files."""
    # A plain `def`: the protocol's store and database calls block, so it runs in a worker
    # thread, reading Starlette's spooled temp file chunk by chunk (never all in memory).
    view = upload_stream(services.files, session_id, file.filename or "", file.file, ctx)
    return FilePublic.from_view(view)


@router.get(
    "/{file_id}",
    status_code=302,
    response_class=RedirectResponse,
    dependencies=[Depends(limit_read)],
    responses={
        302: {"description": "Redirect to a short-lived download URL (attachment)."},
        **problem_responses(400, 404, 422, 429, 500, 503),
    },
)
def download_file(
    file_id: str, session_id: SessionIdHeader, services: ServicesDep, ctx: RequestContextDep
) -> RedirectResponse:
    """Redirect to a download URL minted now (valid 300 s, no session header needed)."""
    url = services.files.download_url(session_id, file_id, ctx)
    return RedirectResponse(url, status_code=302)


@router.delete(
    "/{file_id}",
    status_code=204,
    response_class=Response,
    dependencies=[Depends(limit_upload)],
    responses=problem_responses(400, 404, 422, 429, 500, 503),
)
def delete_file(
    file_id: str, session_id: SessionIdHeader, services: ServicesDep, ctx: RequestContextDep
) -> Response:
    """Delete one of the session's files; deleting twice is harmless (204 both times).

    Counted against `upload`, not `read`: a delete is a write, and sharing the upload budget
    bounds upload/delete churn per session.
    """
    services.files.delete_file(session_id, file_id, ctx)
    return Response(status_code=204)
