"""Streaming, Stop and provider errors in a real browser, with the OpenAI-compatible assistant.

The provider is tests/fake_openai.py: a local server speaking the chat-completions streaming
protocol (we cannot reach a real provider here); `[fake:<mode>]` in a message picks its
behaviour, e.g. a slow stream that leaves time to press Stop.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.pages import UI_TIMEOUT_MS, open_app, toast, wait_for_session
from tests.e2e.server import ServedApp, start_app
from tests.fake_openai import FakeOpenAI

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture(scope="module")
def openai_app(tmp_path_factory, provider: FakeOpenAI) -> Iterator[ServedApp]:
    app = start_app(
        tmp_path_factory.mktemp("openai-app"),
        CHAT_APP_ASSISTANT="openai",
        OPENAI_BASE_URL=provider.base_url,
        OPENAI_API_KEY="test-key",
        CHAT_APP_OPENAI_MODEL="fake-model",
    )
    yield app
    app.stop()


def composer(page: Page):
    return page.get_by_role("textbox", name="Message")


def articles(page: Page, role: str):
    return page.get_by_role("log", name="Conversation").locator(f"article[data-role={role}]")


def send(page: Page, text: str) -> None:
    composer(page).fill(text)
    composer(page).press("Enter")


def test_reply_streams_and_stop_keeps_what_was_written(page: Page, openai_app) -> None:
    open_app(page, openai_app.url)
    send(page, "Tell me a long story [fake:slow]")
    # The user's message is saved and shown before the reply starts.
    expect(articles(page, "user")).to_have_count(1, timeout=UI_TIMEOUT_MS)
    streaming = page.locator("article[data-status=streaming] .message-body")
    expect(streaming).not_to_be_empty(timeout=UI_TIMEOUT_MS)
    first = streaming.inner_text()
    page.wait_for_function(
        "(n) => { const e = document.querySelector('article[data-status=streaming] "
        ".message-body'); return e && e.innerText.length > n; }",
        arg=len(first), timeout=UI_TIMEOUT_MS,
    )  # it grows piece by piece: a stream, not one final paint

    page.get_by_role("button", name="Stop").click()
    expect(toast(page, "Reply stopped")).to_be_visible(timeout=UI_TIMEOUT_MS)
    stopped = articles(page, "assistant").first
    expect(stopped).to_have_attribute("data-status", "incomplete", timeout=UI_TIMEOUT_MS)
    expect(stopped).to_contain_text("Stopped")
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    kept = stopped.locator(".message-body").inner_text()
    assert 0 < len(kept) < 200  # the slow reply runs to ~40 words; it was cut short

    page.reload()
    wait_for_session(page)
    expect(articles(page, "user")).to_have_count(1, timeout=UI_TIMEOUT_MS)
    expect(articles(page, "user").first).to_contain_text("Tell me a long story")
    reloaded = articles(page, "assistant").first
    expect(reloaded).to_have_attribute("data-status", "incomplete")
    expect(reloaded).to_contain_text("Stopped")
    expect(reloaded.locator(".message-body")).to_have_text(kept.strip())


def test_a_provider_error_is_a_toast_and_keeps_the_users_message(
    page: Page, openai_app
) -> None:
    open_app(page, openai_app.url)
    send(page, "Are you there? [fake:429]")
    expect(toast(page, "rate limiting us (429)")).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(articles(page, "user").first).to_contain_text("Are you there?")
    failed = articles(page, "assistant").first
    expect(failed).to_have_attribute("data-status", "failed", timeout=UI_TIMEOUT_MS)
    expect(failed).to_contain_text("Failed")

    send(page, "And now? [fake:cut]")
    expect(toast(page, "dropped before the reply was complete")).to_be_visible(
        timeout=UI_TIMEOUT_MS
    )
    expect(articles(page, "assistant").nth(1)).to_have_attribute(
        "data-status", "incomplete", timeout=UI_TIMEOUT_MS
    )


def test_the_provider_receives_history_and_the_reply_is_rendered(
    page: Page, openai_app, provider: FakeOpenAI
) -> None:
    open_app(page, openai_app.url)
    before = len(provider.requests)
    send(page, "Say hello")
    expect(articles(page, "assistant").first).to_have_attribute(
        "data-status", "complete", timeout=UI_TIMEOUT_MS
    )
    expect(articles(page, "assistant").first).to_contain_text(provider.reply_text)
    body = provider.requests[before]
    assert body["stream"] is True and body["model"] == "fake-model"
    assert body["messages"][-1] == {"role": "user", "content": "Say hello"}
