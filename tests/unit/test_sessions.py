"""SessionService on SQLite and PostgreSQL: create, resume, expiry, reset, page-load flow."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from chat_app.container import Services
from chat_app.errors import MalformedSessionId, ResetConflict, SessionNotFound
from chat_app.models import AuditLog, UserSession, utcnow
from chat_app.services.audit import RequestContext
from chat_app.services.session_ids import new_session_id
from chat_app.services.sessions import ResetResult, SessionPolicy, SessionService
from tests.unit.test_session_ids import MALFORMED_IDS

CTX = RequestContext(actor="browser", ip="203.0.113.7", request_id="test-sessions")
POLICY = SessionPolicy(idle=timedelta(days=1), max_age=timedelta(days=3))
RESET_RACERS = 20


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(utcnow().replace(microsecond=0))


@pytest.fixture
def clocked(services: Services, clock: FakeClock) -> SessionService:
    """A SessionService on the shared database whose time is `clock`."""
    return SessionService(services.engine, audit=services.audit, policy=POLICY, clock=clock)


@contextmanager
def recorded_statements(engine: Engine) -> Iterator[list[str]]:
    """Every SQL statement the engine sends while the block runs."""
    statements: list[str] = []

    def record(_conn, _cursor, statement, _params, _context, _many) -> None:
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def count_rows(engine: Engine, model: type, *where: object) -> int:
    with Session(engine) as db:
        return db.exec(select(func.count()).select_from(model).where(*where)).one()


def get_row(engine: Engine, session_id: int) -> UserSession:
    with Session(engine) as db:
        row = db.get(UserSession, session_id)
        assert row is not None
        return row


def audit_rows(engine: Engine, session_id: int, event: str) -> list[AuditLog]:
    with Session(engine) as db:
        query = select(AuditLog).where(AuditLog.session_id == session_id, AuditLog.event == event)
        return list(db.exec(query.order_by(col(AuditLog.id))).all())


def end_session(services: Services, how: str) -> str:
    """A session ended by `how` ("reset" or "expire"); returns its id."""
    session_id = services.sessions.create(CTX, reason="api").uuid
    if how == "reset":
        services.sessions.reset(session_id, CTX)
    else:
        services.sessions.expire(session_id, CTX, reason="test")
    return session_id


#: Every public use case that takes a raw id, called the way an edge calls it.
RAW_ID_CALLS: dict[str, Callable[[SessionService, object], object]] = {
    "resume": lambda sessions, raw: sessions.resume(raw, CTX),
    "reset": lambda sessions, raw: sessions.reset(raw, CTX),
    "expire": lambda sessions, raw: sessions.expire(raw, CTX, reason="test"),
    "audit_events": lambda sessions, raw: sessions.audit_events(raw, CTX),
    "contents": lambda sessions, raw: sessions.contents(raw, CTX),
}
#: Rejection reason of an id ended by reset / by expiry.
ENDED_REASON = {"reset": "ended", "expire": "expired"}
ENDED_STATUS = {"reset": "reset", "expire": "expired"}


# --- create and resume -------------------------------------------------------------------------


def test_resume_returns_the_created_session(services: Services) -> None:
    created = services.sessions.create(CTX, reason="api")
    resumed = services.sessions.resume(created.uuid, CTX)
    assert (resumed.id, resumed.uuid, resumed.status) == (created.id, created.uuid, "active")


def test_resume_accepts_upper_case_id(services: Services) -> None:
    created = services.sessions.create(CTX, reason="api")
    resumed = services.sessions.resume(created.uuid.upper(), CTX)
    assert resumed.id == created.id
    assert resumed.uuid == created.uuid


def test_create_records_session_created_with_reason(services: Services) -> None:
    created = services.sessions.create(CTX, reason="api")
    [row] = audit_rows(services.engine, created.id, "session.created")
    assert row.details == {"reason": "api"}


def test_resume_unknown_id_raises_session_not_found_unknown(services: Services) -> None:
    with pytest.raises(SessionNotFound) as caught:
        services.sessions.resume(new_session_id(), CTX)
    assert caught.value.reason == "unknown"


def test_resume_unknown_id_creates_no_row(services: Services) -> None:
    unknown = new_session_id()
    before = count_rows(services.engine, UserSession)
    with pytest.raises(SessionNotFound):
        services.sessions.resume(unknown, CTX)
    assert count_rows(services.engine, UserSession) == before
    assert count_rows(services.engine, UserSession, UserSession.uuid == unknown) == 0


@pytest.mark.parametrize("call", RAW_ID_CALLS)
@pytest.mark.parametrize("raw", MALFORMED_IDS)
def test_malformed_id_never_touches_the_database(
    services: Services, call: str, raw: object
) -> None:
    sessions_before = count_rows(services.engine, UserSession)
    audit_before = count_rows(services.engine, AuditLog)
    with recorded_statements(services.engine) as statements, pytest.raises(MalformedSessionId):
        RAW_ID_CALLS[call](services.sessions, raw)
    assert statements == []
    assert count_rows(services.engine, UserSession) == sessions_before
    assert count_rows(services.engine, AuditLog) == audit_before


# --- ended and expired ids ----------------------------------------------------------------------


@pytest.mark.parametrize("call", RAW_ID_CALLS)
@pytest.mark.parametrize("how", ["reset", "expire"])
def test_ended_id_never_resumes(services: Services, how: str, call: str) -> None:
    ended = end_session(services, how)
    with pytest.raises(SessionNotFound) as caught:
        RAW_ID_CALLS[call](services.sessions, ended)
    assert caught.value.reason == ENDED_REASON[how]
    assert services.sessions.peek(ended).status == ENDED_STATUS[how]


@pytest.mark.parametrize("how", ["reset", "expire"])
def test_open_for_browser_replaces_ended_id(services: Services, how: str) -> None:
    ended = end_session(services, how)
    opened = services.sessions.open_for_browser(ended, CTX)
    assert opened.outcome == "replaced"
    assert opened.rejected_reason == ENDED_REASON[how]
    assert opened.session.uuid != ended
    assert opened.session.status == "active"
    assert opened.session.predecessor_id is None
    assert services.sessions.peek(ended).status == ENDED_STATUS[how]
    [created] = audit_rows(services.engine, opened.session.id, "session.created")
    assert created.details == {"reason": "replaced_ended"}


@pytest.mark.parametrize("how", ["reset", "expire"])
def test_ended_id_stays_ended_after_repeated_attempts(services: Services, how: str) -> None:
    ended = end_session(services, how)
    for _ in range(3):
        services.sessions.open_for_browser(ended, CTX)
        with pytest.raises(SessionNotFound):
            services.sessions.resume(ended, CTX)
    assert count_rows(services.engine, UserSession, UserSession.uuid == ended) == 1
    assert services.sessions.peek(ended).status == ENDED_STATUS[how]


def test_expire_marks_session_expired(services: Services) -> None:
    created = services.sessions.create(CTX, reason="api")
    expired = services.sessions.expire(created.uuid, CTX, reason="test")
    row = get_row(services.engine, created.id)
    assert (expired.status, row.status, row.end_reason) == ("expired", "expired", "test")
    assert row.ended_at is not None
    assert len(audit_rows(services.engine, created.id, "session.expired")) == 1


# --- page load ----------------------------------------------------------------------------------


@pytest.mark.parametrize("stored", [None, ""])
def test_open_for_browser_without_stored_id_is_first_visit(
    services: Services, stored: str | None
) -> None:
    opened = services.sessions.open_for_browser(stored, CTX)
    assert opened.outcome == "first_visit"
    assert opened.rejected_reason is None
    assert opened.session.status == "active"
    [created] = audit_rows(services.engine, opened.session.id, "session.created")
    assert created.details == {"reason": "first_visit"}


def test_open_for_browser_resumes_active_id(services: Services) -> None:
    created = services.sessions.create(CTX, reason="first_visit")
    opened = services.sessions.open_for_browser(created.uuid.upper(), CTX)
    assert (opened.outcome, opened.rejected_reason) == ("resumed", None)
    assert opened.session.uuid == created.uuid


def test_open_for_browser_replaces_malformed_id(services: Services) -> None:
    opened = services.sessions.open_for_browser("{not-a-session}", CTX)
    assert (opened.outcome, opened.rejected_reason) == ("replaced", "malformed")
    [created] = audit_rows(services.engine, opened.session.id, "session.created")
    assert created.details == {"reason": "replaced_invalid"}


def test_open_for_browser_never_adopts_unknown_id(services: Services) -> None:
    unknown = new_session_id()
    opened = services.sessions.open_for_browser(unknown, CTX)
    assert (opened.outcome, opened.rejected_reason) == ("replaced", "unknown")
    assert opened.session.uuid != unknown
    assert count_rows(services.engine, UserSession, UserSession.uuid == unknown) == 0


# --- expiry with an injected clock ---------------------------------------------------------------


def test_resume_just_before_idle_limit_succeeds(clocked: SessionService, clock: FakeClock) -> None:
    created = clocked.create(CTX, reason="api")
    clock.advance(days=1, seconds=-1)
    assert clocked.resume(created.uuid, CTX).status == "active"


def test_resume_after_idle_limit_expires_session(
    clocked: SessionService, clock: FakeClock, services: Services
) -> None:
    created = clocked.create(CTX, reason="api")
    clock.advance(days=1, seconds=1)
    with pytest.raises(SessionNotFound) as caught:
        clocked.resume(created.uuid, CTX)
    assert caught.value.reason == "expired"
    row = get_row(services.engine, created.id)
    assert (row.status, row.end_reason, row.ended_at) == ("expired", "idle", clock.now)
    [expired] = audit_rows(services.engine, created.id, "session.expired")
    assert expired.details == {"reason": "idle"}


def test_resume_after_max_age_expires_busy_session(
    clocked: SessionService, clock: FakeClock, services: Services
) -> None:
    created = clocked.create(CTX, reason="api")
    for _ in range(5):  # used every 12 hours: never idle, but 3 days old at the end
        clock.advance(hours=12)
        clocked.resume(created.uuid, CTX)
    clock.advance(hours=12)
    with pytest.raises(SessionNotFound) as caught:
        clocked.resume(created.uuid, CTX)
    assert caught.value.reason == "expired"
    row = get_row(services.engine, created.id)
    assert (row.status, row.end_reason) == ("expired", "max_age")


def test_expired_session_never_resumes_later(clocked: SessionService, clock: FakeClock) -> None:
    created = clocked.create(CTX, reason="api")
    clock.advance(days=2)
    opened = clocked.open_for_browser(created.uuid, CTX)
    assert (opened.outcome, opened.rejected_reason) == ("replaced", "expired")
    with pytest.raises(SessionNotFound) as caught:
        clocked.resume(created.uuid, CTX)
    assert caught.value.reason == "expired"


def test_expires_at_is_the_earlier_of_idle_and_max_age(
    clocked: SessionService, clock: FakeClock
) -> None:
    created = clocked.create(CTX, reason="api")
    assert created.expires_at == clock.now + POLICY.idle
    for _ in range(5):
        clock.advance(hours=12)
        resumed = clocked.resume(created.uuid, CTX)
    assert resumed.expires_at == created.created_at + POLICY.max_age


# --- last_seen_at touch ------------------------------------------------------------------------


def _user_session_updates(statements: list[str]) -> list[str]:
    return [s for s in statements if s.lstrip().upper().startswith("UPDATE USER_SESSIONS")]


def test_resume_within_a_minute_writes_once(
    clocked: SessionService, clock: FakeClock, services: Services
) -> None:
    created = clocked.create(CTX, reason="api")
    with recorded_statements(services.engine) as statements:
        clock.advance(seconds=61)
        clocked.resume(created.uuid, CTX)
        touched_at = clock.now
        clock.advance(seconds=59)
        clocked.resume(created.uuid, CTX)
    assert len(_user_session_updates(statements)) == 1
    assert len(audit_rows(services.engine, created.id, "session.resumed")) == 1
    assert get_row(services.engine, created.id).last_seen_at == touched_at


def test_resume_after_a_minute_updates_last_seen_at(
    clocked: SessionService, clock: FakeClock, services: Services
) -> None:
    created = clocked.create(CTX, reason="api")
    clock.advance(seconds=30)
    clocked.resume(created.uuid, CTX)
    assert get_row(services.engine, created.id).last_seen_at == created.last_seen_at
    clock.advance(seconds=31)
    resumed = clocked.resume(created.uuid, CTX)
    assert resumed.last_seen_at == clock.now
    assert get_row(services.engine, created.id).last_seen_at == clock.now
    assert len(audit_rows(services.engine, created.id, "session.resumed")) == 1


# --- reset ----------------------------------------------------------------------------------------


def test_reset_starts_a_new_active_session(services: Services) -> None:
    old = services.sessions.create(CTX, reason="api")
    result = services.sessions.reset(old.uuid, CTX)
    assert result.session.uuid != old.uuid
    assert result.session.status == "active"
    assert services.sessions.resume(result.session.uuid, CTX).id == result.session.id


def test_reset_links_new_session_to_predecessor(services: Services) -> None:
    old = services.sessions.create(CTX, reason="api")
    result = services.sessions.reset(old.uuid, CTX)
    assert result.session.predecessor_id == old.id
    assert get_row(services.engine, result.session.id).predecessor_id == old.id


def test_reset_ends_old_session(services: Services) -> None:
    old = services.sessions.create(CTX, reason="api")
    services.sessions.reset(old.uuid, CTX)
    row = get_row(services.engine, old.id)
    assert (row.status, row.end_reason) == ("reset", "reset")
    assert row.ended_at is not None


def test_reset_writes_reset_and_created_audit_rows(services: Services) -> None:
    old = services.sessions.create(CTX, reason="api")
    result = services.sessions.reset(old.uuid, CTX)
    [reset_row] = audit_rows(services.engine, old.id, "session.reset")
    [created_row] = audit_rows(services.engine, result.session.id, "session.created")
    assert reset_row.session_ref == services.audit.session_ref(old.uuid)
    assert created_row.details == {"reason": "reset"}
    assert created_row.session_ref == services.audit.session_ref(result.session.uuid)


def test_reset_accepts_upper_case_id(services: Services) -> None:
    old = services.sessions.create(CTX, reason="api")
    result = services.sessions.reset(old.uuid.upper(), CTX)
    assert result.session.predecessor_id == old.id


def test_reset_unknown_id_raises_session_not_found(services: Services) -> None:
    before = count_rows(services.engine, UserSession)
    with pytest.raises(SessionNotFound) as caught:
        services.sessions.reset(new_session_id(), CTX)
    assert caught.value.reason == "unknown"
    assert count_rows(services.engine, UserSession) == before


@pytest.mark.timeout(120)
@pytest.mark.parametrize("round_", range(3))
def test_concurrent_resets_have_exactly_one_winner(services: Services, round_: int) -> None:
    old = services.sessions.create(CTX, reason="api")
    barrier = threading.Barrier(RESET_RACERS)
    results: list[ResetResult] = []
    errors: list[BaseException] = []

    def race() -> None:
        barrier.wait()
        try:
            results.append(services.sessions.reset(old.uuid, CTX))
        except BaseException as exc:  # every outcome is collected and checked below
            errors.append(exc)

    threads = [threading.Thread(target=race) for _ in range(RESET_RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert not any(thread.is_alive() for thread in threads)

    unexpected = [e for e in errors if not isinstance(e, ResetConflict | SessionNotFound)]
    assert unexpected == []
    assert len(results) == 1
    assert len(errors) == RESET_RACERS - 1
    successors = count_rows(services.engine, UserSession, UserSession.predecessor_id == old.id)
    assert successors == 1
    assert len(audit_rows(services.engine, old.id, "session.reset")) == 1
    assert get_row(services.engine, old.id).status == "reset"
