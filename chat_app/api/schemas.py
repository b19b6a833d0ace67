"""Response bodies of the API; names say which way data flows (STYLE 18)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from chat_app.models import AuditLog
from chat_app.services.sessions import SessionView


class SessionPublic(BaseModel):
    """A session as its holder may see it; timestamps are UTC ISO-8601."""

    session_id: str = Field(description="Send it back in the X-Session-Id header.")
    status: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime

    @classmethod
    def from_view(cls, view: SessionView) -> SessionPublic:
        """Map a service view to the public shape."""
        return cls(
            session_id=view.uuid,
            status=view.status,
            created_at=view.created_at,
            last_seen_at=view.last_seen_at,
            expires_at=view.expires_at,
        )


class AuditEventPublic(BaseModel):
    """One audit row; `session_ref` is a keyed hash, never the raw id."""

    id: int
    at: datetime
    event: str
    actor: str
    session_ref: str | None
    details: dict[str, Any]

    @classmethod
    def from_row(cls, row: AuditLog) -> AuditEventPublic:
        """Map an audit row to the public shape."""
        assert row.id is not None
        return cls(
            id=row.id,
            at=row.at,
            event=row.event,
            actor=row.actor,
            session_ref=row.session_ref,
            details=row.details,
        )


class AuditEventsPublic(BaseModel):
    """The newest audit events of a session, newest first."""

    items: list[AuditEventPublic]


class HealthPublic(BaseModel):
    """Every dependency answered."""

    status: Literal["ok"] = "ok"
    database: Literal["ok"] = "ok"


class Problem(BaseModel):
    """An RFC 9457 problem detail (`application/problem+json`)."""

    type: str = Field(description="urn:chat-app:problem:<slug>, stable for clients to match on.")
    title: str
    status: int
    detail: str
    request_id: str = Field(description="Also in the X-Request-Id response header.")
