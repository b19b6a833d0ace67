"""Developer controls: inspect and force every session transition (CHAT_APP_DEV_CONTROLS=1)."""

from __future__ import annotations

import json

import anyio.to_thread
import reflex as rx

from chat_app.errors import AppError, SessionNotFound
from chat_app.services.sweep import format_report
from chat_app.state.common import error_toast, request_context, services
from chat_app.state.session import SessionState, format_day

AUDIT_ROWS_SHOWN = 20
CORRUPT_VALUE = "not-a-session-id"


class DevState(rx.State):
    """Every handler re-checks the setting server-side: hiding the panel is not protection."""

    audit_rows: list[dict[str, str]] = []
    sweep_report: str = ""
    sweeping: bool = False

    @rx.event
    async def refresh_audit(self):
        """Load the session's last audit events into the panel."""
        session = await self.get_state(SessionState)
        svc = services()
        if not svc.dev.enabled or not session.sid:
            return
        try:
            rows = svc.sessions.audit_events(session.sid, request_context(self, "dev"),
                                             limit=AUDIT_ROWS_SHOWN)
        except AppError:
            rows = []
        self.audit_rows = [
            {
                "id": str(row.id),
                "at": row.at.strftime("%H:%M:%S"),
                "event": row.event,
                "actor": row.actor,
                "details": json.dumps(row.details, sort_keys=True),
            }
            for row in rows
        ]

    @rx.event
    async def validate_now(self):
        """Validate the stored id against the server right now."""
        session = await self.get_state(SessionState)
        ctx = request_context(self, "dev")
        try:
            services().dev.require("validate", session.sid, ctx)
            view = services().sessions.resume(session.sid, ctx)
            services().dev.record("validate", session.sid, ctx)
        except SessionNotFound:
            # The page-load flow issues a new session and its toast says why.
            return [SessionState.load_session, DevState.refresh_audit]
        except AppError as error:
            return error_toast(error)
        session._show(view)
        return [
            rx.toast.success("Session is valid and active.",
                             description=f"Expires {format_day(view.expires_at)}."),
            DevState.refresh_audit,
        ]

    @rx.event
    async def reset_now(self):
        """Reset without the confirmation modal."""
        session = await self.get_state(SessionState)
        ctx = request_context(self, "dev")
        try:
            services().dev.require("reset", session.sid, ctx)
            result = services().sessions.reset(session.sid, ctx)
        except AppError as error:
            return error_toast(error)
        session._show(result.session)
        return [rx.toast.success("New session started (dev reset)."), DevState.refresh_audit]

    @rx.event
    async def expire_now(self):
        """Expire the session server-side, then run the page-load flow at once."""
        session = await self.get_state(SessionState)
        ctx = request_context(self, "dev")
        try:
            services().dev.require("expire", session.sid, ctx)
            services().sessions.expire(session.sid, ctx, reason="dev")
        except AppError as error:
            return error_toast(error)
        return [SessionState.load_session, DevState.refresh_audit]

    @rx.event
    async def corrupt_stored_id(self):
        """Write a malformed id into local storage and reload, to exercise recovery."""
        session = await self.get_state(SessionState)
        ctx = request_context(self, "dev")
        try:
            services().dev.require("corrupt", session.sid, ctx)
            services().dev.record("corrupt", session.sid, ctx)
        except AppError as error:
            return error_toast(error)
        return rx.call_script(
            f"localStorage.setItem('sid', {json.dumps(CORRUPT_VALUE)}); window.location.reload()"
        )

    @rx.event(background=True)
    async def sweep(self, dry_run: bool):
        """Run the sweep (dry run or real) and show its report."""
        which = "sweep_dry_run" if dry_run else "sweep"
        async with self:
            session = await self.get_state(SessionState)
            sid, ctx = session.sid, request_context(self, "dev")
            self.sweeping = True
        try:
            await anyio.to_thread.run_sync(services().dev.record, which, sid, ctx)
            report = await anyio.to_thread.run_sync(
                lambda: services().sweeper.run(ctx, dry_run=dry_run)
            )
        except AppError as error:
            async with self:
                self.sweeping = False
            yield error_toast(error)
            return
        async with self:
            self.sweeping = False
            self.sweep_report = format_report(report)
        title = "Sweep dry run finished" if dry_run else "Sweep finished"
        yield rx.toast.success(
            title, description=f"{report.deleted_objects} orphan objects, "
            f"{report.expired_sessions} sessions expired, {report.errors} errors."
        )
        yield DevState.refresh_audit
