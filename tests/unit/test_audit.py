"""Audit rows and logs never carry a raw session id (SPEC sections 7 and 11.7)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import Session, col, select

from chat_app.container import Services
from chat_app.errors import SessionNotFound
from chat_app.models import AuditLog, UserSession, utcnow
from chat_app.services.audit import EVENTS, AuditWriter, RequestContext, keyed_ref
from chat_app.services.session_ids import new_session_id
from chat_app.services.sessions import SessionPolicy, SessionService

REF_PATTERN = re.compile(r"[0-9a-f]{16}")
CLIENT_IP = "203.0.113.7"
SPEC_EVENTS = {
    "session.created",
    "session.resumed",
    "session.rejected",
    "session.reset",
    "session.expired",
    "file.upload_started",
    "file.uploaded",
    "file.rejected",
    "file.deleted",
    "files.purged",
    "message.sent",
    "rate_limited",
    "dev.action",
    "dev.denied",
    "sweep.completed",
}


class StepClock:
    """A clock the workload moves by hand."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Workload:
    """What a mixed workload did: the raw ids it saw and the request id on its audit rows."""

    request_id: str
    raw_ids: set[str] = field(default_factory=set)


def run_mixed_workload(services: Services) -> Workload:
    """Create, resume, reset, expire and open with junk, as browsers, the API and dev do."""
    work = Workload(request_id=f"audit-test-{secrets.token_hex(8)}")
    browser = RequestContext(actor="browser", ip=CLIENT_IP, request_id=work.request_id)
    dev = RequestContext(actor="dev", ip=CLIENT_IP, request_id=work.request_id)
    sessions = services.sessions

    first = sessions.open_for_browser(None, browser).session
    work.raw_ids.add(first.uuid)
    sessions.resume(first.uuid.upper(), browser)
    successor = sessions.reset(first.uuid, browser).session
    work.raw_ids.add(successor.uuid)
    work.raw_ids.add(sessions.open_for_browser(first.uuid, browser).session.uuid)
    sessions.audit_events(successor.uuid, browser)
    work.raw_ids.add(sessions.reset(successor.uuid, dev).session.uuid)

    expiring = sessions.create(browser, reason="api")
    work.raw_ids.add(expiring.uuid)
    sessions.expire(expiring.uuid, dev, reason="test")
    work.raw_ids.add(sessions.open_for_browser(expiring.uuid, browser).session.uuid)

    unknown = new_session_id()
    work.raw_ids.add(unknown)
    with pytest.raises(SessionNotFound):
        sessions.resume(unknown, browser)
    work.raw_ids.add(sessions.open_for_browser(unknown, browser).session.uuid)
    # Junk that embeds a real id must not leak it either.
    for junk in (" " + first.uuid, "{" + successor.uuid + "}", "' OR 1=1 --", "null"):
        work.raw_ids.add(sessions.open_for_browser(junk, browser).session.uuid)

    clock = StepClock()
    policy = SessionPolicy(idle=timedelta(days=1), max_age=timedelta(days=3))
    clocked = SessionService(services.engine, audit=services.audit, policy=policy, clock=clock)
    idle = clocked.create(browser, reason="api")
    work.raw_ids.add(idle.uuid)
    clock.now += timedelta(minutes=5)
    clocked.resume(idle.uuid, browser)
    clock.now += timedelta(days=2)
    work.raw_ids.add(clocked.open_for_browser(idle.uuid, browser).session.uuid)
    return work


def workload_rows(services: Services, work: Workload) -> list[AuditLog]:
    with Session(services.engine) as db:
        query = select(AuditLog).where(AuditLog.request_id == work.request_id)
        return list(db.exec(query.order_by(col(AuditLog.id))).all())


def row_text(row: AuditLog) -> str:
    """Every column of an audit row, details serialised as JSON."""
    values = [str(getattr(row, column.name)) for column in AuditLog.__table__.columns]
    return " ".join([*values, json.dumps(row.details)])


def raw_forms(session_id: str) -> list[str]:
    """The ways a raw id could be written: canonical, upper case, without hyphens."""
    return [session_id, session_id.upper(), session_id.replace("-", "")]


