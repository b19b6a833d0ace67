"""/session/messages (history, send as JSON or server-sent events) and /session/transcript."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx
import jsonschema_rs
import pytest
from sqlmodel import Session, func, select

from chat_app.container import Services, build_services
from chat_app.models import ChatMessage, UserSession
from chat_app.services.assistant.retrieval import NO_FILES
from chat_app.services.audit import RequestContext
from tests.api.support import (
    HIGH_LIMITS,
    Api,
    assert_no_echo,
    assert_problem,
    serve_over_http,
)
from tests.fake_openai import tokenize

MESSAGE_KEYS = {"id", "role", "content", "status", "created_at", "citations"}
CITATION_KEYS = {"file_id", "filename", "page"}
SSE = {"Accept": "text/event-stream"}
ROUTES = [
    ("get", "/session/messages"),
    ("post", "/session/messages"),
    ("get", "/session/transcript"),
]
HANDBOOK = (
    b"Vacation policy. Every employee gets twenty-five days of paid vacation per year.\n\n"
    b"Unused vacation days expire at the end of March of the following year.\n"
)
RATELIMIT = re.compile(r'"messages";r=0;t=(?P<t>\d+)')


# --- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def openai_api(make_api, fake) -> Api:
    """An app whose assistant is the OpenAI backend, pointed at the fake server."""
    return make_api(
        CHAT_APP_ASSISTANT="openai",
        OPENAI_BASE_URL=fake.base_url,
        OPENAI_API_KEY="sk-test",
        CHAT_APP_OPENAI_MODEL="fake-model",
    )


def send(api: Api, session_id: str | None, content: object, **kwargs) -> httpx.Response:
    return api.post("/session/messages", session_id, json={"content": content}, **kwargs)


def call(api: Api, method: str, path: str, session_id: str | None, **kwargs) -> httpx.Response:
    if method == "post":
        return api.post(path, session_id, json={"content": "hello there"}, **kwargs)
    return api.get(path, session_id, **kwargs)


def history(api: Api, session_id: str) -> list[dict]:
    response = api.get("/session/messages", session_id)
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"items"}
    return response.json()["items"]


def rows_in_db(api: Api, session_id: str) -> int:
    """chat_messages rows of a session, whatever its status (an unknown id has none)."""
    with Session(api.services.engine) as db:
        return db.exec(
            select(func.count())
            .select_from(ChatMessage)
            .join(UserSession, UserSession.id == ChatMessage.session_id)
            .where(UserSession.uuid == session_id)
        ).one()


def assert_message(message: dict, *, role: str, status: str = "complete") -> datetime:
    """SPEC §8 shape; returns created_at, which must be UTC ISO-8601."""
    assert set(message) == MESSAGE_KEYS
    assert isinstance(message["id"], int)
    assert (message["role"], message["status"]) == (role, status)
    assert isinstance(message["content"], str) and isinstance(message["citations"], list)
    for citation in message["citations"]:
        assert set(citation) == CITATION_KEYS
    created = datetime.fromisoformat(message["created_at"])
    assert created.utcoffset() == timedelta(0), message["created_at"]
    assert abs(datetime.now(created.tzinfo) - created) < timedelta(minutes=5)
    return created


def parse_events(response: httpx.Response) -> list[tuple[str, object]]:
    """Server-sent events as (name, JSON data); every event is one `event:` and one `data:` line."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    text = response.text
    assert text.endswith("\n\n")
    events = []
    for block in text[:-2].split("\n\n"):
        lines = block.split("\n")
        assert len(lines) == 2, repr(block)
        name, data = lines
        assert name.startswith("event: ") and data.startswith("data: "), repr(block)
        events.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return events


def split_events(events: list[tuple[str, object]]) -> tuple[dict, list[str], list[dict], object]:
    """(message, token texts, error payloads, done payload), checking the order of events."""
    names = [name for name, _ in events]
    assert names[0] == "message" and names[-1] == "done", names
    assert names.count("message") == 1 and names.count("done") == 1, names
    middle = names[1:-1]
    # Tokens first, then at most one error.
    assert middle == ["token"] * middle.count("token") + ["error"] * middle.count("error"), names
    assert middle.count("error") <= 1
    tokens = []
    for name, data in events:
        if name == "token":
            assert isinstance(data, dict) and set(data) == {"text"}
            tokens.append(data["text"])
    errors = [data for name, data in events if name == "error"]
    return events[0][1], tokens, errors, events[-1][1]  # type: ignore[return-value]


