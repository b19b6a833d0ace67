"""With dev controls off, a dev event forged onto the real websocket is refused and audited."""

from __future__ import annotations

import sqlite3

import pytest
from playwright.sync_api import Page, expect

from chat_app.state.dev import DevState
from chat_app.state.session import SessionState
from tests.e2e.pages import UI_TIMEOUT_MS, badge, open_app, rewrite_on_wire, stored_id, toast

pytestmark = pytest.mark.e2e

INNOCENT = f"{SessionState.get_full_name()}.open_reset_dialog"


@pytest.mark.parametrize("handler", ["expire_now", "reset_now", "validate_now"])
def test_forged_dev_event_is_refused_and_audited(page: Page, served_app, handler: str) -> None:
    forged = rewrite_on_wire(page, INNOCENT, f"{DevState.get_full_name()}.{handler}", once=True)
    sid = open_app(page, served_app.url)
    page.get_by_role("button", name="New session").click()
    expect(toast(page, "Developer controls are disabled")).to_be_visible(timeout=UI_TIMEOUT_MS)
    assert forged, "the click was not rewritten on the wire"

    page.reload()
    expect(badge(page)).to_contain_text(sid[:8], timeout=UI_TIMEOUT_MS)
    assert stored_id(page) == sid

    with sqlite3.connect(served_app.data_dir / "chat_app.db") as db:
        status = db.execute("SELECT status FROM user_sessions WHERE uuid = ?", (sid,)).fetchone()
        denied = db.execute(
            "SELECT details FROM audit_log WHERE event = 'dev.denied' AND details LIKE ?",
            (f'%"{handler.removesuffix("_now")}"%',),
        ).fetchall()
    assert status == ("active",)
    assert denied, "no dev.denied audit row was written"
