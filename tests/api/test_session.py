"""POST /session and GET /session: create, validate + resume, and the refusals."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime, timedelta

import pytest

from chat_app.models import utcnow
from chat_app.services.audit import RequestContext
from chat_app.services.sessions import SessionPolicy, SessionService
from tests.api.support import SESSION_KEYS, assert_no_echo, assert_problem
from tests.malformed_ids import MALFORMED_IDS, VALID_ID


def _parse_utc(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    assert value.utcoffset() == timedelta(0), text
    return value


def test_create_returns_201_session(api):
    response = api.post("/session")

    assert response.status_code == 201
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == SESSION_KEYS
    assert body["status"] == "active"
    created = _parse_utc(body["created_at"])
    assert _parse_utc(body["last_seen_at"]) == created
    assert _parse_utc(body["expires_at"]) == created + timedelta(days=14)
    assert uuid.UUID(body["session_id"]).version == 4


def test_create_is_audited_as_api(api):
    response = api.post("/session", headers={"X-Request-Id": f"create-{uuid.uuid4().hex}"})

    [row] = api.audit_rows(request_id=response.headers["x-request-id"])
    assert (row.event, row.actor, row.details) == ("session.created", "api", {"reason": "api"})
    assert row.session_ref is not None
    assert response.json()["session_id"] not in repr(row.model_dump())


def test_resume_returns_200_same_session(api):
    session_id = api.new_session()

    response = api.get("/session", session_id)

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["session_id"] == session_id
    assert response.json()["status"] == "active"


def test_resume_accepts_uppercase_and_canonicalises(api):
    session_id = api.new_session()

    response = api.get("/session", session_id.upper())

    assert response.status_code == 200
    assert response.json()["session_id"] == session_id


def test_missing_header_is_400(api):
    body = assert_problem(api.get("/session"), 400, "missing-session-id")
    assert "X-Session-Id" in body["detail"]


@pytest.mark.parametrize("name", ["session_id", "sid", "X-Session-Id"])
def test_id_in_query_is_ignored(api, name):
    session_id = api.new_session()

    response = api.get("/session", params={name: session_id})

    assert_problem(response, 400, "missing-session-id")
    assert_no_echo(response, session_id)


@pytest.mark.parametrize("bad_id", MALFORMED_IDS, ids=[f"m{i}" for i in range(len(MALFORMED_IDS))])
def test_malformed_id_is_400_without_echo(api, bad_id):
    response = api.get("/session", bad_id)

    assert_problem(response, 400, "malformed-session-id")
    assert_no_echo(response, bad_id)


@pytest.mark.parametrize(
    "raw",
    [
        VALID_ID.replace("a", "\xe4").encode("latin-1"),  # Latin-1 letter, same length
        ("\xbd" * 36).encode("latin-1"),
        VALID_ID[:-1].encode() + b"\xff",
    ],
    ids=["latin1-letter", "latin1-only", "trailing-0xff"],
)
def test_non_ascii_bytes_are_400(api, raw):
    response = api.client.get("/api/v1/session", headers={"X-Session-Id": raw})

    assert_problem(response, 400, "malformed-session-id")
    assert raw.decode("latin-1") not in response.text


def test_unknown_ended_and_expired_share_one_404_body(api):
    active = api.new_session()
    ended = api.new_session()
    assert api.post("/session/reset", ended).status_code == 201
    marked_expired = api.new_session()
    api.services.sessions.expire(marked_expired, RequestContext(actor="cli"), reason="idle")

    bodies = []
    for session_id in (str(uuid.uuid4()), ended, marked_expired):
        response = api.get("/session", session_id)
        body = assert_problem(response, 404, "session-not-found")
        assert_no_echo(response, session_id)
        body.pop("request_id")
        bodies.append(body)

    assert bodies[0] == bodies[1] == bodies[2]
    assert api.get("/session", active).status_code == 200


def test_idle_session_expires_with_the_same_404(api):
    offset = [timedelta(0)]
    services = api.services
    policy = SessionPolicy(idle=timedelta(days=14), max_age=timedelta(days=90))
    clocked = SessionService(
        services.engine, audit=services.audit, policy=policy, clock=lambda: utcnow() + offset[0]
    )
    api.client.app.state.services_provider = lambda: dataclasses.replace(
        services, sessions=clocked
    )
    session_id = api.new_session()
    unknown = api.get("/session", str(uuid.uuid4())).json()

    offset[0] = timedelta(days=15)
    expired = api.get("/session", session_id)

    body = assert_problem(expired, 404, "session-not-found")
    assert {**body, "request_id": None} == {**unknown, "request_id": None}
    assert api.session_row(session_id).status == "expired"
    offset[0] = timedelta(0)
    assert api.get("/session", session_id).status_code == 404


def test_rejections_create_no_rows(api):
    unknown = str(uuid.uuid4())
    api.get("/session", unknown)

    with pytest.raises(Exception, match="No row"):
        api.session_row(unknown)


def test_audit_lists_this_sessions_events(api):
    session_id = api.new_session()
    other = api.new_session()

    response = api.get("/session/audit", session_id)

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    items = response.json()["items"]
    assert [item["event"] for item in items] == ["session.created"]
    item = items[0]
    assert set(item) == {"id", "at", "event", "actor", "session_ref", "details"}
    assert item["actor"] == "api"
    assert item["details"] == {"reason": "api"}
    assert item["session_ref"] == api.services.audit.session_ref(session_id)
    _parse_utc(item["at"])
    assert session_id not in response.text and other not in response.text


def test_audit_refuses_bad_ids(api):
    assert_problem(api.get("/session/audit"), 400, "missing-session-id")
    assert_problem(api.get("/session/audit", "not-a-session-id"), 400, "malformed-session-id")
    assert_problem(api.get("/session/audit", str(uuid.uuid4())), 404, "session-not-found")