def test_workload_audits_every_session_event(services: Services) -> None:
    """Guards the scans below: the workload really writes each kind of session row."""
    work = run_mixed_workload(services)
    events = {row.event for row in workload_rows(services, work)}
    expected = {
        "session.created",
        "session.resumed",
        "session.rejected",
        "session.reset",
        "session.expired",
        "dev.action",
    }
    assert expected <= events


def test_audit_session_ref_is_the_hmac_of_the_session_uuid(services: Services) -> None:
    work = run_mixed_workload(services)
    rows = workload_rows(services, work)
    with Session(services.engine) as db:
        uuids = {
            row.id: row.uuid
            for row in db.exec(
                select(UserSession).where(col(UserSession.uuid).in_(work.raw_ids))
            ).all()
        }
    linked = [row for row in rows if row.session_id is not None]
    assert linked
    for row in linked:
        assert row.session_ref == services.audit.session_ref(uuids[row.session_id])
    for row in rows:
        assert row.session_ref is None or REF_PATTERN.fullmatch(row.session_ref)


def test_audit_rows_contain_no_raw_session_id(services: Services) -> None:
    work = run_mixed_workload(services)
    rows = workload_rows(services, work)
    assert len(rows) > 20
    for row in rows:
        text = row_text(row)
        for session_id in work.raw_ids:
            for form in raw_forms(session_id):
                assert form not in text, f"raw session id in audit row {row.event}"


def test_audit_rows_contain_no_raw_ip(services: Services) -> None:
    work = run_mixed_workload(services)
    for row in workload_rows(services, work):
        assert CLIENT_IP not in row_text(row)
        assert row.ip_hash == keyed_ref(services.audit.secret, CLIENT_IP)


def test_logs_contain_no_raw_session_id(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    work = run_mixed_workload(services)
    messages = [record.getMessage() for record in caplog.records]
    for session_id in work.raw_ids:
        for form in raw_forms(session_id):
            assert form not in caplog.text
            assert not any(form in message for message in messages)


def test_database_errors_do_not_reveal_session_ids(services: Services) -> None:
    """A failed query's message (logged with the traceback at an edge) omits its parameters."""
    session_id = new_session_id()
    query = sa.text("SELECT id FROM no_such_table WHERE uuid = :uuid")
    with pytest.raises(sa.exc.DBAPIError) as caught, services.engine.connect() as conn:
        conn.execute(query, {"uuid": session_id})
    assert session_id not in str(caught.value)


def test_session_ref_is_truncated_hmac_sha256() -> None:
    writer = AuditWriter(secret=b"k" * 32)
    session_id = new_session_id()
    expected = hmac.new(b"k" * 32, session_id.encode(), hashlib.sha256).hexdigest()[:16]
    assert writer.session_ref(session_id) == expected


def test_session_ref_depends_on_the_secret() -> None:
    session_id = new_session_id()
    assert AuditWriter(secret=b"one").session_ref(session_id) != AuditWriter(
        secret=b"two"
    ).session_ref(session_id)


def test_audit_events_match_the_spec() -> None:
    assert set(EVENTS) == SPEC_EVENTS


@pytest.mark.parametrize("event", ["session.hijacked", "", "SESSION.CREATED", "session"])
def test_record_refuses_unknown_event(services: Services, event: str) -> None:
    ctx = RequestContext(actor="api")
    with Session(services.engine) as db:
        with pytest.raises(ValueError, match="unknown audit event"):
            services.audit.record(db, event, ctx, at=utcnow())
        assert not db.new


@pytest.mark.parametrize("actor", ["admin", "", "Browser", "system", "browser "])
def test_request_context_refuses_unknown_actor(actor: str) -> None:
    with pytest.raises(ValueError, match="unknown actor"):
        RequestContext(actor=actor)


@pytest.mark.parametrize("actor", ["browser", "api", "sweep", "dev", "cli"])
def test_request_context_accepts_spec_actors(actor: str) -> None:
    assert RequestContext(actor=actor).actor == actor
