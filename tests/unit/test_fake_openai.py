"""The fake OpenAI server speaks the protocol the real `openai` SDK understands."""

from __future__ import annotations

import itertools
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import openai
import pytest

from tests.aio import run_async
from tests.fake_openai import SLOW_MIN_DELAY_S, FakeOpenAI, tokenize

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def client(fake: FakeOpenAI) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=fake.base_url, api_key="k", max_retries=0, timeout=5) as c:
        yield c


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_streaming_reassembles_reply_text_in_openai_chunk_shape(
    fake: FakeOpenAI, client: openai.OpenAI
) -> None:
    chunks = list(client.chat.completions.create(model="gpt-x", messages=user("hi"), stream=True))

    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == fake.reply_text
    assert len(chunks) == len(tokenize(fake.reply_text)) + 1
    assert all(c.object == "chat.completion.chunk" and c.model == "gpt-x" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in chunks[1:])
    assert [c.choices[0].finish_reason for c in chunks[-2:]] == [None, "stop"]
    assert chunks[-1].choices[0].delta.content is None


def test_tokens_keep_their_whitespace() -> None:
    for text in ["Hello  world. ", "  lead", "one", "", "   ", "a\nb\tc"]:
        assert "".join(tokenize(text)) == text
    assert tokenize("Hello from the fake") == ["Hello ", "from ", "the ", "fake"]