# --- history and sending as JSON -------------------------------------------------------------


def test_history_of_a_new_session_is_empty(api):
    session_id = api.new_session()

    response = api.get("/session/messages", session_id)

    assert response.status_code == 200
    assert response.json() == {"items": []}


def test_send_returns_the_saved_message_and_reply(api):
    session_id = api.new_session()

    response = send(api, session_id, "What can you do?")

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"message", "reply"}
    asked = assert_message(body["message"], role="user")
    answered = assert_message(body["reply"], role="assistant")
    assert body["message"]["content"] == "What can you do?"
    assert body["message"]["citations"] == []
    assert body["reply"]["content"] == NO_FILES  # the offline assistant, no files attached
    assert body["reply"]["id"] > body["message"]["id"]
    assert answered >= asked


def test_history_lists_messages_and_replies_in_order(api):
    session_id = api.new_session()
    first = send(api, session_id, "first question").json()
    second = send(api, session_id, "second question").json()

    items = history(api, session_id)

    assert items == [first["message"], first["reply"], second["message"], second["reply"]]
    assert [m["role"] for m in items] == ["user", "assistant", "user", "assistant"]
    assert [m["id"] for m in items] == sorted(m["id"] for m in items)


def test_send_is_audited_with_lengths_only(api):
    session_id = api.new_session()
    secret = "my locker code is 4711"

    response = send(api, session_id, secret, headers={"X-Request-Id": "send-audit-1"})

    assert response.status_code == 200
    rows = api.audit_rows(request_id="send-audit-1")
    assert [row.event for row in rows] == ["message.sent"]
    assert rows[0].details == {"chars": len(secret)}
    assert rows[0].session_ref == api.services.audit.session_ref(session_id)


def test_control_characters_are_dropped_and_ends_trimmed(api):
    session_id = api.new_session()

    body = send(api, session_id, "  hello\u0000 wor\u200bld\n\tagain \r\n").json()

    assert body["message"]["content"] == "hello world\n\tagain"
    assert history(api, session_id)[0]["content"] == "hello world\n\tagain"


def test_exactly_8000_characters_are_accepted(api):
    session_id = api.new_session()
    content = "word " * 1599 + "last."  # 8000 characters

    response = send(api, session_id, content)

    assert len(content) == 8000
    assert response.status_code == 200, response.text
    assert response.json()["message"]["content"] == content
    assert history(api, session_id)[0]["content"] == content


@pytest.mark.parametrize("text", [b"the and of it", b"!!! ??? ...", b'{"a": "\\u0000"}'])
def test_files_without_a_searchable_word_do_not_break_the_reply(api, text):
    # Regression: bm25s refuses to index a corpus without a single term (stopwords and
    # punctuation only), which made every later message of the session a 500.
    session_id = api.new_session()
    uploaded = api.upload(session_id, "notes.json" if text.startswith(b"{") else "notes.txt", text)
    assert uploaded.status_code == 201, uploaded.text

    response = send(api, session_id, "What does the vacation policy say?")

    assert response.status_code == 200, response.text
    assert response.json()["reply"]["status"] == "complete"
    assert response.json()["reply"]["citations"] == []


def test_openai_reply_as_json(openai_api, fake):
    session_id = openai_api.new_session()
    fake.reply_text = "Here is **my** answer."

    body = send(openai_api, session_id, "Hi model").json()

    assert body["reply"]["content"] == "Here is **my** answer."
    assert body["reply"]["status"] == "complete"
    assert fake.requests[-1]["messages"][-1] == {"role": "user", "content": "Hi model"}


