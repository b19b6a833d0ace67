"""OpenAIAssistant against a real local server speaking the chat-completions protocol.

Every failure of the provider must reach the user as a clear AssistantError, and ChatService
must save the reply as `failed` (nothing arrived) or `incomplete` (the stream was cut).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Sequence

import pytest

from chat_app.container import build_services
from chat_app.services.assistant import AssistantError, HistoryTurn, build_assistant
from chat_app.services.assistant.openai_chat import HISTORY_TURNS, OpenAIAssistant
from chat_app.services.assistant.retrieval import RetrievalAssistant
from chat_app.services.audit import RequestContext
from chat_app.services.chat import Reply
from chat_app.services.retrieval import Passage
from chat_app.settings import Settings
from tests.aio import run_async
from tests.fake_openai import DEFAULT_REPLY, FakeOpenAI, tokenize

MODEL = "test-model-7"
PASSAGES = [
    Passage(
        file_id="f-1",
        filename="handbook.pdf",
        page=2,
        ordinal=4,
        text="Employees get 25 days of paid vacation per year.",
    ),
    Passage(
        file_id="f-2",
        filename="notes.md",
        page=None,
        ordinal=0,
        text="The office closes at 18:00 on Fridays.",
    ),
]
CTX = RequestContext(actor="api")


def assistant_for(fake: FakeOpenAI, **options: float) -> OpenAIAssistant:
    return OpenAIAssistant(base_url=fake.base_url, api_key="sk-test", model=MODEL, **options)


def ask(text: str) -> list[HistoryTurn]:
    return [HistoryTurn("user", text)]


def collect(
    assistant: OpenAIAssistant,
    history: Sequence[HistoryTurn],
    passages: Sequence[Passage] = (),
) -> tuple[list[str], AssistantError | None]:
    """The pieces streamed before the end, and the AssistantError that ended it, if any."""
    pieces: list[str] = []

    async def run() -> AssistantError | None:
        try:
            async for piece in assistant.stream_reply(history, passages):
                pieces.append(piece)
        except AssistantError as error:
            return error
        return None

    return pieces, run_async(run)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- streaming and the request -----------------------------------------------------------------


def test_ok_streams_pieces_that_join_to_the_reply(fake):
    fake.reply_text = "Twenty-five days.\n\nSee *handbook.pdf*, page 2."

    pieces, error = collect(assistant_for(fake), ask("How much vacation?"))

    assert error is None
    assert len(pieces) > 1
    assert pieces == tokenize(fake.reply_text)
    assert "".join(pieces) == fake.reply_text


def test_request_carries_model_stream_passages_and_history_in_order(fake):
    history = [
        HistoryTurn("user", "Hello"),
        HistoryTurn("assistant", "Hi, ask me about your files."),
        HistoryTurn("user", "How much vacation do I get?"),
    ]

    collect(assistant_for(fake), history, PASSAGES)

    [request] = fake.requests
    assert request["model"] == MODEL
    assert request["stream"] is True
    system, *turns = request["messages"]
    assert system["role"] == "system"
    assert (
        "[handbook.pdf, page 2]\nEmployees get 25 days of paid vacation per year."
        in (system["content"])
    )
    assert "[notes.md]\nThe office closes at 18:00 on Fridays." in system["content"]
    assert system["content"].index("handbook.pdf") < system["content"].index("notes.md")
    assert turns == [{"role": t.role, "content": t.content} for t in history]


def test_without_passages_the_system_prompt_names_no_file(fake):
    collect(assistant_for(fake), ask("Hi"))

    system = fake.requests[0]["messages"][0]
    assert system["role"] == "system"
    assert "Passages from the user's files" not in system["content"]
    assert fake.requests[0]["messages"][1:] == [{"role": "user", "content": "Hi"}]


def test_only_the_latest_turns_are_sent(fake):
    history = [HistoryTurn("user" if i % 2 == 0 else "assistant", f"turn {i}") for i in range(25)]

    collect(assistant_for(fake), history)

    sent = fake.requests[0]["messages"][1:]
    assert [m["content"] for m in sent] == [f"turn {i}" for i in range(25 - HISTORY_TURNS, 25)]


# --- failures become clear AssistantErrors ------------------------------------------------------


def test_401_names_the_status_and_the_key_variable(fake):
    pieces, error = collect(assistant_for(fake), ask("hi [fake:401]"))

    assert pieces == []
    assert error is not None
    assert "401" in error.detail and "OPENAI_API_KEY" in error.detail


def test_429_names_the_status_and_asks_to_wait(fake):
    pieces, error = collect(assistant_for(fake), ask("hi [fake:429]"))

    assert pieces == []
    assert error is not None
    assert "429" in error.detail and "wait" in error.detail.lower()


def test_500_names_the_status(fake):
    pieces, error = collect(assistant_for(fake), ask("hi [fake:500]"))

    assert pieces == []
    assert error is not None
    assert "500" in error.detail
    assert "could not read" not in error.detail


def test_hang_times_out_with_a_clear_message(fake):
    start = time.monotonic()
    pieces, error = collect(assistant_for(fake, read_timeout_s=1), ask("hi [fake:hang]"))
    elapsed = time.monotonic() - start

    assert pieces == []
    assert error is not None
    assert "did not answer within 1 s" in error.detail
    assert 0.9 < elapsed < 3, elapsed


def test_silence_mid_stream_keeps_what_arrived(fake):
    fake.reply_text = "one two three"
    fake.token_delay_s = 2.5

    pieces, error = collect(assistant_for(fake, read_timeout_s=1), ask("hi"))

    assert pieces == ["one "]
    assert error is not None
    assert "1 s" in error.detail and "kept" in error.detail


def test_cut_stream_says_the_connection_dropped_after_the_first_pieces(fake):
    pieces, error = collect(assistant_for(fake), ask("hi [fake:cut]"))

    assert pieces == tokenize(DEFAULT_REPLY)[:3]
    assert error is not None
    assert "connection" in error.detail and "dropped" in error.detail


def test_unreachable_server(fake):
    assistant = OpenAIAssistant(
        base_url=f"http://127.0.0.1:{free_port()}/v1",
        api_key="k",
        model=MODEL,
        connect_timeout_s=2,
    )

    start = time.monotonic()
    pieces, error = collect(assistant, ask("hi"))

    assert pieces == []
    assert error is not None
    assert "could not be reached" in error.detail
    assert time.monotonic() - start < 3


def test_one_assistant_serves_replies_on_successive_event_loops(fake):
    # The app keeps one assistant; a reply may run on a different loop than the last one.
    assistant = assistant_for(fake)

    first, first_error = collect(assistant, ask("hi"))
    second, second_error = collect(assistant, ask("again"))
    _, refused = collect(assistant, ask("and [fake:401]"))

    assert (first_error, second_error) == (None, None)
    assert "".join(first) == "".join(second) == DEFAULT_REPLY
    assert refused is not None and "401" in refused.detail


def _handler_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if "process_request_thread" in t.name}


def test_stopping_early_closes_the_connection(fake):
    """The consumer's aclose() hangs up at once: the provider stops generating."""
    fake.token_delay_s = 0.2
    fake.reply_text = " ".join(["word"] * 100)  # 20 s if nobody hangs up
    before = _handler_threads()

    async def stop_after_two() -> list[str]:
        stream = OpenAIAssistant(base_url=fake.base_url, api_key="k", model=MODEL).stream_reply(
            ask("hi"), []
        )
        pieces = [await anext(stream), await anext(stream)]
        await stream.aclose()
        # The loop keeps running: no help from asyncio.run's clean-up of generators.
        deadline = time.monotonic() + 2
        while _handler_threads() - before and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return pieces

    assert run_async(stop_after_two) == ["word ", "word "]
    assert not (_handler_threads() - before), "the server is still streaming to nobody"


