"""The conversation in a real browser, with the offline retrieval assistant (the default)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.pages import UI_TIMEOUT_MS, open_app, toast, wait_for_session

pytestmark = pytest.mark.e2e

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"
PICKER = "#attach input[type=file]"


def composer(page: Page):
    return page.get_by_role("textbox", name="Message")


def conversation(page: Page):
    return page.get_by_role("log", name="Conversation")


def messages(page: Page, role: str):
    return conversation(page).locator(f"article[data-role={role}]")


def send(page: Page, text: str) -> None:
    composer(page).fill(text)
    composer(page).press("Enter")


def wait_for_reply(page: Page, count: int = 1) -> None:
    """Until `count` assistant replies are saved (not streaming any more)."""
    expect(messages(page, "assistant").and_(page.locator(":not([data-status=streaming])"))
           ).to_have_count(count, timeout=UI_TIMEOUT_MS)


def test_send_shows_the_message_and_a_streamed_reply_that_survives_reload(
    page: Page, served_app
) -> None:
    open_app(page, served_app.url)
    expect(conversation(page)).to_contain_text("This is your private session.")
    send(page, "What can you do?")
    expect(messages(page, "user").first).to_contain_text("What can you do?")
    wait_for_reply(page)
    reply = messages(page, "assistant").first
    expect(reply).to_contain_text("I answer from the files you attach")
    expect(reply).to_have_attribute("data-status", "complete")
    expect(composer(page)).to_have_value("")

    page.reload()
    wait_for_session(page)
    expect(messages(page, "user")).to_have_count(1, timeout=UI_TIMEOUT_MS)
    expect(messages(page, "assistant")).to_contain_text(["I answer from the files you attach"])


def test_a_question_about_a_file_cites_that_file_and_page(page: Page, served_app) -> None:
    open_app(page, served_app.url)
    page.set_input_files(PICKER, str(CORPUS / "handbook.pdf"))
    expect(toast(page, "Uploaded handbook.pdf")).to_be_visible(timeout=UI_TIMEOUT_MS)
    send(page, "How is the lens of the lamp cleaned?")
    wait_for_reply(page)
    reply = messages(page, "assistant").first
    expect(reply).to_contain_text("handbook.pdf, page 2")
    expect(reply).to_contain_text("chamois")

    send(page, "Who won the football world cup?")
    wait_for_reply(page, 2)
    expect(messages(page, "assistant").nth(1)).to_contain_text("I found nothing about that")


def test_script_like_content_renders_as_inert_text(page: Page, served_app) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    open_app(page, served_app.url)
    # Each on its own paragraph: a line starting with <script> is a whole HTML block.
    hostile = (
        "<script>alert('s')</script>\n\n<img src=x onerror=\"alert('i')\">\n\n"
        "[link](javascript:alert('l')) and **bold**"
    )
    send(page, hostile)
    wait_for_reply(page)
    user = messages(page, "user").first
    expect(user).to_contain_text("<script>alert('s')</script>")
    expect(user).to_contain_text("<img src=x onerror=\"alert('i')\">")
    assert user.locator("script, img").count() == 0
    assert user.locator("strong").inner_text() == "bold"  # Markdown still works
    expect(user).to_contain_text("link")
    for anchor in user.locator("a").all():
        assert "javascript" not in (anchor.get_attribute("href") or "").lower()
    page.wait_for_timeout(300)
    assert dialogs == []


#: A host that is not the app's: anything the page asks of it left the page (port 9, discard:
#: nothing answers, so the test needs no network and a stray request cannot hang).
ELSEWHERE = "http://127.0.0.2:9"
HOSTILE_MARKDOWN = "\n\n".join([
    f"![inline image]({ELSEWHERE}/inline.png)",
    "![reference image][pic]",
    f"[pic]: {ELSEWHERE}/reference.png",
    f"[reference link][site] and <{ELSEWHERE}/autolink> and {ELSEWHERE}/bare-url",
    f"[site]: {ELSEWHERE}/site",
    f'> quoted <img src="{ELSEWHERE}/quoted.png" onerror="alert(\'q\')">',
    f"> ![quoted image]({ELSEWHERE}/quoted-md.png)",
    f'<video src="{ELSEWHERE}/v.mp4" autoplay></video> <iframe src="{ELSEWHERE}/f"></iframe>',
    f"<style>@import url({ELSEWHERE}/s.css);</style> <link rel=stylesheet href={ELSEWHERE}/l.css>",
])
#: A file whose name and passage carry the same tricks; the assistant quotes the passage.
HOSTILE_FILENAME = "<img src=x onerror=alert('f')> ![f](x.png) [l](javascript_alert(1)).txt"
HOSTILE_PASSAGE = (
    f"Kestrel lantern polish: ![passage image]({ELSEWHERE}/passage.png) and "
    f'<img src="{ELSEWHERE}/passage-html.png" onerror="alert(\'p\')"> and [ref][r].\n\n'
    f"[r]: {ELSEWHERE}/passage-ref\n"
)


def test_hostile_markdown_and_file_names_send_no_request_off_the_page(
    page: Page, served_app, tmp_path: Path
) -> None:
    # Every request the page makes, from the first one: only the app's own origin may appear.
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    open_app(page, served_app.url)

    hostile_file = tmp_path / HOSTILE_FILENAME
    hostile_file.write_text(HOSTILE_PASSAGE)
    page.set_input_files(PICKER, str(hostile_file))
    # As the upload rules clean it: `<`, `>` become `_`, leading ones are stripped.
    shown_name = "img src=x onerror=alert('f')_ ![f](x.png) [l](javascript_alert(1)).txt"
    expect(toast(page, f"Uploaded {shown_name}")).to_be_visible(timeout=UI_TIMEOUT_MS)
    files = page.get_by_role("region", name="Files")
    expect(files.get_by_role("listitem")).to_contain_text(shown_name)
    # One turn: the message's own Markdown, and a reply quoting the file's passage.
    send(page, f"{HOSTILE_MARKDOWN}\n\nHow is the kestrel lantern polished?")
    wait_for_reply(page)
    user = messages(page, "user").first
    expect(user.locator("blockquote")).to_have_count(2)  # the Markdown renderer has run
    expect(user).to_contain_text('<img src="')  # raw HTML shows as text
    reply = messages(page, "assistant").first
    expect(reply).to_contain_text("Kestrel lantern polish")
    expect(reply).to_contain_text(shown_name)  # the citation, literally

    page.wait_for_timeout(500)  # time for any image, frame or stylesheet to be fetched
    app_origin = urlsplit(served_app.url).netloc
    off_page = [url for url in requests
                if urlsplit(url).scheme not in ("data", "blob")
                and urlsplit(url).netloc != app_origin]
    assert off_page == []
    assert dialogs == []
    assert conversation(page).locator("img, video, iframe, style, link").count() == 0
    # An image shows as a link to it, labelled with its alt text (markdown_renderer.js).
    expect(user.get_by_role("link", name="Image: inline image")).to_have_attribute(
        "href", f"{ELSEWHERE}/inline.png")
    expect(reply.get_by_role("link", name="Image: passage image")).to_have_count(1)
    for anchor in page.locator("a").all():
        assert "javascript" not in (anchor.get_attribute("href") or "").lower()


def test_markdown_renders_headings_code_blocks_and_quotes(page: Page, served_app) -> None:
    # The renderer is a lazily loaded chunk (chat_app/components/lazy_markdown.js): this is the
    # page where it arrives with the first message, so every kind of block must still render.
    open_app(page, served_app.url)
    send(page, "# Plan\n\n> quoted\n\n```python\nprint('hi')\n```\n\n- one\n- two")
    user = messages(page, "user").first
    expect(user.locator("h1")).to_have_text("Plan", timeout=UI_TIMEOUT_MS)
    expect(user.locator("pre code")).to_contain_text("print('hi')")
    expect(user.locator("li")).to_have_count(2)
    # The log's blockquote style (conversation.safe_markdown) reaches the rendered Markdown.
    # A retrying assertion: the optimistic user row is swapped for the stored one, so a one-shot
    # getComputedStyle can land on a detached node (which reports "").
    expect(user.locator("blockquote")).to_have_css("border-left-width", "3px")


def test_send_before_the_page_is_live_keeps_the_text(page: Page, served_app) -> None:
    # The page is prerendered; with its scripts held back it stays as it is in the first few
    # hundred ms of a load: a Send click there must not submit the form natively (a reload).
    page.route("**/assets/*.js", lambda route: route.abort())
    page.goto(served_app.url)
    composer(page).fill("typed early")
    page.get_by_role("button", name="Send").click()
    page.wait_for_timeout(500)
    assert page.url.rstrip("/") == served_app.url.rstrip("/")
    expect(composer(page)).to_have_value("typed early")


def test_enter_sends_shift_enter_adds_a_line_and_empty_is_refused(
    page: Page, served_app
) -> None:
    open_app(page, served_app.url)
    box = composer(page)
    box.fill("first line")
    box.press("Shift+Enter")
    box.type("second line")
    expect(box).to_have_value("first line\nsecond line")
    expect(messages(page, "user")).to_have_count(0)

    box.fill("   ")
    page.get_by_role("button", name="Send").click()
    expect(toast(page, "Type a message before sending.")).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(messages(page, "user")).to_have_count(0)

    box.fill("first line\nsecond line")
    box.press("Enter")
    expect(messages(page, "user")).to_have_count(1, timeout=UI_TIMEOUT_MS)
    expect(messages(page, "user").first).to_contain_text("second line")


def test_overlong_input_is_refused_with_the_limit_and_kept(page: Page, served_app) -> None:
    open_app(page, served_app.url)
    long_text = "word " * 1700  # 8,500 characters
    composer(page).fill(long_text)
    composer(page).press("Enter")
    expect(toast(page, "at most 8,000 characters")).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(composer(page)).to_have_value(long_text)
    expect(messages(page, "user")).to_have_count(0)


def test_transcript_downloads_and_reset_clears_the_conversation(
    page: Page, served_app
) -> None:
    sid = open_app(page, served_app.url)
    send(page, "Remember the word pelican.")
    wait_for_reply(page)

    with page.expect_download(timeout=UI_TIMEOUT_MS) as download:
        page.get_by_role("button", name="Download transcript").click()
    text = Path(download.value.path()).read_text()
    assert download.value.suggested_filename.endswith(".md")
    assert "# Chat transcript" in text
    assert "Remember the word pelican." in text
    assert "I answer from the files you attach" in text
    assert sid[:8] in text and sid not in text

    page.get_by_role("button", name="New session").click()
    dialog = page.get_by_role("alertdialog", name="Start a new session?")
    expect(dialog.get_by_test_id("reset-summary")).to_contain_text("2 messages")
    dialog.get_by_role("button", name="Erase and start new").click()
    expect(toast(page, "2 messages and 0 files erased")).to_be_visible(timeout=UI_TIMEOUT_MS)
    wait_for_session(page, not_equal=sid)
    expect(messages(page, "user")).to_have_count(0)
    expect(messages(page, "assistant")).to_have_count(0)
    page.reload()
    wait_for_session(page)
    expect(conversation(page)).to_contain_text("This is your private session.")
    expect(messages(page, "user")).to_have_count(0)