def test_openai_401_as_json_is_a_failed_reply_and_keeps_the_question(openai_api):
    session_id = openai_api.new_session()

    response = send(openai_api, session_id, "Hi [fake:401]")

    assert response.status_code == 200
    body = response.json()
    assert body["message"]["content"] == "Hi [fake:401]"
    assert_message(body["reply"], role="assistant", status="failed")
    assert "401" in body["reply"]["content"] and "OPENAI_API_KEY" in body["reply"]["content"]
    assert history(openai_api, session_id) == [body["message"], body["reply"]]


# --- server-sent events ----------------------------------------------------------------------


def test_sse_streams_message_tokens_and_done(api):
    session_id = api.new_session()
    assert api.upload(session_id, "handbook.txt", HANDBOOK).status_code == 201

    response = send(api, session_id, "How many vacation days do employees get?", headers=SSE)

    assert response.headers["cache-control"] == "no-store"
    message, tokens, errors, done = split_events(parse_events(response))
    assert errors == []
    assert_message(message, role="user")
    assert message["content"] == "How many vacation days do employees get?"
    assert len(tokens) > 1
    assert isinstance(done, dict)
    assert_message(done, role="assistant")
    assert done["content"] == "".join(tokens)
    assert "twenty-five days" in done["content"]
    assert any("\n" in token for token in tokens)  # newlines travel inside one data line
    assert [c["filename"] for c in done["citations"]] == ["handbook.txt"]
    assert history(api, session_id) == [message, done]


def test_sse_tokens_with_newlines_arrive_intact(openai_api, fake):
    session_id = openai_api.new_session()
    fake.reply_text = "Line one\nline two\n\n- item\r\n\ndata: not an event\n\nevent: done\n"

    response = send(openai_api, session_id, "Give me lines", headers=SSE)

    _, tokens, errors, done = split_events(parse_events(response))
    assert errors == []
    assert tokens == tokenize(fake.reply_text)
    assert isinstance(done, dict) and done["content"] == fake.reply_text


def test_sse_openai_401_sends_error_then_failed_done(openai_api):
    session_id = openai_api.new_session()

    response = send(openai_api, session_id, "Hello [fake:401]", headers=SSE)

    message, tokens, errors, done = split_events(parse_events(response))
    assert tokens == []
    [error] = errors
    assert "401" in error["detail"] and "OPENAI_API_KEY" in error["detail"]
    assert isinstance(done, dict)
    assert_message(done, role="assistant", status="failed")
    assert done["content"] == error["detail"]
    assert history(openai_api, session_id) == [message, done]


def documented_events(api: Api) -> tuple[dict, dict]:
    """The documented schema of one server-sent event of POST /session/messages, and the
    document's components (its $refs point there)."""
    document = api.get("/openapi.json").json()
    content = document["paths"]["/api/v1/session/messages"]["post"]["responses"]["200"]["content"]
    return content["text/event-stream"]["schema"], document["components"]


def conforms(event: dict[str, str], schema: dict, components: dict) -> bool:
    """The event's fields match the schema, and its `data` JSON its event's `contentSchema`."""
    if not jsonschema_rs.validator_for({**schema, "components": components}).is_valid(event):
        return False
    [branch] = [branch["properties"]["data"] for branch in schema["oneOf"]
                if branch["properties"]["event"]["const"] == event["event"]]
    assert branch["contentMediaType"] == "application/json"
    payload = jsonschema_rs.validator_for({**branch["contentSchema"], "components": components})
    return payload.is_valid(json.loads(event["data"]))


@pytest.mark.parametrize("content", ["Hello", "Hello [fake:401]"], ids=["reply", "error"])
def test_streamed_events_match_their_documented_schema(openai_api, content):
    # Regression (schemathesis, response_schema_conformance): the stream was documented as one
    # string, which tells clients nothing; each event is an object naming what its JSON carries.
    schema, components = documented_events(openai_api)
    session_id = openai_api.new_session()

    response = send(openai_api, session_id, content, headers=SSE)

    events = [{"event": name, "data": json.dumps(data)} for name, data in parse_events(response)]
    assert {event["event"] for event in events} >= {"message", "done"}
    for event in events:
        assert conforms(event, schema, components), event
    assert not conforms({"event": "token", "data": json.dumps({"txt": "x"})}, schema, components)
    assert not conforms({"event": "party", "data": "{}"}, schema, components)


