"""The developer controls panel in a real browser, with CHAT_APP_DEV_CONTROLS=1."""

from __future__ import annotations

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


def panel(page: Page):
    return page.get_by_role("region", name="Developer controls")


def test_panel_shows_the_full_id_and_audit_events(page: Page, served_dev_app) -> None:
    sid = open_app(page, served_dev_app.url)
    expect(panel(page)).to_be_visible()
    expect(panel(page)).to_contain_text(sid)
    expect(panel(page)).to_contain_text("session.created", timeout=UI_TIMEOUT_MS)


def test_validate_now_reports_an_active_session(page: Page, served_dev_app) -> None:
    sid = open_app(page, served_dev_app.url)
    panel(page).get_by_role("button", name="Validate now").click()
    expect(toast(page, "Session is valid and active.")).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(panel(page)).to_contain_text("dev.action", timeout=UI_TIMEOUT_MS)
    assert stored_id(page) == sid


def test_expire_now_then_reload_gives_a_new_session_with_a_toast(
    page: Page, served_dev_app
) -> None:
    sid = open_app(page, served_dev_app.url)
    panel(page).get_by_role("button", name="Expire now").click()
    new_sid = wait_for_session(page, not_equal=sid)
    expect(toast(page, REPLACED_TOAST)).to_be_visible(timeout=UI_TIMEOUT_MS)
    page.reload()
    expect(badge(page)).to_contain_text(new_sid[:8], timeout=UI_TIMEOUT_MS)
    assert stored_id(page) == new_sid


def test_expired_id_put_back_is_refused(page: Page, served_dev_app) -> None:
    sid = open_app(page, served_dev_app.url)
    panel(page).get_by_role("button", name="Expire now").click()
    wait_for_session(page, not_equal=sid)
    page.evaluate("(v) => localStorage.setItem('sid', v)", sid)
    page.reload()
    assert wait_for_session(page, not_equal=sid) != sid
    expect(toast(page, REPLACED_TOAST)).to_be_visible(timeout=UI_TIMEOUT_MS)


def test_corrupt_stored_id_reloads_and_recovers(page: Page, served_dev_app) -> None:
    sid = open_app(page, served_dev_app.url)
    panel(page).get_by_role("button", name="Corrupt stored id").click()
    new_sid = wait_for_session(page, not_equal=sid)
    assert new_sid != sid
    expect(toast(page, REPLACED_TOAST)).to_be_visible(timeout=UI_TIMEOUT_MS)


def test_reset_now_skips_the_modal(page: Page, served_dev_app) -> None:
    sid = open_app(page, served_dev_app.url)
    panel(page).get_by_role("button", name="Reset now").click()
    wait_for_session(page, not_equal=sid)
    expect(page.get_by_role("alertdialog")).to_have_count(0)
    expect(toast(page, "New session started")).to_be_visible(timeout=UI_TIMEOUT_MS)


def test_sweep_buttons_show_a_report(page: Page, served_dev_app) -> None:
    open_app(page, served_dev_app.url)
    panel(page).get_by_role("button", name="Sweep (dry run)").click()
    expect(toast(page, "Sweep dry run finished")).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(panel(page)).to_contain_text("dry run: nothing was changed")
    panel(page).get_by_role("button", name="Sweep now").click()
    expect(toast(page, "Sweep finished")).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(panel(page)).to_contain_text("Sweep finished in", timeout=UI_TIMEOUT_MS)
    expect(panel(page)).to_contain_text('"which": "sweep"', timeout=UI_TIMEOUT_MS)