# --- choosing the backend ------------------------------------------------------------------------


def settings_with(tmp_path, monkeypatch, **env: str) -> Settings:
    for name in (
        "CHAT_APP_ASSISTANT",
        "OPENAI_BASE_URL",
        "OPENAI_API_KEY",
        "CHAT_APP_OPENAI_MODEL",
    ):
        monkeypatch.delenv(name, raising=False)
    return Settings(CHAT_APP_DATA_DIR=str(tmp_path), CHAT_APP_SECRET_KEY="k", **env)


def test_auto_without_openai_settings_is_retrieval(tmp_path, monkeypatch):
    assistant = build_assistant(settings_with(tmp_path, monkeypatch))

    assert isinstance(assistant, RetrievalAssistant)


@pytest.mark.parametrize("variable", ["OPENAI_BASE_URL", "OPENAI_API_KEY"])
def test_auto_with_openai_settings_is_openai(tmp_path, monkeypatch, variable):
    value = "http://127.0.0.1:1/v1" if variable == "OPENAI_BASE_URL" else "sk-x"
    assistant = build_assistant(settings_with(tmp_path, monkeypatch, **{variable: value}))

    assert isinstance(assistant, OpenAIAssistant)
    assert assistant.name == "openai"


def test_explicit_retrieval_wins_over_openai_settings(tmp_path, monkeypatch):
    settings = settings_with(
        tmp_path,
        monkeypatch,
        CHAT_APP_ASSISTANT="retrieval",
        OPENAI_BASE_URL="http://127.0.0.1:1/v1",
        OPENAI_API_KEY="sk-x",
    )

    assert isinstance(build_assistant(settings), RetrievalAssistant)


