"""The session lifecycle in a real browser against the production build (dev controls off)."""

from __future__ import annotations

import uuid

import httpx
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


EXPECTED_SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


def _assert_security_headers(url: str, headers: dict[str, str]) -> None:
    for name, value in EXPECTED_SECURITY_HEADERS.items():
        assert headers.get(name) == value, f"{url}: {name} is {headers.get(name)!r}"
    assert "frame-ancestors 'none'" in headers.get("content-security-policy", ""), url


def test_every_response_carries_the_security_headers(page: Page, served_app) -> None:
    # Every HTTP response the page itself loads: the document, scripts, styles, icons.
    seen: list[tuple[str, dict[str, str]]] = []
    page.on("response", lambda response: seen.append((response.url, response.all_headers())))
    open_app(page, served_app.url)
    same_origin = [(url, headers) for url, headers in seen if url.startswith(served_app.url)]
    assert len(same_origin) >= 5, same_origin  # the document and its assets at least
    for url, headers in same_origin:
        _assert_security_headers(url, headers)

    # The API: a created session, a refusal (problem+json) and an unknown path.
    api = f"{served_app.url}/api/v1"
    with httpx.Client(timeout=10) as client:
        created = client.post(f"{api}/session")
        missing_header = client.get(f"{api}/session")
        unknown_path = client.get(f"{served_app.url}/api/v1/no-such-thing")
    assert (created.status_code, missing_header.status_code, unknown_path.status_code) == (
        201, 400, 404
    )
    for response in (created, missing_header, unknown_path):
        _assert_security_headers(str(response.url), dict(response.headers))
    # Session responses must never be stored by a cache on the way.
    assert created.headers["cache-control"] == "no-store"
    assert missing_header.headers["cache-control"] == "no-store"
