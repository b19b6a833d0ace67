"""Session lifecycle: create, resume, reset, expire (SPEC section 4).

Every public method is one use case with one transaction; its audit rows commit with it.
Ids are parsed before any query, so a malformed id never reaches the database.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, select

from chat_app.db import unit_of_work
from chat_app.errors import (
    DatabaseUnavailable,
    MalformedSessionId,
    ResetConflict,
    SessionNotFound,
)
from chat_app.models import (
    SESSION_ACTIVE,
    SESSION_EXPIRED,
    SESSION_RESET,
    AuditLog,
    UserSession,
    utcnow,
)
from chat_app.services.audit import AuditWriter, RequestContext, list_events
from chat_app.services.session_ids import new_session_id, parse_session_id

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]
USER_AGENT_MAX = 256
OpenOutcome = Literal["first_visit", "resumed", "replaced"]


class Dated(Protocol):
    """A session's row, a Core row of it, or its view: what the lifetimes are computed from."""

    @property
    def created_at(self) -> datetime: ...

    @property
    def last_seen_at(self) -> datetime: ...


@dataclass(frozen=True)
class SessionPolicy:
    """Lifetimes of a session; touch_interval bounds how often a resume writes."""

    idle: timedelta
    max_age: timedelta
    touch_interval: timedelta = timedelta(minutes=1)

    def expires_at(self, row: Dated) -> datetime:
        """When `row` expires if unused from now on."""
        return min(row.last_seen_at + self.idle, row.created_at + self.max_age)

    def expiry_reason(self, row: Dated, now: datetime) -> str | None:
        """`max_age` or `idle` when `row` has expired at `now`, else None."""
        if now >= row.created_at + self.max_age:
            return "max_age"
        if now >= row.last_seen_at + self.idle:
            return "idle"
        return None


@dataclass(frozen=True)
class SessionView:
    """What callers may know about a session."""

    id: int
    uuid: str
    status: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    ended_at: datetime | None
    end_reason: str | None
    predecessor_id: int | None


@dataclass(frozen=True)
class OpenResult:
    """The browser's session after a page load, and how it was obtained."""

    session: SessionView
    outcome: OpenOutcome
    #: Why the stored id was not resumed (malformed, unknown, ended, expired), if it was not.
    rejected_reason: str | None = None


@dataclass(frozen=True)
class ResetResult:
    """The session a reset started, and what it erased from the old one."""

    session: SessionView
    erased_messages: int = 0
    erased_files: int = 0
    erased_bytes: int = 0


@dataclass(frozen=True)
class SessionContents:
    """What a reset would erase (or did)."""

    messages: int = 0
    files: int = 0
    bytes: int = 0

    def __add__(self, other: SessionContents) -> SessionContents:
        return SessionContents(
            self.messages + other.messages, self.files + other.files, self.bytes + other.bytes
        )


class ContentsHandler(Protocol):
    """Something a session owns (files, messages) that a reset must erase."""

    def summarize(self, db: Session, session_id: int) -> SessionContents:
        """What the session holds now."""
        ...

    def release(self, db: Session, session_id: int, now: datetime) -> SessionContents:
        """Inside the reset's transaction: detach or delete what the session holds."""
        ...

    def purge(self, session_id: int, ctx: RequestContext) -> None:
        """After the reset committed: remove what `release` left to clean (objects)."""
        ...

    def erase_on_expiry(self, db: Session, session_id: int, now: datetime) -> None:
        """Inside the expiry's transaction: delete what an expired session must not keep."""
        ...


