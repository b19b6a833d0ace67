"""POST /session/reset: a successor session, the old id gone everywhere, 409 for a lost race."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlmodel import Session, func, select

from chat_app.api.deps import get_request_context
from chat_app.models import UserSession, utcnow
from chat_app.services.audit import RequestContext
from tests.api.support import SESSION_KEYS, assert_no_echo, assert_problem


def test_reset_returns_201_successor(api):
    old = api.new_session()

    response = api.post("/session/reset", old)

    assert response.status_code == 201
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == SESSION_KEYS
    assert body["status"] == "active" and body["session_id"] != old
    assert api.get("/session", body["session_id"]).status_code == 200
    assert api.session_row(body["session_id"]).predecessor_id == api.session_row(old).id
    assert api.session_row(old).status == "reset"


def test_reset_is_audited(api):
    old = api.new_session()
    request_id = f"reset-{uuid.uuid4().hex}"

    new = api.post("/session/reset", old, headers={"X-Request-Id": request_id}).json()

    rows = api.audit_rows(request_id=request_id)
    assert sorted(row.event for row in rows) == ["session.created", "session.reset"]
    assert all(row.actor == "api" for row in rows)
    assert {row.session_ref for row in rows} == {
        api.services.audit.session_ref(old),
        api.services.audit.session_ref(new["session_id"]),
    }


def test_old_id_is_404_on_every_endpoint(api):
    old = api.new_session()
    assert api.post("/session/reset", old).status_code == 201
    unknown = api.get("/session", str(uuid.uuid4())).json()

    responses = [
        api.get("/session", old),
        api.post("/session/reset", old),
        api.get("/session/audit", old),
    ]

    for response in responses:
        body = assert_problem(response, 404, "session-not-found")
        assert_no_echo(response, old)
        assert {**body, "request_id": None} == {**unknown, "request_id": None}


def test_reset_refuses_missing_and_malformed_ids(api):
    assert_problem(api.post("/session/reset"), 400, "missing-session-id")
    response = api.post("/session/reset", "{" + str(uuid.uuid4()) + "}")
    assert_problem(response, 400, "malformed-session-id")


def test_reset_that_lost_a_race_is_409(api):
    """The request arrived while the session was active; another reset ended it first."""
    old = api.new_session()
    arrived = utcnow() - timedelta(seconds=1)
    assert api.post("/session/reset", old).status_code == 201
    api.client.app.dependency_overrides[get_request_context] = lambda: RequestContext(
        actor="api", request_id="late-loser", received_at=arrived
    )

    response = api.post("/session/reset", old)

    assert_problem(response, 409, "session-already-ended")
    assert_no_echo(response, old)
    with Session(api.services.engine) as db:
        successors = db.exec(
            select(func.count()).where(UserSession.predecessor_id == api.session_row(old).id)
        ).one()
    assert successors == 1
