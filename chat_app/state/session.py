"""The browser's session: resume on page load, badge details, the reset modal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import reflex as rx

from chat_app.container import Services
from chat_app.errors import AppError, ResetConflict, ServiceUnavailable, SessionNotFound
from chat_app.services.chat import MessageView
from chat_app.services.files import FileView
from chat_app.services.sessions import OpenResult, ResetResult, SessionContents, SessionView
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
#: After a 503: what the user can do, and that waiting costs nothing.
LOAD_LATER = "Reload the page in a moment to continue; nothing was lost."
RESET_LATER = "Nothing was erased: this session is unchanged."


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


@dataclass(frozen=True)
class PageContents:
    """What the page shows of one session, read with it in the page-load flow's thread hop."""

    session_uuid: str
    #: The ticks it was read at: a later load, turn or file change makes the vars read anew.
    refresh_tick: int
    chat_tick: int
    files_tick: int
    messages: tuple[MessageView, ...]
    files: tuple[FileView, ...]


def read_contents(svc: Services, opened: OpenResult) -> tuple[list[MessageView], list[FileView]]:
    """The messages and stored files of the session a page load opened (validated already)."""
    if opened.outcome != "resumed" or opened.session.status != "active":
        return [], []  # issued just now: nothing in it yet
    return svc.chat.messages_of(opened.session.id), svc.files.list_stored(opened.session.id)


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
    # Bumped when this tab's conversation / file list changes (ChatState.messages and
    # FilesState.files re-run). Kept here, not in those substates, so that the page-load flow
    # can tag what it read with them (`PageContents`).
    chat_tick: int = 0
    files_tick: int = 0
    # The session this tab last loaded (backend only). The computed vars of this state and its
    # substates read it instead of looking the id up again each: a page load was 11 database
    # transactions, now 3 (bench.events). None until the tab's first load has run.
    _shown: SessionView | None = None
    # Its messages and files, read in the same thread hop as the page-load flow: the `messages`
    # and `files` vars then need no hop and no transaction of their own on a page load, which
    # cost more than the flow itself (bench.events (a)).
    _page: PageContents | None = None

    # Helpers start with "_": Reflex registers every public method of a State as an event
    # handler, which any websocket client may then call by name.
    def _shown_session(self) -> SessionView | None:
        """The session to display for `sid`: the one this tab loaded, else a read-only look-up.

        Callers read `self.sid` and `self.refresh_tick` themselves, so Reflex re-runs them.
        """
        if self._showing_nothing():
            return None
        if self._shown.uuid == self.sid:
            return self._shown
        # Another tab of this browser changed the stored id (reset there): follow it.
        return services().sessions.peek(self.sid)

    def _showing_nothing(self) -> bool:
        """Hydrating, before this tab's page-load flow: nothing to show, nothing to look up."""
        return not self.sid or self._shown is None

    # Two helpers, one per var: Reflex makes every var a helper reads a dependency of the
    # computed var, and the files must not be read again after each chat turn.
    def _page_messages(self) -> tuple[MessageView, ...] | None:
        """The messages read with the page-load flow, while they still describe the page."""
        page = self._page
        if page is None or (page.session_uuid, page.refresh_tick, page.chat_tick) != (
            self.sid, self.refresh_tick, self.chat_tick
        ):
            return None
        return page.messages

    def _page_files(self) -> tuple[FileView, ...] | None:
        """The files read with the page-load flow, while they still describe the page."""
        page = self._page
        if page is None or (page.session_uuid, page.refresh_tick, page.files_tick) != (
            self.sid, self.refresh_tick, self.files_tick
        ):
            return None
        return page.files

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

    # The handlers below run their service calls in a worker thread: a database that is slow or
    # silent (up to its timeouts, chat_app/db.py) must hold up this tab's event, not the event
    # loop every tab and API request of this worker shares.

    @rx.event
    async def load_session(self):
        """Page load: resume the stored id, or issue a new session and explain why."""
        return await self._open(self.sid)

    @rx.event
    async def adopt_stored_id(self, stored: str | None):
        """After losing a reset race: take whatever id the winning tab stored, then validate it."""
        # `None` when nothing is stored (the value of localStorage.getItem); the websocket's
        # event guard (chat_app/event_guard.py) refuses anything the annotation does not allow.
        return await self._open(stored if isinstance(stored, str) else "")

    @rx.event
    async def open_reset_dialog(self):
        """Count what a reset would erase, then ask for confirmation."""
        sid, ctx = self.sid, request_context(self)
        try:
            contents: SessionContents = await anyio.to_thread.run_sync(
                services().sessions.contents, sid, ctx
            )
        except AppError as error:
            return [error_toast(error), *self._reopen_events(error)]
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
    async def confirm_reset(self):
        """Erase this session and start a new one."""
        self.reset_dialog_open = False
        svc = services()
        sid, ctx = self.sid, request_context(self)

        def reset() -> ResetResult:
            svc.limiter.hit("reset", svc.audit.session_ref(sid) if sid else "none")
            return svc.sessions.reset(sid, ctx)

        try:
            result = await anyio.to_thread.run_sync(reset)
        except (ResetConflict, SessionNotFound) as error:
            # Another tab won or ended it: follow local storage rather than issue a third session.
            return [
                rx.toast.warning(error.detail, description=FOLLOW_OTHER_TAB),
                rx.call_script(READ_STORED_ID, callback=SessionState.adopt_stored_id),
            ]
        except ServiceUnavailable as error:
            # The reset's one transaction never committed: say so, and keep the page as it is.
            return error_toast(error, description=RESET_LATER)
        except AppError as error:
            return [error_toast(error), *self._reopen_events(error)]
        self._show(result.session)
        erased = (
            f"{plural(result.erased_messages, 'message')} and "
            f"{plural(result.erased_files, 'file')} erased."
        )
        return rx.toast.success(f"New session started — {erased}")

    # --- shared steps -----------------------------------------------------------------------

    async def _open(self, stored: str):
        svc = services()
        ctx = request_context(self)

        def open_session() -> tuple[OpenResult, tuple[list[MessageView], list[FileView]] | None]:
            result = svc.sessions.open_for_browser(
                stored or None, ctx, before_create=lambda: svc.limiter.hit("create", ctx.ip or "-")
            )
            try:
                return result, read_contents(svc, result)
            except AppError:
                return result, None  # the vars try again on their own

        try:
            result, contents = await anyio.to_thread.run_sync(open_session)
        except AppError as error:
            self._forget_shown()  # nothing validated: show no session rather than a stale one
            unavailable = isinstance(error, ServiceUnavailable)
            return error_toast(error, description=LOAD_LATER if unavailable else None)
        self._show(result.session)
        if contents is not None:
            messages, files = contents
            self._page = PageContents(
                session_uuid=result.session.uuid, refresh_tick=self.refresh_tick,
                chat_tick=self.chat_tick, files_tick=self.files_tick,
                messages=tuple(messages), files=tuple(files),
            )
        if result.outcome != "replaced":
            return None
        return rx.toast.warning(
            REPLACED_TOAST, description=REPLACED_DETAIL.get(result.rejected_reason or "", "")
        )

    def _reopen_events(self, error: AppError) -> list:
        if isinstance(error, ServiceUnavailable):
            # A dependency down says nothing about the session: re-running the page-load flow
            # would wait on the same dependency again, then show no session at all.
            return []
        # The stored id no longer validates: run the page-load flow, which issues a new one.
        return [SessionState.load_session]

    def _show(self, view: SessionView) -> None:
        """Display `view` (just validated, created or changed) as this tab's session."""
        self.sid = view.uuid
        self._shown = view
        self._page = None  # the page-load flow sets it again, for the new refresh_tick
        self.refresh_tick += 1

    def _forget_shown(self) -> None:
        self._shown = None
        self._page = None
        self.refresh_tick += 1
