"""Abuse signals the edges report: a refused, over-limit request becomes one audit row."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import select

from chat_app.db import unit_of_work
from chat_app.errors import DatabaseUnavailable
from chat_app.models import UserSession, utcnow
from chat_app.services.audit import AuditWriter, RequestContext


def record_rate_limited(
    *,
    engine: Engine,
    audit: AuditWriter,
    ctx: RequestContext,
    limit: str,
    session_uuid: str | None = None,
) -> None:
    """Write one `rate_limited` audit row in its own transaction, linked to the session if known."""
    try:
        with unit_of_work(engine) as db:
            row = None
            if session_uuid is not None:
                query = select(UserSession).where(UserSession.uuid == session_uuid)
                row = db.exec(query).first()
            audit.record(
                db,
                "rate_limited",
                ctx,
                at=utcnow(),
                session=row,
                session_uuid=session_uuid,
                details={"limit": limit},
            )
    except OperationalError as exc:
        raise DatabaseUnavailable() from exc