class SessionService:
    """Create, resume, reset and expire sessions against one database."""

    def __init__(
        self,
        engine: Engine,
        *,
        audit: AuditWriter,
        policy: SessionPolicy,
        clock: Clock = utcnow,
    ) -> None:
        self._engine = engine
        self._audit = audit
        self._policy = policy
        self._clock = clock
        self._contents: list[ContentsHandler] = []

    def add_contents_handler(self, handler: ContentsHandler) -> None:
        """Register something a reset must erase (wired once at start-up)."""
        self._contents.append(handler)

    # --- use cases -------------------------------------------------------------------------

    def create(self, ctx: RequestContext, *, reason: str) -> SessionView:
        """Issue a brand-new session (reason: first_visit, api, ...)."""
        with self._transaction() as db:
            row = self._insert(db, ctx, now=self._clock(), reason=reason)
        return self._view(row)

    def resume(self, raw_id: object, ctx: RequestContext) -> SessionView:
        """Validate `raw_id` and return its active session; raise SessionNotFound otherwise."""
        session_uuid = parse_session_id(raw_id)
        now = self._clock()
        with self._transaction() as db:
            row = self._find(db, session_uuid)
            rejection = self._rejection(db, row, session_uuid, ctx, now)
            if rejection is None and row is not None and self._touch(db, row, ctx, now):
                row.last_seen_at = now
        if rejection is not None or row is None:
            raise SessionNotFound(rejection or "unknown")
        return self._view(row)

    def claim_active(self, db: Session, raw_id: object, ctx: RequestContext) -> SessionView | None:
        """In the caller's transaction: lock the session `raw_id` against a concurrent reset and
        touch it, when it is active and valid; None otherwise (`resume` then says why).

        For use cases that write into a session (a chat turn): one transaction instead of a
        `resume` followed by the write, which cost a second transaction before the first token.
        """
        session_uuid = parse_session_id(raw_id)
        now = self._clock()
        # The write comes first: it takes the lock (the row on PostgreSQL, the database on
        # SQLite) before anything is read. Read first, SQLite's snapshot could predate a reset
        # committed meanwhile, and its upgrade to a writer would then fail instead of waiting.
        # RETURNING hands back the locked row: no second statement to read it. Core, not the
        # ORM: the ORM's bulk UPDATE path cost more than the statement itself (bench.events (b)).
        table = UserSession.__table__
        row = db.connection().execute(
            sa.update(table)
            .where(table.c.uuid == session_uuid, table.c.status == SESSION_ACTIVE)
            .values(status=SESSION_ACTIVE)
            .returning(*table.c)
        ).first()
        if row is None or self._policy.expiry_reason(row, now) is not None:
            return None  # expired by the clock: `resume` ends it and records why
        view = self._view(row)
        if self._touch(db, view, ctx, now):
            view = dataclasses.replace(view, last_seen_at=now)
            view = dataclasses.replace(view, expires_at=self._policy.expires_at(view))
        return view

    def open_for_browser(
        self,
        stored_id: str | None,
        ctx: RequestContext,
        *,
        before_create: Callable[[], None] | None = None,
    ) -> OpenResult:
        """The page-load flow: resume the stored id, or issue a new session and say why.

        `before_create` runs just before a session would be issued (the caller's rate limit);
        whatever it raises propagates and nothing is created.
        """
        if not stored_id:
            if before_create is not None:
                before_create()
            return OpenResult(self.create(ctx, reason="first_visit"), "first_visit")
        try:
            return OpenResult(self.resume(stored_id, ctx), "resumed")
        except MalformedSessionId:
            rejected = "malformed"
        except SessionNotFound as missing:
            rejected = missing.reason
        reason = "replaced_invalid" if rejected in {"malformed", "unknown"} else "replaced_ended"
        if before_create is not None:
            before_create()
        with self._transaction() as db:
            now = self._clock()
            if rejected == "malformed":
                # Recorded without a ref: a malformed value is not an id we could link to.
                self._audit.record(
                    db, "session.rejected", ctx, at=now, details={"reason": "malformed"}
                )
            row = self._insert(db, ctx, now=now, reason=reason)
        return OpenResult(self._view(row), "replaced", rejected)

    def reset(self, raw_id: object, ctx: RequestContext) -> ResetResult:
        """End an active session and start its successor; exactly one concurrent caller wins."""
        try:
            old = self.resume(raw_id, ctx)
        except SessionNotFound as missing:
            # Active when this request arrived, reset by another one since: a lost race (409).
            if missing.reason != "unknown" and self._reset_since(raw_id, ctx.received_at):
                raise ResetConflict() from None
            raise
        now = self._clock()
        with self._transaction() as db:
            ended = db.execute(
                sa.update(UserSession)
                .where(UserSession.id == old.id, UserSession.status == SESSION_ACTIVE)
                .values(status=SESSION_RESET, ended_at=now, end_reason="reset")
            )
            if ended.rowcount != 1:
                raise ResetConflict()
            old_row = db.get(UserSession, old.id)
            assert old_row is not None  # the UPDATE above just matched it
            new_row = self._insert(db, ctx, now=now, reason="reset", predecessor_id=old.id)
            erased = sum(
                (handler.release(db, old.id, now) for handler in self._contents),
                SessionContents(),
            )
            self._audit.record(
                db,
                "session.reset",
                ctx,
                at=now,
                session=old_row,
                details={
                    "successor_ref": self._audit.session_ref(new_row.uuid),
                    "messages": erased.messages,
                    "files": erased.files,
                    "bytes": erased.bytes,
                },
            )
            self._note_dev_action(db, ctx, "reset", old_row, now)
        self._purge_after_end(old.id, ctx)
        return ResetResult(
            self._view(new_row),
            erased_messages=erased.messages,
            erased_files=erased.files,
            erased_bytes=erased.bytes,
        )

    def expire(self, raw_id: object, ctx: RequestContext, *, reason: str) -> SessionView:
        """End an active session as expired now (dev controls, CLI)."""
        old = self.resume(raw_id, ctx)
        now = self._clock()
        with self._transaction() as db:
            row = db.get(UserSession, old.id)
            assert row is not None
            if not self._end_expired(db, row, ctx, now, reason):
                raise SessionNotFound("ended")
            self._note_dev_action(db, ctx, "expire", row, now)
        return self._view(row)

    def expire_due(
        self, ctx: RequestContext, *, now: datetime, dry_run: bool = False, batch: int = 500
    ) -> list[int]:
        """Expire every active session past its idle or absolute lifetime; returns their ids."""
        due = (col(UserSession.status) == SESSION_ACTIVE) & (
            (col(UserSession.last_seen_at) <= now - self._policy.idle)
            | (col(UserSession.created_at) <= now - self._policy.max_age)
        )
        expired: list[int] = []
        after = 0
        while True:
            with self._transaction() as db:
                rows = db.exec(
                    select(UserSession).where(due, col(UserSession.id) > after)
                    .order_by(col(UserSession.id)).limit(batch)
                ).all()
                for row in rows:
                    reason = self._policy.expiry_reason(row, now) or "idle"
                    if dry_run or self._end_expired(db, row, ctx, now, reason):
                        assert row.id is not None
                        expired.append(row.id)
            if len(rows) < batch:
                return expired
            after = rows[-1].id or after

    def contents(self, raw_id: object, ctx: RequestContext) -> SessionContents:
        """What a reset of this session would erase."""
        view = self.resume(raw_id, ctx)
        with self._transaction() as db:
            return sum(
                (handler.summarize(db, view.id) for handler in self._contents),
                SessionContents(),
            )

    def audit_events(
        self, raw_id: object, ctx: RequestContext, *, limit: int = 20
    ) -> list[AuditLog]:
        """The newest audit rows of an active session."""
        view = self.resume(raw_id, ctx)
        with self._transaction() as db:
            return list_events(db, view.id, limit=limit)

    def peek(self, raw_id: object) -> SessionView | None:
        """Read-only look-up for display: no touch, no audit; None if malformed or unknown."""
        try:
            session_uuid = parse_session_id(raw_id)
        except MalformedSessionId:
            return None
        with self._transaction() as db:
            row = self._find(db, session_uuid)
        return self._view(row) if row is not None else None

    # --- steps shared by the use cases ------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        try:
            with unit_of_work(self._engine) as db:
                yield db
        except OperationalError as exc:
            # A lost or locked database is a dependency failure (503), not a client error.
            raise DatabaseUnavailable() from exc

    def _purge_after_end(self, session_id: int, ctx: RequestContext) -> None:
        # The reset already succeeded; whatever fails here is left for the sweep (SPEC 4 step 3).
        for handler in self._contents:
            try:
                handler.purge(session_id, ctx)
            except Exception as exc:
                # Only the type: store errors can carry URLs that contain object keys (and ids).
                log.warning("purge after reset failed (%s); the sweep will retry",
                            type(exc).__name__)

    @staticmethod
    def _find(db: Session, session_uuid: str) -> UserSession | None:
        return db.exec(select(UserSession).where(UserSession.uuid == session_uuid)).first()

    def _reset_since(self, raw_id: object, since: datetime | None) -> bool:
        """True when the session `raw_id` was ended by a reset at or after `since`."""
        if since is None:
            return False
        with self._transaction() as db:
            row = self._find(db, parse_session_id(raw_id))
        return (
            row is not None
            and row.status == SESSION_RESET
            and row.ended_at is not None
            and row.ended_at >= since
        )

    def _insert(
        self,
        db: Session,
        ctx: RequestContext,
        *,
        now: datetime,
        reason: str,
        predecessor_id: int | None = None,
    ) -> UserSession:
        row = UserSession(
            uuid=new_session_id(),
            status=SESSION_ACTIVE,
            created_at=now,
            last_seen_at=now,
            predecessor_id=predecessor_id,
            user_agent=(ctx.user_agent or None) and ctx.user_agent[:USER_AGENT_MAX],
        )
        db.add(row)
        db.flush()  # assigns row.id for the audit row
        self._audit.record(db, "session.created", ctx, at=now, session=row,
                           details={"reason": reason})
        return row

    def _rejection(
        self,
        db: Session,
        row: UserSession | None,
        session_uuid: str,
        ctx: RequestContext,
        now: datetime,
    ) -> str | None:
        """Why `row` cannot be resumed (recording it), or None when it is active and valid."""
        reason: str | None
        if row is None:
            reason = "unknown"
        elif row.status != SESSION_ACTIVE:
            # An id expired earlier (by a resume or the sweep) stays "expired", not just "ended".
            reason = "expired" if row.status == SESSION_EXPIRED else "ended"
        elif (expiry := self._policy.expiry_reason(row, now)) is not None:
            reason = "expired" if self._end_expired(db, row, ctx, now, expiry) else "ended"
        else:
            return None
        self._audit.record(
            db,
            "session.rejected",
            ctx,
            at=now,
            session=row,
            session_uuid=session_uuid,
            details={"reason": reason},
        )
        return reason

    def _end_expired(
        self, db: Session, row: UserSession, ctx: RequestContext, now: datetime, reason: str
    ) -> bool:
        """Mark `row` expired if it is still active; False when someone else ended it first."""
        ended = db.execute(
            sa.update(UserSession)
            .where(UserSession.id == row.id, UserSession.status == SESSION_ACTIVE)
            .values(status=SESSION_EXPIRED, ended_at=now, end_reason=reason)
        )
        if ended.rowcount != 1:
            return False
        db.refresh(row)
        assert row.id is not None
        for handler in self._contents:
            handler.erase_on_expiry(db, row.id, now)
        self._audit.record(db, "session.expired", ctx, at=now, session=row,
                           details={"reason": reason})
        return True

    def _touch(
        self, db: Session, row: UserSession | SessionView, ctx: RequestContext, now: datetime
    ) -> bool:
        """Record that the session was used at `now`; True when that took a write."""
        # At most one write per interval keeps page loads and GET /session read-only.
        if now - row.last_seen_at < self._policy.touch_interval:
            return False
        db.execute(
            sa.update(UserSession)
            .where(UserSession.id == row.id, UserSession.status == SESSION_ACTIVE)
            .values(last_seen_at=now)
        )
        self._audit.record(db, "session.resumed", ctx, at=now, session=row)
        return True

    def _note_dev_action(
        self, db: Session, ctx: RequestContext, which: str, row: UserSession, now: datetime
    ) -> None:
        if ctx.actor == "dev":
            self._audit.record(db, "dev.action", ctx, at=now, session=row,
                               details={"which": which})

    def _view(self, row: UserSession | sa.Row) -> SessionView:
        assert row.id is not None
        return SessionView(
            id=row.id,
            uuid=row.uuid,
            status=row.status,
            created_at=row.created_at,
            last_seen_at=row.last_seen_at,
            expires_at=self._policy.expires_at(row),
            ended_at=row.ended_at,
            end_reason=row.end_reason,
            predecessor_id=row.predecessor_id,
        )
