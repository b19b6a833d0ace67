"""Files in a real browser: attach with progress, list, download, delete, reset purges them."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.pages import UI_TIMEOUT_MS, open_app, toast, wait_for_session

pytestmark = pytest.mark.e2e

PICKER = "#attach input[type=file]"


def files_region(page: Page):
    return page.get_by_role("region", name="Files")


def session_prefix(served_app, sid: str) -> Path:
    return served_app.data_dir / "files" / "sessions" / sid


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_bytes(("line of notes é\n" * 20_000).encode())  # ~340 KB, several chunks
    return path


def test_attach_list_download_delete(page: Page, served_app, notes: Path) -> None:
    sid = open_app(page, served_app.url)
    page.set_input_files(PICKER, str(notes))
    expect(toast(page, "Uploaded notes.txt")).to_be_visible(timeout=UI_TIMEOUT_MS)
    region = files_region(page)
    expect(region.get_by_role("listitem")).to_have_count(1)
    # Per-file progress sits under the composer, next to "Attach files" (SPEC section 9).
    expect(page.get_by_test_id("upload-progress")).to_contain_text("stored")
    assert len(list(session_prefix(served_app, sid).iterdir())) == 1

    with page.expect_download(timeout=UI_TIMEOUT_MS) as download:
        region.get_by_role("button", name="Download notes.txt").click()
    assert download.value.suggested_filename == "notes.txt"
    assert Path(download.value.path()).read_bytes() == notes.read_bytes()

    region.get_by_role("button", name="Delete notes.txt").click()
    expect(toast(page, "Deleted notes.txt")).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(region.get_by_role("listitem")).to_have_count(0)
    prefix = session_prefix(served_app, sid)
    assert not prefix.exists() or not any(prefix.iterdir())


def test_refused_upload_names_the_file_and_the_reason(
    page: Page, served_app, tmp_path: Path
) -> None:
    open_app(page, served_app.url)
    fake = tmp_path / "photo.png"
    fake.write_text("<html><img src=x onerror=alert(1)></html>")
    page.set_input_files(PICKER, str(fake))
    expect(toast(page, "photo.png was not uploaded")).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(toast(page, "not a .png file")).to_be_visible()
    expect(files_region(page).get_by_role("listitem")).to_have_count(0)


def test_reset_counts_files_and_purges_them(page: Page, served_app, notes: Path,
                                            tmp_path: Path) -> None:
    sid = open_app(page, served_app.url)
    other = tmp_path / "data.csv"
    other.write_text("a,b\n1,2\n")
    page.set_input_files(PICKER, [str(notes), str(other)])
    expect(files_region(page).get_by_role("listitem")).to_have_count(2, timeout=UI_TIMEOUT_MS)

    page.get_by_role("button", name="New session").click()
    dialog = page.get_by_role("alertdialog", name="Start a new session?")
    expect(dialog).to_contain_text("2 files")
    dialog.get_by_role("button", name="Erase and start new").click()
    wait_for_session(page, not_equal=sid)
    expect(toast(page, "0 messages and 2 files erased")).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(files_region(page).get_by_role("listitem")).to_have_count(0)
    prefix = session_prefix(served_app, sid)
    assert not prefix.exists() or not any(prefix.iterdir())


def test_second_tab_sees_the_files_of_the_shared_session(
    page: Page, served_app, notes: Path
) -> None:
    open_app(page, served_app.url)
    page.set_input_files(PICKER, str(notes))
    expect(files_region(page).get_by_role("listitem")).to_have_count(1, timeout=UI_TIMEOUT_MS)
    second = page.context.new_page()
    second.goto(served_app.url)
    expect(files_region(second).get_by_role("button", name="Download notes.txt")).to_be_visible(
        timeout=UI_TIMEOUT_MS
    )
