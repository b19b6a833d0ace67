"""The browser's session: resume on page load, badge details, the reset modal."""

from __future__ import annotations

from typing import Any

import reflex as rx

from chat_app.errors import AppError, ResetConflict, SessionNotFound
from chat_app.services.sessions import OpenResult, SessionView
from chat_app.state.common import error_toast, request_context, services

FOLLOW_OTHER_TAB = "Switching to this browser's current session."
READ_STORED_ID = "localStorage.getItem('sid')"
REPLACED_TOAST = "Your previous session has ended; a new one has started."
REPLACED_DETAIL = {
    "malformed": "The stored session id was not valid.",
    "unknown": "The stored session id is not one this server issued.",
    "ended": "It was reset or ended.",
    "expired": "It expired after a period without use.",
}


def format_day(value: Any) -> str:
    """A timestamp as a calendar date (UTC)."""
    return value.strftime("%Y-%m-%d")


def format_moment(value: Any) -> str:
    """A timestamp to the minute (UTC)."""
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "-"


def human_size(size: int) -> str:
    """1536 → "1.5 KB"."""
    value = float(size)
    for unit in ("bytes", "KB", "MB"):
        if value < 1024:
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def plural(count: int, noun: str) -> str:
    """`1 message`, `3 files`."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


class SessionState(rx.State):
    """Holds the server-issued id in local storage, shared by every tab of the browser."""

    sid: str = rx.LocalStorage("", name="sid", sync=True)
    reset_dialog_open: bool = False
    erase_messages: int = 0
    erase_files: int = 0
    erase_bytes: int = 0
    erase_size: str = "0 bytes"
    # Bumped whenever this tab (re)loads its session, so the computed vars below re-run.
    refresh_tick: int = 0
    # The session this tab last loaded (backend only). The computed vars of this state and its
    # substates read it instead of looking the id up again each: a page load was 11 database
    # transactions, now 3 (bench.events). None until the tab's first load has run.
    _shown: SessionView | None = None

    # Helpers start with "_": Reflex registers every public method of a State as an event
    # handler, which any websocket client may then call by name.
    def _shown_session(self) -> SessionView | None:
        """The session to display for `sid`: the one this tab loaded, else a read-only look-up.

        Callers read `self.sid` and `self.refresh_tick` themselves, so Reflex re-runs them.
        """
        if not self.sid or self._shown is None:
            return None  # hydrating, before this tab's page-load flow: nothing to show yet
        if self._shown.uuid == self.sid:
            return self._shown
        # Another tab of this browser changed the stored id (reset there): follow it.
        return services().sessions.peek(self.sid)

    def _shown_active_id(self) -> int | None:
        """The database id of the displayed session if it is active."""
        view = self._shown_session()
        return view.id if view is not None and view.status == "active" else None

    @rx.var
    def session_details(self) -> dict[str, str]:
        """What the badge and the dev panel show."""
        _ = self.sid, self.refresh_tick
        view = self._shown_session()
        if view is None:
            return {"short": "", "status": "none", "expires": "", "full": ""}
        return {
            "short": view.uuid[:8],
            "full": view.uuid,
            "status": view.status,
            "expires": format_day(view.expires_at),
            "created": format_moment(view.created_at),
            "last_seen": format_moment(view.last_seen_at),
            "ended": format_moment(view.ended_at),
        }

    @rx.event
    def load_session(self):
        """Page load: resume the stored id, or issue a new session and explain why."""
        return self._open(self.sid)

    @rx.event
    def adopt_stored_id(self, stored: str | None):
        """After losing a reset race: take whatever id the winning tab stored, then validate it."""
        # `None` when nothing is stored (the value of localStorage.getItem); the websocket's
        # event guard (chat_app/event_guard.py) refuses anything the annotation does not allow.
        return self._open(stored if isinstance(stored, str) else "")

    @rx.event
    def open_reset_dialog(self):
        """Count what a reset would erase, then ask for confirmation."""
        try:
            contents = services().sessions.contents(self.sid, request_context(self))
        except AppError as error:
            return [error_toast(error), *self._reopen_events()]
        self.erase_messages = contents.messages
        self.erase_files = contents.files
        self.erase_bytes = contents.bytes
        self.erase_size = human_size(contents.bytes)
        self.reset_dialog_open = True
        return None

    @rx.event
    def set_reset_dialog_open(self, value: bool):
        """Cancel, Escape or the modal's own close."""
        self.reset_dialog_open = value

    @rx.event
    def confirm_reset(self):
        """Erase this session and start a new one."""
        self.reset_dialog_open = False
        svc = services()
        ctx = request_context(self)
        try:
            svc.limiter.hit("reset", svc.audit.session_ref(self.sid) if self.sid else "none")
            result = svc.sessions.reset(self.sid, ctx)
        except (ResetConflict, SessionNotFound) as error:
            # Another tab won or ended it: follow local storage rather than issue a third session.
            return [
                rx.toast.warning(error.detail, description=FOLLOW_OTHER_TAB),
                rx.call_script(READ_STORED_ID, callback=SessionState.adopt_stored_id),
            ]
        except AppError as error:
            return [error_toast(error), *self._reopen_events()]
        self._show(result.session)
        erased = (
            f"{plural(result.erased_messages, 'message')} and "
            f"{plural(result.erased_files, 'file')} erased."
        )
        return rx.toast.success(f"New session started — {erased}")

    # --- shared steps -----------------------------------------------------------------------

    def _open(self, stored: str):
        svc = services()
        ctx = request_context(self)
        try:
            result: OpenResult = svc.sessions.open_for_browser(
                stored or None, ctx, before_create=lambda: svc.limiter.hit("create", ctx.ip or "-")
            )
        except AppError as error:
            self._forget_shown()  # nothing validated: show no session rather than a stale one
            return error_toast(error)
        self._show(result.session)
        if result.outcome != "replaced":
            return None
        return rx.toast.warning(
            REPLACED_TOAST, description=REPLACED_DETAIL.get(result.rejected_reason or "", "")
        )

    def _reopen_events(self) -> list:
        # The stored id no longer validates: run the page-load flow, which issues a new one.
        return [SessionState.load_session]

    def _show(self, view: SessionView) -> None:
        """Display `view` (just validated, created or changed) as this tab's session."""
        self.sid = view.uuid
        self._shown = view
        self.refresh_tick += 1

    def _forget_shown(self) -> None:
        self._shown = None
        self.refresh_tick += 1
