"""POST /admin/sweep: disabled (404), bearer token (401), the report, and dry runs."""

from __future__ import annotations

import io
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import Session, col, select

from chat_app.models import AuditLog, SessionFile, UserSession, utcnow
from tests.api.support import HIGH_LIMITS, Api, assert_no_echo, assert_problem

TOKEN = "test-admin-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REPORT_KEYS = {
    "dry_run", "expired_sessions", "purged_files", "scanned_objects", "deleted_objects",
    "deleted_bytes", "retired_pending", "errors", "error_kinds", "duration_s",
}


@pytest.fixture
def admin_api(make_api) -> Api:
    """Admin enabled; no grace period, so every orphan is old enough to go."""
    return make_api(CHAT_APP_ADMIN_TOKEN=TOKEN, CHAT_APP_ORPHAN_GRACE_MINUTES="0")


def sweeps(api: Api) -> int:
    with Session(api.services.engine) as db:
        return len(db.exec(select(AuditLog).where(AuditLog.event == "sweep.completed")).all())


def test_disabled_admin_is_indistinguishable_from_a_missing_route(api):
    sweep = api.post("/admin/sweep", headers=AUTH)
    missing = api.post("/admin/no-such-thing", headers=AUTH)

    body = assert_problem(sweep, 404)
    other = assert_problem(missing, 404)
    assert {**body, "request_id": ""} == {**other, "request_id": ""}
    assert "www-authenticate" not in sweep.headers
    assert_problem(api.post("/admin/sweep"), 404)


AUTHORIZATIONS = {
    "none": None,
    "empty": "",
    "wrong-token": "Bearer not-the-token",
    "basic-scheme": f"Basic {TOKEN}",
    "prefix-of-token": f"Bearer {TOKEN[:-1]}",
    "token-plus-one": f"Bearer {TOKEN}x",
    "scheme-only": "Bearer",
    "token-without-scheme": TOKEN,
}


@pytest.mark.parametrize("authorization", AUTHORIZATIONS.values(), ids=AUTHORIZATIONS.keys())
def test_missing_or_wrong_token_is_401(admin_api, authorization):
    headers = {"Authorization": authorization} if authorization is not None else {}
    before = sweeps(admin_api)

    response = admin_api.post("/admin/sweep", headers=headers)

    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"
    assert_no_echo(response, TOKEN)
    assert_no_echo(response, "not-the-token")
    assert sweeps(admin_api) == before


def test_guessing_tokens_locks_the_ip_out(make_api):
    limits = HIGH_LIMITS.replace("failed_validate=10000", "failed_validate=2")
    api = make_api(CHAT_APP_ADMIN_TOKEN=TOKEN, CHAT_APP_RATE_LIMITS=limits)

    guesses = [api.post("/admin/sweep", headers={"Authorization": f"Bearer guess{n}"})
               for n in range(2)]
    locked = api.post("/admin/sweep", headers=AUTH)

    assert [r.status_code for r in guesses] == [401, 401]
    assert_problem(locked, 429, "rate-limited")


def test_sweep_with_the_token_returns_the_report(admin_api):
    response = admin_api.post("/admin/sweep", headers=AUTH)

    assert response.status_code == 200, response.text
    report = response.json()
    assert set(report) == REPORT_KEYS
    assert report["dry_run"] is False
    assert report["errors"] == 0
    rows = admin_api.audit_rows(request_id=response.headers["x-request-id"])
    # The database is shared by the run: what earlier tests left due is swept (and audited)
    # by this request too, so only the completion row is asserted to be unique.
    assert {row.actor for row in rows} == {"sweep"}
    [row] = [row for row in rows if row.event == "sweep.completed"]
    assert rows[-1] is row
    assert row.details["dry_run"] is False


def test_scheme_is_case_insensitive(admin_api):
    response = admin_api.post("/admin/sweep", headers={"Authorization": f"bearer {TOKEN}"})

    assert response.status_code == 200


def snapshot(api: Api) -> tuple[list, list, list[str]]:
    """Every session's status, every file row's status, every object: what a sweep may change."""
    with Session(api.services.engine) as db:
        sessions = db.exec(select(UserSession.id, UserSession.status).order_by(
            col(UserSession.id))).all()
        files = db.exec(select(SessionFile.id, SessionFile.status).order_by(
            col(SessionFile.id))).all()
    keys = [obj.key for obj in api.services.store.iter_keys("sessions/")]
    return list(sessions), list(files), keys


def make_work(api: Api) -> tuple[str, str, str]:
    """An idle session holding a file, plus an orphan object: a sweep's work."""
    session_id = api.new_session()
    created = api.upload(session_id, "old.txt", b"left behind\n")
    assert created.status_code == 201
    with Session(api.services.engine) as db:
        db.execute(
            sa.update(UserSession).where(col(UserSession.uuid) == session_id)
            .values(last_seen_at=utcnow() - timedelta(days=30))
        )
        db.commit()
    orphan = f"sessions/{uuid.uuid4()}/{uuid.uuid4()}"
    api.services.store.put(orphan, io.BytesIO(b"orphan"), 6, "text/plain")
    return session_id, f"sessions/{session_id}/{created.json()['id']}", orphan


@pytest.mark.parametrize(
    "request_kwargs",
    [{"params": {"dry_run": "true"}}, {"json": {"dry_run": True}}],
    ids=["query", "body"],
)
def test_dry_run_changes_nothing(admin_api, request_kwargs):
    api = admin_api
    session_id, file_key, orphan = make_work(api)
    before = snapshot(api)

    response = api.post("/admin/sweep", headers=AUTH, **request_kwargs)

    assert response.status_code == 200, response.text
    report = response.json()
    assert report["dry_run"] is True
    assert report["expired_sessions"] >= 1 and report["purged_files"] >= 1
    assert report["deleted_objects"] >= 1 and report["deleted_bytes"] >= 6
    assert snapshot(api) == before
    assert api.services.store.exists(file_key) and api.services.store.exists(orphan)

    real = api.post("/admin/sweep", headers=AUTH)

    assert real.json()["dry_run"] is False
    assert api.session_row(session_id).status == "expired"
    assert not api.services.store.exists(file_key)
    assert not api.services.store.exists(orphan)


def test_dry_run_must_be_a_boolean(admin_api):
    response = admin_api.post("/admin/sweep", headers=AUTH, params={"dry_run": "maybe"})

    body = assert_problem(response, 422, "invalid-request")
    assert "maybe" not in body["detail"]


@pytest.mark.parametrize(
    "body",
    [{"dry_run": 0}, {"dry_run": "no"}, {"dry_run": "true"}, {"dryrun": True}, {"dry_run": None}],
    ids=["zero", "string-no", "string-true", "misspelt-key", "null"],
)
def test_sweep_body_is_strict_and_closed(admin_api, body):
    # Regression (schemathesis, negative_data_rejection): `{"dry_run": 0}` was read as false and
    # a misspelt key was ignored, so a caller asking for a dry run could get a real sweep.
    before = sweeps(admin_api)

    response = admin_api.post("/admin/sweep", headers=AUTH, json=body)

    assert_problem(response, 422, "invalid-request")
    assert sweeps(admin_api) == before