def test_sse_cut_stream_keeps_the_partial_reply(openai_api, fake):
    session_id = openai_api.new_session()

    response = send(openai_api, session_id, "Go [fake:cut]", headers=SSE)

    message, tokens, errors, done = split_events(parse_events(response))
    assert tokens == tokenize(fake.reply_text)[:3]
    [error] = errors
    assert "dropped" in error["detail"]
    assert isinstance(done, dict)
    assert_message(done, role="assistant", status="incomplete")
    assert done["content"] == "".join(tokens)
    assert history(openai_api, session_id) == [message, done]


# --- bad input ---------------------------------------------------------------------------------


MARK = "zq-7781-mark"


@pytest.mark.parametrize(
    ("body", "slug"),
    [
        pytest.param({"content": ""}, "invalid-request", id="empty"),
        pytest.param({"content": " \n\t \u00a0 "}, "invalid-message", id="whitespace"),
        pytest.param({"content": "\u0000\u200b"}, "invalid-message", id="only-controls"),
        pytest.param(
            {"content": MARK + "x" * (8001 - len(MARK))}, "invalid-request", id="8001-chars"
        ),
        pytest.param({}, "invalid-request", id="missing"),
        pytest.param({"content": "hi", "role": "assistant"}, "invalid-request", id="extra"),
        pytest.param({"content": "hi", f"<b>{MARK}</b>": 1}, "invalid-request", id="extra-key"),
        pytest.param({"content": 42}, "invalid-request", id="number"),
        pytest.param({"content": [MARK]}, "invalid-request", id="list"),
        pytest.param({"content": None}, "invalid-request", id="null"),
        pytest.param([MARK], "invalid-request", id="not-an-object"),
    ],
)
def test_bad_content_is_422_and_nothing_is_saved(api, body, slug):
    session_id = api.new_session()

    response = api.post("/session/messages", session_id, json=body)

    assert_problem(response, 422, slug)
    assert_no_echo(response, MARK)
    assert history(api, session_id) == []
    assert rows_in_db(api, session_id) == 0


@pytest.mark.parametrize("headers", [{}, SSE])
def test_non_json_body_is_422(api, headers):
    session_id = api.new_session()

    response = api.post(
        "/session/messages",
        session_id,
        content=b"content=" + MARK.encode(),
        headers={"Content-Type": "application/json", **headers},
    )

    assert_problem(response, 422, "invalid-request")
    assert_no_echo(response, MARK)
    assert history(api, session_id) == []


# --- session header and unknown sessions ---------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_missing_session_header_is_400(api, method, path):
    assert_problem(call(api, method, path, None), 400, "missing-session-id")


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_malformed_session_id_is_400_without_echo(api, method, path):
    bad = "3f2b8c1e-9a4d-4c6b-8e2f-1a2b3c4d5e6fZZ"

    response = call(api, method, path, bad)

    assert_problem(response, 400, "malformed-session-id")
    assert_no_echo(response, bad)


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_unknown_reset_and_expired_sessions_are_one_404(api, method, path):
    unknown_body = api.get("/session", str(uuid.uuid4())).json()
    reset = api.new_session()
    assert api.post("/session/reset", reset).status_code == 201
    expired = api.new_session()
    api.services.sessions.expire(expired, RequestContext(actor="cli"), reason="idle")

    for session_id in (str(uuid.uuid4()), reset, expired):
        for headers in ({}, SSE):
            response = call(api, method, path, session_id, headers=headers)
            body = assert_problem(response, 404, "session-not-found")
            assert_no_echo(response, session_id)
            assert {**body, "request_id": None} == {**unknown_body, "request_id": None}
            assert rows_in_db(api, session_id) == 0


# --- rate limit ----------------------------------------------------------------------------------