def test_explicit_openai_without_settings_is_openai(tmp_path, monkeypatch):
    settings = settings_with(tmp_path, monkeypatch, CHAT_APP_ASSISTANT="openai")

    assert isinstance(build_assistant(settings), OpenAIAssistant)


def test_built_assistant_uses_the_configured_url_key_and_model(tmp_path, monkeypatch):
    with FakeOpenAI(require_key="sk-right") as keyed:
        settings = settings_with(
            tmp_path,
            monkeypatch,
            OPENAI_BASE_URL=keyed.base_url,
            OPENAI_API_KEY="sk-right",
            CHAT_APP_OPENAI_MODEL="my-model",
        )
        wrong = settings_with(
            tmp_path, monkeypatch, OPENAI_BASE_URL=keyed.base_url, OPENAI_API_KEY="sk-wrong"
        )

        pieces, error = collect(build_assistant(settings), ask("hi"))  # type: ignore[arg-type]
        _, refused = collect(build_assistant(wrong), ask("hi"))  # type: ignore[arg-type]

    assert error is None and "".join(pieces) == DEFAULT_REPLY
    assert [r["model"] for r in keyed.requests] == ["my-model", "gpt-4o-mini"]
    assert refused is not None and "401" in refused.detail


# --- through ChatService: what is saved ----------------------------------------------------------


def run_turn(services, session_id: str, text: str) -> Reply:
    turn = services.chat.begin_turn(session_id, text, CTX)
    reply = services.chat.reply(turn)

    async def consume() -> None:
        async for _ in reply.tokens():
            pass

    run_async(consume)
    return reply


@pytest.fixture
def chat_services(make_settings, fake):
    return build_services(make_settings(), assistant=assistant_for(fake))


def test_401_saves_a_failed_reply_with_the_message_and_keeps_the_question(chat_services):
    session = chat_services.sessions.create(CTX, reason="api")

    reply = run_turn(chat_services, session.uuid, "What is new? [fake:401]")

    assert reply.status == "failed"
    assert reply.error is not None and "401" in reply.error.detail
    saved = chat_services.chat.messages_of(session.id)
    assert [(m.role, m.status, m.content) for m in saved] == [
        ("user", "complete", "What is new? [fake:401]"),
        ("assistant", "failed", reply.error.detail),
    ]
    assert reply.message == saved[1]
    assert "OPENAI_API_KEY" in saved[1].content


def test_cut_saves_an_incomplete_reply_with_the_partial_text(chat_services):
    session = chat_services.sessions.create(CTX, reason="api")

    reply = run_turn(chat_services, session.uuid, "Tell me [fake:cut]")

    partial = "".join(tokenize(DEFAULT_REPLY)[:3])
    assert reply.status == "incomplete"
    assert reply.error is not None and "dropped" in reply.error.detail
    saved = chat_services.chat.messages_of(session.id)
    assert [(m.role, m.status, m.content) for m in saved] == [
        ("user", "complete", "Tell me [fake:cut]"),
        ("assistant", "incomplete", partial),
    ]


def test_ok_saves_a_complete_reply_and_failed_replies_stay_out_of_the_history(chat_services, fake):
    session = chat_services.sessions.create(CTX, reason="api")

    failed = run_turn(chat_services, session.uuid, "first [fake:429]")
    reply = run_turn(chat_services, session.uuid, "second")

    assert failed.status == "failed"
    assert reply.status == "complete" and reply.message is not None
    assert reply.message.content == DEFAULT_REPLY
    assert [m["content"] for m in fake.requests[-1]["messages"][1:]] == [
        "first [fake:429]",
        "second",
    ]
    saved = chat_services.chat.messages_of(session.id)
    assert [(m.role, m.status) for m in saved] == [
        ("user", "complete"),
        ("assistant", "failed"),
        ("user", "complete"),
        ("assistant", "complete"),
    ]
