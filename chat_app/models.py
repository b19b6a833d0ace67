"""SQLModel tables (SPEC section 3). Alembic migrations under alembic/ own the schema."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import JSON, Column, Field, SQLModel

SESSION_ACTIVE = "active"
SESSION_RESET = "reset"
SESSION_EXPIRED = "expired"



def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(sa.types.TypeDecorator):
    """A timezone-aware UTC datetime on every engine (SQLite drops the zone otherwise)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass a timezone-aware UTC value")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class UserSession(SQLModel, table=True):
    """One anonymous browser session; `uuid` is the id the browser keeps."""

    __tablename__ = "user_sessions"
    __table_args__ = (sa.Index("ix_user_sessions_status_last_seen_at", "status", "last_seen_at"),)

    id: int | None = Field(default=None, primary_key=True)
    uuid: str = Field(max_length=36, unique=True, nullable=False)
    status: str = Field(default=SESSION_ACTIVE, max_length=16, nullable=False)
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    last_seen_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    end_reason: str | None = Field(default=None, max_length=32)
    predecessor_id: int | None = Field(default=None, foreign_key="user_sessions.id", index=True)
    user_agent: str | None = Field(default=None, max_length=256)


class AuditLog(SQLModel, table=True):
    """Append-only record of every lifecycle event; triggers refuse UPDATE and DELETE."""

    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    event: str = Field(max_length=32, nullable=False, index=True)
    session_id: int | None = Field(default=None, foreign_key="user_sessions.id", index=True)
    session_ref: str | None = Field(default=None, max_length=16)
    actor: str = Field(max_length=16, nullable=False)
    ip_hash: str | None = Field(default=None, max_length=16)
    request_id: str | None = Field(default=None, max_length=64)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
