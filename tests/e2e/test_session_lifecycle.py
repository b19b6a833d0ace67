"""The session lifecycle in a real browser against the production build (dev controls off)."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.pages import (
    REPLACED_TOAST,
    UI_TIMEOUT_MS,
    badge,
    open_app,
    stored_id,
    toast,
    wait_for_session,
)

pytestmark = pytest.mark.e2e


def test_first_visit_issues_an_id_shown_in_the_badge(page: Page, served_app) -> None:
    sid = open_app(page, served_app.url)
    expect(badge(page)).to_contain_text(sid[:8])
    expect(badge(page)).to_contain_text("expires")
    # A first visit is not an error: no "session ended" toast.
    expect(toast(page, REPLACED_TOAST)).to_have_count(0)


def test_reload_resumes_the_same_id(page: Page, served_app) -> None:
    sid = open_app(page, served_app.url)
    page.reload()
    expect(badge(page)).to_contain_text(sid[:8], timeout=UI_TIMEOUT_MS)
    assert stored_id(page) == sid
    expect(toast(page, REPLACED_TOAST)).to_have_count(0)


@pytest.mark.parametrize(
    "bad_value",
    ["not-a-session-id", "{00000000-0000-4000-8000-000000000000}", "DROP TABLE user_sessions"],
)
def test_corrupted_stored_id_recovers_with_a_toast(page: Page, served_app, bad_value) -> None:
    open_app(page, served_app.url)
    page.evaluate("(v) => localStorage.setItem('sid', v)", bad_value)
    page.reload()
    sid = wait_for_session(page, not_equal=bad_value)
    assert sid != bad_value
    expect(toast(page, REPLACED_TOAST)).to_be_visible(timeout=UI_TIMEOUT_MS)


def test_never_issued_id_is_not_adopted(page: Page, served_app) -> None:
    open_app(page, served_app.url)
    forged = str(uuid.uuid4())
    page.evaluate("(v) => localStorage.setItem('sid', v)", forged)
    page.reload()
    sid = wait_for_session(page, not_equal=forged)
    assert sid != forged
    expect(toast(page, REPLACED_TOAST)).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(badge(page)).not_to_contain_text(forged[:8])


def test_reset_modal_states_what_will_be_erased_and_cancel_keeps_the_id(
    page: Page, served_app
) -> None:
    sid = open_app(page, served_app.url)
    page.get_by_role("button", name="New session").click()
    dialog = page.get_by_role("alertdialog", name="Start a new session?")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("0 messages")
    expect(dialog).to_contain_text("0 files")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    page.reload()
    expect(badge(page)).to_contain_text(sid[:8], timeout=UI_TIMEOUT_MS)
    assert stored_id(page) == sid


def test_reset_confirm_starts_a_new_session_and_the_second_tab_follows(
    page: Page, served_app
) -> None:
    sid = open_app(page, served_app.url)
    second = page.context.new_page()
    second.goto(served_app.url)
    expect(badge(second)).to_contain_text(sid[:8], timeout=UI_TIMEOUT_MS)

    page.get_by_role("button", name="New session").click()
    page.get_by_role("alertdialog").get_by_role("button", name="Erase and start new").click()
    new_sid = wait_for_session(page, not_equal=sid)
    expect(toast(page, "New session started")).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(toast(page, "0 messages and 0 files erased")).to_be_visible()

    expect(badge(second)).to_contain_text(new_sid[:8], timeout=UI_TIMEOUT_MS)
    second.reload()
    expect(badge(second)).to_contain_text(new_sid[:8], timeout=UI_TIMEOUT_MS)
    expect(toast(second, REPLACED_TOAST)).to_have_count(0)


def test_old_id_never_comes_back_after_reset(page: Page, served_app) -> None:
    sid = open_app(page, served_app.url)
    page.get_by_role("button", name="New session").click()
    page.get_by_role("button", name="Erase and start new").click()
    new_sid = wait_for_session(page, not_equal=sid)
    page.evaluate("(v) => localStorage.setItem('sid', v)", sid)
    page.reload()
    latest = wait_for_session(page, not_equal=sid)
    assert latest not in {sid, new_sid}
    expect(toast(page, REPLACED_TOAST)).to_be_visible(timeout=UI_TIMEOUT_MS)


def test_dev_panel_is_absent_by_default(page: Page, served_app) -> None:
    open_app(page, served_app.url)
    expect(page.get_by_role("region", name="Developer controls")).to_have_count(0)
    expect(page.get_by_role("button", name="Expire now")).to_have_count(0)


def test_controls_have_accessible_names(page: Page, served_app) -> None:
    open_app(page, served_app.url)
    expect(page.get_by_role("log", name="Conversation")).to_be_visible()
    expect(page.get_by_role("button", name="New session")).to_be_visible()
    expect(page.get_by_role("button", name="Toggle light and dark mode")).to_be_visible()


def test_color_mode_toggle_switches_theme(page: Page, served_app) -> None:
    open_app(page, served_app.url)
    html = page.locator("html")
    before = html.get_attribute("class") or ""
    page.get_by_role("button", name="Toggle light and dark mode").click()
    expect(html).not_to_have_class(before, timeout=UI_TIMEOUT_MS)
