"""Page helpers for the browser tests: read the stored id, find the badge, wait for toasts."""

from __future__ import annotations

import re

from playwright.sync_api import Locator, Page, WebSocketRoute, expect

SESSION_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
REPLACED_TOAST = "Your previous session has ended; a new one has started."
UI_TIMEOUT_MS = 20_000


def stored_id(page: Page) -> str | None:
    """The session id in the browser's local storage."""
    return page.evaluate("() => localStorage.getItem('sid')")


def badge(page: Page) -> Locator:
    """The `status` named "Session"."""
    return page.get_by_role("status", name="Session")


def wait_for_session(page: Page, not_equal: str | None = None) -> str:
    """Wait until a valid id is stored (different from `not_equal`) and the badge shows it."""
    page.wait_for_function(
        """(old) => { const v = localStorage.getItem('sid');
                      return v && v.length === 36 && v !== old; }""",
        arg=not_equal,
        timeout=UI_TIMEOUT_MS,
    )
    sid = stored_id(page)
    assert sid is not None and SESSION_ID.fullmatch(sid), sid
    expect(badge(page)).to_contain_text(sid[:8], timeout=UI_TIMEOUT_MS)
    return sid


def open_app(page: Page, url: str) -> str:
    """Load the page and return the session id it settles on."""
    page.goto(url)
    return wait_for_session(page)


def toast(page: Page, text: str) -> Locator:
    """A toast (sonner) containing `text`."""
    return page.locator("[data-sonner-toast]").filter(has_text=text)


def rewrite_on_wire(page: Page, old: str, new: str, *, once: bool = False) -> list[str]:
    """Forge events: replace `old` with `new` in frames this page sends on the Reflex websocket.

    Returns the rewritten frames (so a test can assert the forgery happened).
    """
    rewritten: list[str] = []

    def route(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()

        def to_server(message: str | bytes) -> None:
            if isinstance(message, str) and old in message and not (once and rewritten):
                message = message.replace(old, new)
                rewritten.append(message)
            server.send(message)

        ws.on_message(to_server)

    page.route_web_socket("**/_event/**", route)
    return rewritten
