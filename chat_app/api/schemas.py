"""Response bodies of the API; names say which way data flows (STYLE 18)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from chat_app.models import AuditLog
from chat_app.services.chat import MAX_MESSAGE_CHARS, MessageView
from chat_app.services.files import FileView
from chat_app.services.sessions import SessionView
from chat_app.services.sweep import SweepReport


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


class FilePublic(BaseModel):
    """A stored file of the session; `filename` is the cleaned display name."""

    id: str
    filename: str
    content_type: str = Field(description="Decided by the server from the extension and content.")
    size_bytes: int
    created_at: datetime

    @classmethod
    def from_view(cls, view: FileView) -> FilePublic:
        """Map a service view to the public shape."""
        return cls(
            id=view.id,
            filename=view.filename,
            content_type=view.content_type,
            size_bytes=view.size_bytes,
            created_at=view.created_at,
        )


class FilesPublic(BaseModel):
    """The session's stored files, oldest first."""

    items: list[FilePublic]


class SweepRequest(BaseModel):
    """Optional body of POST /admin/sweep."""

    # Strict and closed: a misspelt key (`dryrun`) or a lax value (`0`, `"no"`) must be refused,
    # never read as "not a dry run", because that sweep really deletes.
    model_config = ConfigDict(extra="forbid", strict=True)

    dry_run: bool = Field(False, description="Report what would be done; change nothing.")


class SweepReportPublic(BaseModel):
    """What one sweep did (or, in a dry run, would do)."""

    dry_run: bool
    expired_sessions: int
    purged_files: int
    scanned_objects: int
    deleted_objects: int
    deleted_bytes: int
    retired_pending: int
    errors: int
    error_kinds: list[str] = Field(description="Problem type slugs of the errors, if any.")
    duration_s: float

    @classmethod
    def from_report(cls, report: SweepReport) -> SweepReportPublic:
        """Map the service's report to the public shape."""
        return cls.model_validate(report.as_dict())


class HealthPublic(BaseModel):
    """Every dependency answered."""

    status: Literal["ok"] = "ok"
    database: Literal["ok"] = "ok"
    store: Literal["ok"] = "ok"


class Problem(BaseModel):
    """An RFC 9457 problem detail (`application/problem+json`)."""

    type: str = Field(description="urn:chat-app:problem:<slug>, stable for clients to match on.")
    title: str
    status: int
    detail: str
    request_id: str = Field(description="Also in the X-Request-Id response header.")


class CitationPublic(BaseModel):
    """A file passage a reply drew on."""

    file_id: str
    filename: str
    page: int | None = Field(None, description="1-based page for PDFs.")


class MessagePublic(BaseModel):
    """One message of the conversation."""

    id: int
    role: Literal["user", "assistant"]
    content: str
    status: Literal["complete", "incomplete", "failed"] = Field(
        description="`incomplete`: stopped or cut off; `failed`: `content` says why."
    )
    created_at: datetime
    citations: list[CitationPublic]

    @classmethod
    def from_view(cls, view: MessageView) -> MessagePublic:
        """Map a service view to the public shape."""
        return cls(
            id=view.id,
            role=view.role,  # type: ignore[arg-type]
            content=view.content,
            status=view.status,  # type: ignore[arg-type]
            created_at=view.created_at,
            citations=[CitationPublic.model_validate(c) for c in view.citations],
        )


class MessagesPublic(BaseModel):
    """The conversation, oldest first."""

    items: list[MessagePublic]


class MessageIn(BaseModel):
    """A message to send."""

    model_config = ConfigDict(extra="forbid")

    content: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS,
                         description="1 to 8,000 characters; not only whitespace.")


class TurnPublic(BaseModel):
    """The saved user message and the assistant's saved reply."""

    message: MessagePublic
    reply: MessagePublic | None = Field(
        description="None only if the session was reset while the reply was being written."
    )
