"""Append-only audit events (SPEC section 7), written in the caller's transaction."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlmodel import Session, col, select

from chat_app.models import AuditLog

EVENTS = frozenset(
    {
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
)
ACTORS = frozenset({"browser", "api", "sweep", "dev", "cli"})
REF_LENGTH = 16
MAX_REQUEST_ID = 64


class SessionLike(Protocol):
    """A session row or a view of one: anything with the row id and the uuid."""

    @property
    def id(self) -> int | None: ...

    @property
    def uuid(self) -> str: ...


@dataclass(frozen=True)
class RequestContext:
    """Who is asking: the actor kind plus what the edge knows about the request."""

    actor: str
    ip: str | None = None
    request_id: str | None = None
    user_agent: str | None = None
    #: When the edge received the request (UTC); lets a reset tell a lost race from a stale id.
    received_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.actor not in ACTORS:
            raise ValueError(f"unknown actor {self.actor!r}")


def keyed_ref(secret: bytes, value: str) -> str:
    """HMAC-SHA256 of `value`, first 16 hex characters: linkable, not reversible."""
    return hmac.new(secret, value.encode(), hashlib.sha256).hexdigest()[:REF_LENGTH]


@dataclass(frozen=True)
class AuditWriter:
    """Adds audit rows to a database session; the caller's commit makes them durable."""

    secret: bytes

    def session_ref(self, session_uuid: str) -> str:
        """The only form of a session id that may appear in audit rows and logs."""
        return keyed_ref(self.secret, session_uuid)

    def record(
        self,
        db: Session,
        event: str,
        ctx: RequestContext,
        *,
        at: datetime,
        session: SessionLike | None = None,
        session_uuid: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> AuditLog:
        """Add one audit row for `event`; `session_uuid` names a session that has no row."""
        row = AuditLog(**self._values(event, ctx, at=at, session=session,
                                      session_uuid=session_uuid, details=details))
        db.add(row)
        return row

    def insert(
        self,
        db: Session,
        event: str,
        ctx: RequestContext,
        *,
        at: datetime,
        session: SessionLike | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """`record` as one Core INSERT, without an ORM object to flush: for the chat turn,
        where the ORM's flush cost more than the statement (bench.events (b))."""
        values = self._values(event, ctx, at=at, session=session, session_uuid=None,
                              details=details)
        db.connection().execute(sa.insert(AuditLog.__table__).values(**values))

    def _values(
        self,
        event: str,
        ctx: RequestContext,
        *,
        at: datetime,
        session: SessionLike | None,
        session_uuid: str | None,
        details: dict[str, Any] | None,
    ) -> dict[str, Any]:
        if event not in EVENTS:
            raise ValueError(f"unknown audit event {event!r}")
        ref_source = session.uuid if session is not None else session_uuid
        return {
            "at": at,
            "event": event,
            "session_id": session.id if session is not None else None,
            "session_ref": self.session_ref(ref_source) if ref_source else None,
            "actor": ctx.actor,
            "ip_hash": keyed_ref(self.secret, ctx.ip) if ctx.ip else None,
            "request_id": (ctx.request_id or None) and ctx.request_id[:MAX_REQUEST_ID],
            "details": details or {},
        }


def list_events(db: Session, session_id: int, *, limit: int = 20) -> list[AuditLog]:
    """The newest audit rows of one session, newest first."""
    query = (
        select(AuditLog)
        .where(AuditLog.session_id == session_id)
        .order_by(col(AuditLog.id).desc())
        .limit(limit)
    )
    return list(db.exec(query).all())