def test_messages_limit_is_per_session_429_with_headers_and_audit(make_api):
    api = make_api(
        CHAT_APP_RATE_LIMITS=HIGH_LIMITS.replace("messages=10000/minute", "messages=3/minute")
    )
    session_id, other = api.new_session(), api.new_session()

    sent = [send(api, session_id, f"question {i}") for i in range(3)]
    refused = send(api, session_id, "one too many", headers={"X-Request-Id": "over-1"})

    assert [r.status_code for r in sent] == [200, 200, 200]
    assert sent[0].headers["ratelimit-policy"] == '"messages";q=3;w=60'
    assert sent[2].headers["ratelimit"].startswith('"messages";r=0;')
    assert_problem(refused, 429, "rate-limited")
    retry_after = int(refused.headers["retry-after"])
    assert 1 <= retry_after <= 60
    assert refused.headers["ratelimit-policy"] == '"messages";q=3;w=60'
    match = RATELIMIT.fullmatch(refused.headers["ratelimit"])
    assert match is not None and int(match["t"]) == retry_after
    [row] = api.audit_rows(request_id="over-1")
    assert (row.event, row.details) == ("rate_limited", {"limit": "messages"})
    assert row.session_ref == api.services.audit.session_ref(session_id)
    # Nothing of the refused message was saved; reads and other sessions are not affected.
    listed = api.get("/session/messages", session_id)
    assert listed.headers["ratelimit-policy"].startswith('"read";')
    assert [m["content"] for m in listed.json()["items"] if m["role"] == "user"] == [
        "question 0",
        "question 1",
        "question 2",
    ]
    assert send(api, other, "my first").status_code == 200
    assert_problem(send(api, session_id, "still refused", headers=SSE), 429, "rate-limited")


# --- transcript and reset ------------------------------------------------------------------------


def test_transcript_is_a_markdown_attachment(api):
    session_id = api.new_session()
    assert api.upload(session_id, "handbook.txt", HANDBOOK).status_code == 201
    turn = send(api, session_id, "How many vacation days do employees get?").json()

    response = api.get("/session/transcript", session_id)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/markdown")
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment") and ".md" in disposition
    text = response.text
    assert "How many vacation days do employees get?" in text
    assert "twenty-five days of paid vacation" in text
    assert "handbook.txt" in text
    assert text.index("How many vacation days") < text.index(turn["reply"]["content"][:20])
    assert session_id not in text and session_id not in response.headers.get(
        "content-disposition", ""
    )


def test_transcript_of_an_empty_session(api):
    session_id = api.new_session()

    response = api.get("/session/transcript", session_id)

    assert response.status_code == 200
    assert "No messages." in response.text and "No files." in response.text


def test_reset_starts_an_empty_history_and_the_old_transcript_is_gone(api):
    old = api.new_session()
    send(api, old, "remember this")
    assert rows_in_db(api, old) == 2

    new = api.post("/session/reset", old).json()["session_id"]

    assert history(api, new) == []
    assert_problem(api.get("/session/transcript", old), 404, "session-not-found")
    assert_problem(api.get("/session/messages", old), 404, "session-not-found")
    assert rows_in_db(api, old) == 0  # erased with the reset
    assert "remember this" not in api.get("/session/transcript", new).text


# --- over real HTTP: streaming, a client that goes away, a reset mid-reply -----------------------


@pytest.fixture
def served(make_settings, fake) -> Iterator[tuple[str, Services]]:
    """The API on uvicorn (real streaming), its assistant the OpenAI backend on the fake."""
    services = build_services(
        make_settings(
            CHAT_APP_RATE_LIMITS=HIGH_LIMITS,
            CHAT_APP_ASSISTANT="openai",
            OPENAI_BASE_URL=fake.base_url,
            OPENAI_API_KEY="sk-test",
        )
    )
    with serve_over_http(services) as url:
        yield f"{url}/api/v1", services


def live_events(response: httpx.Response) -> Iterator[tuple[str, object, float]]:
    """(name, data, arrival time) of each event as it arrives."""
    name = data = None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data = json.loads(line.removeprefix("data: "))
        elif line == "" and name is not None:
            yield name, data, time.monotonic()
            name = data = None