def test_chunks_arrive_incrementally(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.reply_text = "one two three four five"
    fake.token_delay_s = 0.2
    start = time.monotonic()
    arrivals = []
    for _ in client.chat.completions.create(model="m", messages=user("hi"), stream=True):
        arrivals.append(time.monotonic() - start)

    assert len(arrivals) == 6
    assert arrivals[0] < 0.15, arrivals
    assert arrivals[-1] - arrivals[0] > 0.8, arrivals
    assert all(b - a > 0.1 for a, b in itertools.pairwise(arrivals)), arrivals


def test_non_streaming_returns_a_chat_completion(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="gpt-x", messages=user("hi there"))

    assert completion.object == "chat.completion"
    assert completion.model == "gpt-x"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == fake.reply_text
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.prompt_tokens == 2


def test_stream_options_include_usage(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="m", messages=user("hi"), stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(tokenize(fake.reply_text))
    assert "".join(c.choices[0].delta.content or "" for c in chunks[:-1]) == fake.reply_text


def test_models_list(client: openai.OpenAI) -> None:
    models = client.models.list().data
    assert [(m.id, m.object, m.owned_by) for m in models] == [("fake-model", "model", "fake")]


@pytest.mark.parametrize(
    ("mode", "error", "code"),
    [
        ("401", openai.AuthenticationError, "invalid_api_key"),
        ("429", openai.RateLimitError, "rate_limit_exceeded"),
        ("500", openai.InternalServerError, None),
    ],
)
@pytest.mark.parametrize("stream", [True, False])
def test_error_modes(
    fake: FakeOpenAI,
    client: openai.OpenAI,
    mode: str,
    error: type[openai.APIStatusError],
    code: str | None,
    stream: bool,
) -> None:
    fake.mode = mode
    with pytest.raises(error) as caught:
        client.chat.completions.create(model="m", messages=user("hi"), stream=stream)

    assert type(caught.value) is error
    assert caught.value.status_code == int(mode)
    assert caught.value.code == code
    if mode == "429":
        assert caught.value.response.headers["retry-after"] == "1"
        assert caught.value.message == "Error code: 429 - Rate limit reached"


def test_hang_times_out_and_stop_does_not_wait_for_it(fake: FakeOpenAI) -> None:
    fake.mode = "hang"
    start = time.monotonic()
    with (
        openai.OpenAI(base_url=fake.base_url, api_key="k", max_retries=0, timeout=1) as c,
        pytest.raises(openai.APITimeoutError),
    ):
        c.chat.completions.create(model="m", messages=user("hi"), stream=True)
    assert 0.9 < time.monotonic() - start < 3

    # A client still waiting on a hung request does not hold up stop(), and is let go.
    body = json.dumps({"model": "m", "messages": user("x [fake:hang]")}).encode()
    with socket.create_connection(("127.0.0.1", fake.port), timeout=5) as raw:
        raw.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        deadline = time.monotonic() + 2
        while len(fake.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        start = time.monotonic()
        fake.stop()
        assert time.monotonic() - start < 1
        assert raw.recv(1024) == b""  # closed without any response


def test_cut_raises_api_connection_error_after_some_content(
    fake: FakeOpenAI, client: openai.OpenAI
) -> None:
    fake.mode = "cut"
    received: list[str] = []
    with pytest.raises(openai.APIConnectionError) as caught:
        for chunk in client.chat.completions.create(model="m", messages=user("hi"), stream=True):
            received.append(chunk.choices[0].delta.content or "")

    assert received == tokenize(fake.reply_text)[:3]
    # Exactly APIConnectionError (not its APITimeoutError subclass), wrapping the transport error.
    assert type(caught.value) is openai.APIConnectionError
    assert type(caught.value.__cause__) is httpx2.RemoteProtocolError
    assert "incomplete chunked read" in str(caught.value.__cause__)


def test_cut_without_streaming_is_a_connection_error(
    fake: FakeOpenAI, client: openai.OpenAI
) -> None:
    fake.mode = "cut"
    with pytest.raises(openai.APIConnectionError) as caught:
        client.chat.completions.create(model="m", messages=user("hi"))
    assert type(caught.value) is openai.APIConnectionError


def test_async_client_streams_and_sees_the_cut(fake: FakeOpenAI) -> None:
    async def scenario() -> tuple[str, list[str], BaseException]:
        async with openai.AsyncOpenAI(
            base_url=fake.base_url, api_key="k", max_retries=0, timeout=5
        ) as c:
            stream = await c.chat.completions.create(model="m", messages=user("hi"), stream=True)
            text = "".join([ch.choices[0].delta.content or "" async for ch in stream])

            received: list[str] = []
            stream = await c.chat.completions.create(
                model="m", messages=user("go [fake:cut]"), stream=True
            )
            try:
                async for ch in stream:
                    received.append(ch.choices[0].delta.content or "")
            except Exception as exc:  # asserted below
                return text, received, exc
            raise AssertionError("the cut stream ended cleanly")

    text, received, exc = run_async(scenario)
    assert text == fake.reply_text
    assert received == tokenize(fake.reply_text)[:3]
    assert type(exc) is openai.APIConnectionError
    assert type(exc.__cause__) is httpx2.RemoteProtocolError


def test_marker_in_last_message_overrides_mode(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="m", messages=user("hi [fake:429]"), stream=True)

    fake.mode = "401"
    ok = client.chat.completions.create(model="m", messages=user("[fake:ok] hi"))
    assert ok.choices[0].message.content == fake.reply_text

    # Only the last message counts, and content given as parts is searched too.
    fake.mode = "ok"
    history = [*user("[fake:500]"), {"role": "assistant", "content": "sure"}, *user("hi")]
    assert client.chat.completions.create(model="m", messages=history).choices
    parts = [{"role": "user", "content": [{"type": "text", "text": "hi [fake:401]"}]}]
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="m", messages=parts)  # type: ignore[arg-type]


def test_unknown_mode_is_rejected(fake: FakeOpenAI) -> None:
    with pytest.raises(ValueError, match="unknown mode"):
        fake.mode = "teapot"


def test_slow_mode_paces_a_long_reply_and_survives_the_client_leaving(
    fake: FakeOpenAI, client: openai.OpenAI
) -> None:
    assert len(tokenize(fake.slow_reply_text)) == 40
    stream = client.chat.completions.create(model="m", messages=user("[fake:slow]"), stream=True)
    start = time.monotonic()
    first, second = next(stream), next(stream)
    assert time.monotonic() - start >= SLOW_MIN_DELAY_S - 0.05
    assert (first.choices[0].delta.content or "") + (second.choices[0].delta.content or "") == (
        "".join(tokenize(fake.slow_reply_text)[:2])
    )
    stream.close()  # like pressing Stop

    # The server carries on serving.
    assert client.chat.completions.create(model="m", messages=user("hi")).choices


def test_requests_are_recorded_in_order(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    client.chat.completions.create(model="a", messages=user("first"), stream=True).close()
    fake.mode = "401"
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="b", messages=user("second"))

    assert [(r["model"], r["messages"], r.get("stream", False)) for r in fake.requests] == [
        ("a", user("first"), True),
        ("b", user("second"), False),
    ]


def test_require_key() -> None:
    with FakeOpenAI(require_key="secret") as fake:
        for key, ok in [("wrong", False), ("secret", True)]:
            c = openai.OpenAI(base_url=fake.base_url, api_key=key, max_retries=0, timeout=5)
            with c:
                if ok:
                    assert c.models.list().data
                    assert c.chat.completions.create(model="m", messages=user("hi")).choices
                else:
                    with pytest.raises(openai.AuthenticationError):
                        c.chat.completions.create(model="m", messages=user("hi"), stream=True)
                    with pytest.raises(openai.AuthenticationError):
                        c.models.list()
        assert len(fake.requests) == 2


def test_runs_as_a_separate_process() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "tests.fake_openai", "--port", "0", "--mode", "429"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            word, port = proc.stdout.readline().split()
            assert word == "ready"
            base_url = f"http://127.0.0.1:{port}/v1"
            with openai.OpenAI(base_url=base_url, api_key="k", max_retries=0, timeout=5) as c:
                with pytest.raises(openai.RateLimitError):
                    c.chat.completions.create(model="m", messages=user("hi"), stream=True)
                stream = c.chat.completions.create(
                    model="m", messages=user("[fake:ok]"), stream=True
                )
                assert "".join(ch.choices[0].delta.content or "" for ch in stream)
        finally:
            proc.terminate()
        assert proc.wait(timeout=5) == 0  # SIGTERM is a clean shutdown
