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


FILE_PENDING = "pending"
FILE_STORED = "stored"
FILE_DELETING = "deleting"
FILE_DELETED = "deleted"
FILE_FAILED = "failed"


class SessionFile(SQLModel, table=True):
    """A file uploaded into a session; the object lives at `object_key` in the store."""

    __tablename__ = "session_files"
    __table_args__ = (
        sa.Index("ix_session_files_session_id_status", "session_id", "status"),
        sa.Index("ix_session_files_status_created_at", "status", "created_at"),
    )

    id: str = Field(primary_key=True, max_length=36)
    session_id: int = Field(foreign_key="user_sessions.id", nullable=False)
    object_key: str = Field(max_length=128, nullable=False, unique=True)
    filename: str = Field(max_length=255, nullable=False)
    content_type: str = Field(max_length=64, nullable=False)
    size_bytes: int = Field(default=0, sa_type=sa.BigInteger, nullable=False)
    sha256: str | None = Field(default=None, max_length=64)
    status: str = Field(default=FILE_PENDING, max_length=16, nullable=False)
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


MESSAGE_USER = "user"
MESSAGE_ASSISTANT = "assistant"
MESSAGE_COMPLETE = "complete"
MESSAGE_INCOMPLETE = "incomplete"
MESSAGE_FAILED = "failed"


class ChatMessage(SQLModel, table=True):
    """One turn of a session's conversation."""

    __tablename__ = "chat_messages"
    __table_args__ = (sa.Index("ix_chat_messages_session_id_id", "session_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    session_id: int = Field(foreign_key="user_sessions.id", nullable=False)
    role: str = Field(max_length=16, nullable=False)
    content: str = Field(sa_type=sa.Text, nullable=False)
    status: str = Field(default=MESSAGE_COMPLETE, max_length=16, nullable=False)
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    citations: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON))


class FileChunk(SQLModel, table=True):
    """A passage of an uploaded file's text, for the retrieval assistant."""

    __tablename__ = "file_chunks"

    file_id: str = Field(foreign_key="session_files.id", primary_key=True, max_length=36)
    ordinal: int = Field(primary_key=True)
    text: str = Field(sa_type=sa.Text, nullable=False)
    #: 1-based page for PDFs; None for files without pages.
    page: int | None = Field(default=None)