def saved_messages(services: Services, session_id: str) -> list[ChatMessage]:
    with Session(services.engine) as db:
        rows = db.exec(
            select(ChatMessage)
            .join(UserSession, UserSession.id == ChatMessage.session_id)
            .where(UserSession.uuid == session_id)
            .order_by(ChatMessage.id)
        ).all()
        return [ChatMessage.model_validate(row) for row in rows]


def test_tokens_are_flushed_as_they_arrive(served, fake):
    base_url, _ = served
    fake.reply_text = "one two three four five six"
    fake.token_delay_s = 0.2
    with httpx.Client(base_url=base_url, timeout=10) as client:
        session_id = client.post("/session").json()["session_id"]
        with client.stream(
            "POST",
            "/session/messages",
            json={"content": "count"},
            headers={**SSE, "X-Session-Id": session_id},
        ) as response:
            assert response.status_code == 200
            events = list(live_events(response))

    arrivals = {name: at for name, _, at in reversed(events)}  # first arrival of each name
    assert [name for name, _, _ in events] == ["message"] + ["token"] * 6 + ["done"]
    assert events[-1][2] - arrivals["token"] > 0.7, "tokens were held back until the end"


def test_client_going_away_mid_reply_saves_what_arrived_as_incomplete(served, fake):
    base_url, services = served
    fake.token_delay_s = 0.3
    received: list[str] = []
    with httpx.Client(base_url=base_url, timeout=10) as client:
        session_id = client.post("/session").json()["session_id"]
        with client.stream(
            "POST",
            "/session/messages",
            json={"content": "[fake:slow]"},
            headers={**SSE, "X-Session-Id": session_id},
        ) as response:
            for name, data, _ in live_events(response):
                if name == "token":
                    received.append(data["text"])  # type: ignore[index]
                if len(received) == 2:
                    break  # leaving the block closes the connection

    deadline = time.monotonic() + 5
    while len(saved_messages(services, session_id)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    question, reply = saved_messages(services, session_id)
    assert (question.role, question.content) == ("user", "[fake:slow]")
    assert (reply.role, reply.status) == ("assistant", "incomplete")
    assert reply.content.startswith("".join(received))
    assert len(reply.content) < len(fake.slow_reply_text)


def test_reset_during_a_reply_saves_nothing_into_the_ended_session(served, fake):
    base_url, services = served
    fake.reply_text = "word " * 8
    fake.token_delay_s = 0.2
    with httpx.Client(base_url=base_url, timeout=20) as client:
        session_id = client.post("/session").json()["session_id"]
        with client.stream(
            "POST",
            "/session/messages",
            json={"content": "go on"},
            headers={**SSE, "X-Session-Id": session_id},
        ) as response:
            events = []
            for name, data, _ in live_events(response):
                events.append((name, data))
                if name == "token" and len(events) == 2:
                    reset = client.post("/session/reset", headers={"X-Session-Id": session_id})
                    assert reset.status_code == 201

    assert events[0][0] == "message" and events[-1] == ("done", None)
    assert saved_messages(services, session_id) == []


# --- OpenAPI -------------------------------------------------------------------------------------


def test_openapi_documents_the_three_operations(api):
    document = api.get("/openapi.json").json()
    paths = document["paths"]
    errors = {"400", "404", "422", "429", "500", "503"}

    listing = paths["/api/v1/session/messages"]["get"]
    sending = paths["/api/v1/session/messages"]["post"]
    exporting = paths["/api/v1/session/transcript"]["get"]

    for operation in (listing, sending, exporting):
        assert set(operation["responses"]) == {"200"} | errors
        for status in errors:
            assert operation["responses"][status]["content"] == {
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
            }
        assert {p["name"]: p["in"] for p in operation["parameters"]} == {"X-Session-Id": "header"}
    assert set(sending["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
    assert set(exporting["responses"]["200"]["content"]) == {"text/markdown"}
    body = sending["requestBody"]["content"]["application/json"]["schema"]
    schema = document["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    assert schema["properties"]["content"]["minLength"] == 1
    assert schema["properties"]["content"]["maxLength"] == 8000
    assert schema["additionalProperties"] is False
