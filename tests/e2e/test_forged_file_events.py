"""Crafted websocket events cannot reach another session's files: refused, nothing changes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.pages import UI_TIMEOUT_MS, open_app, rewrite_on_wire, toast

pytestmark = pytest.mark.e2e

PICKER = "#attach input[type=file]"


def file_row(served_app, sid: str) -> tuple[str, str]:
    """(file id, status) of the session's single file, read from the app's database."""
    with sqlite3.connect(served_app.data_dir / "chat_app.db") as db:
        return db.execute(
            "SELECT f.id, f.status FROM session_files f JOIN user_sessions s"
            " ON s.id = f.session_id WHERE s.uuid = ?",
            (sid,),
        ).fetchone()


def upload_one(page: Page, path: Path) -> None:
    page.set_input_files(PICKER, str(path))
    expect(page.get_by_role("region", name="Files").get_by_role("listitem")).to_have_count(
        1, timeout=UI_TIMEOUT_MS
    )


@pytest.mark.parametrize("action", ["Delete", "Download"])
def test_other_sessions_file_is_refused(
    browser: Browser, served_app, tmp_path: Path, action: str
) -> None:
    secret = tmp_path / "a-secret.txt"
    secret.write_text("session A only\n")
    mine = tmp_path / "b-own.txt"
    mine.write_text("session B\n")

    page_a = browser.new_context().new_page()
    sid_a = open_app(page_a, served_app.url)
    upload_one(page_a, secret)
    a_file, _ = file_row(served_app, sid_a)

    page_b = browser.new_context().new_page()
    sid_b = open_app(page_b, served_app.url)
    upload_one(page_b, mine)
    b_file, _ = file_row(served_app, sid_b)

    swapped = rewrite_on_wire(page_b, b_file, a_file)
    page_b.reload()
    button = page_b.get_by_role("button", name=f"{action} b-own.txt")
    expect(button).to_be_visible(timeout=UI_TIMEOUT_MS)
    button.click()
    expect(toast(page_b, "No such file in this session.")).to_be_visible(timeout=UI_TIMEOUT_MS)
    assert swapped, "the event was not rewritten on the wire"

    assert file_row(served_app, sid_a) == (a_file, "stored")
    assert file_row(served_app, sid_b) == (b_file, "stored")
    a_objects = list((served_app.data_dir / "files" / "sessions" / sid_a).iterdir())
    assert [p.name for p in a_objects] == [a_file]
