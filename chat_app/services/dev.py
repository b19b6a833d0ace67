"""Developer controls (SPEC section 9): refused and audited unless CHAT_APP_DEV_CONTROLS=1."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from chat_app.db import unit_of_work
from chat_app.errors import DevControlsDisabled
from chat_app.models import utcnow
from chat_app.services.audit import AuditWriter, RequestContext
from chat_app.services.session_ids import is_session_id
from chat_app.services.sessions import SessionService

DEV_ACTIONS = frozenset({"validate", "reset", "expire", "corrupt", "sweep_dry_run", "sweep"})


class DevControls:
    """Gatekeeper for dev actions; the actions themselves run through the normal services."""

    def __init__(
        self, engine: Engine, *, audit: AuditWriter, sessions: SessionService, enabled: bool
    ) -> None:
        self._engine = engine
        self._audit = audit
        self._sessions = sessions
        self.enabled = enabled

    def require(self, which: str, raw_id: str | None, ctx: RequestContext) -> None:
        """Raise DevControlsDisabled, with a `dev.denied` audit row, unless dev controls are on."""
        if which not in DEV_ACTIONS:
            raise ValueError(f"unknown dev action {which!r}")
        if self.enabled:
            return
        with unit_of_work(self._engine) as db:
            self._audit.record(
                db,
                "dev.denied",
                ctx,
                at=utcnow(),
                session_uuid=raw_id.lower() if is_session_id(raw_id) else None,
                details={"which": which},
            )
        raise DevControlsDisabled()

    def record(self, which: str, raw_id: str, ctx: RequestContext) -> None:
        """Audit a dev action that changes nothing in the database itself (validate, corrupt)."""
        self.require(which, raw_id, ctx)
        view = self._sessions.peek(raw_id)
        with unit_of_work(self._engine) as db:
            self._audit.record(
                db,
                "dev.action",
                ctx,
                at=utcnow(),
                session=view,
                details={"which": which},
            )
