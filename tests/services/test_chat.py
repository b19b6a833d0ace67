"""ChatService on SQLite and PostgreSQL: turns, replies and how they end, and the session's end.

Reply behaviour is driven by a scripted assistant (a fake of our own `Assistant` interface);
the retrieval paths use the real RetrievalAssistant over uploaded files.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import anyio
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from chat_app.container import Services, build_services
from chat_app.errors import AppError, MalformedSessionId, SessionNotFound
from chat_app.models import (
    MESSAGE_COMPLETE,
    MESSAGE_FAILED,
    MESSAGE_INCOMPLETE,
    ChatMessage,
    FileChunk,
    UserSession,
)
from chat_app.services.assistant import AssistantError, HistoryTurn
from chat_app.services.assistant.retrieval import NO_FILES, RetrievalAssistant
from chat_app.services.audit import RequestContext
from chat_app.services.chat import (
    HISTORY_MESSAGES,
    MAX_MESSAGE_CHARS,
    MessageRejected,
    MessageView,
    Reply,
    Turn,
)
from chat_app.services.files import FileView
from chat_app.services.retrieval import Passage
from chat_app.services.session_ids import new_session_id
from chat_app.services.sessions import SessionView
from chat_app.services.sweep import Sweeper
from chat_app.storage.base import ObjectStore
from tests.aio import run_async
from tests.services.conftest import CTX, audit_rows, fresh_database, new_session, upload_bytes

pytestmark = pytest.mark.parametrize("store", ["local"], indirect=True)

UNEXPECTED = "The assistant failed unexpectedly. Try again."
KETTLE = b"# Kitchen\n\nThe copper kettle lives in the second cupboard, next to the teapot.\n"
LANTERN = b"# Shed\n\nThe storm lantern lives in the shed, on the hook behind the door.\n"


class Scripted:
    """An assistant that plays a script: strings are yielded, exceptions raised, in order.

    `hang` makes it wait forever after the script (a slow provider); `calls` records what
    it was given and `closed` whether its stream was closed.
    """

    name = "scripted"

    def __init__(self, *script: str | BaseException, hang: bool = False) -> None:
        self.script = script
        self.hang = hang
        self.calls: list[tuple[list[HistoryTurn], list[Passage], list[str]]] = []
        self.closed = False

    async def stream_reply(
        self, history: Sequence[HistoryTurn], passages: Sequence[Passage], *,
        files: Sequence[str] = (),
    ) -> AsyncIterator[str]:
        self.calls.append((list(history), list(passages), list(files)))
        try:
            for step in self.script:
                await anyio.sleep(0)
                if isinstance(step, BaseException):
                    raise step
                yield step
            if self.hang:
                await anyio.Event().wait()
        finally:
            self.closed = True


class FailsOnCall:
    """A backend whose `stream_reply` raises before returning any iterator."""

    name = "fails-on-call"

    def stream_reply(self, history, passages, *, files=()):
        raise RuntimeError("backend misconfigured")


@pytest.fixture
def make_chat(make_settings, store: ObjectStore) -> Callable[..., Services]:
    """Services whose assistant is `assistant` (the retrieval one, unpaced, by default)."""

    def make(assistant: object | None = None, **env: object) -> Services:
        return build_services(make_settings(**env), store=store,
                              assistant=assistant or RetrievalAssistant(pace_s=0))

    return make


@pytest.fixture
def chat_services(make_chat) -> Services:
    return make_chat()


# --- helpers ---------------------------------------------------------------------------------


def run(services: Services, session_uuid: str, text: str, *, stop_after: int | None = None
        ) -> Reply:
    """One turn, its reply consumed to the end (or stopped after `stop_after` pieces)."""
    reply = services.chat.reply(services.chat.begin_turn(session_uuid, text, CTX))

    async def consume() -> None:
        count = 0
        async for _ in reply.tokens():
            count += 1
            if count == stop_after:
                reply.stop()

    run_async(consume)
    return reply


def stored_messages(engine: Engine, session_id: int) -> list[ChatMessage]:
    with Session(engine) as db:
        return list(db.exec(select(ChatMessage).where(ChatMessage.session_id == session_id)
                            .order_by(col(ChatMessage.id))).all())


def chunk_count(engine: Engine, file_ids: Sequence[str]) -> int:
    with Session(engine) as db:
        return db.exec(select(func.count()).select_from(FileChunk)
                       .where(col(FileChunk.file_id).in_(list(file_ids)))).one()


def upload_notes(services: Services, session: SessionView) -> list[FileView]:
    return [upload_bytes(services, session.uuid, "kettle.md", KETTLE),
            upload_bytes(services, session.uuid, "lantern.md", LANTERN)]


def cited_files(message: MessageView) -> list[str]:
    return [citation["filename"] for citation in message.citations]


def turn_with_passages(services: Services) -> tuple[SessionView, Turn]:
    session = new_session(services)
    upload_notes(services, session)
    turn = services.chat.begin_turn(session.uuid, "Where does the copper kettle live?", CTX)
    assert turn.passages, "the question should find the kettle note"
    return session, turn


def consume(reply: Reply) -> list[str]:
    async def main() -> list[str]:
        return [piece async for piece in reply.tokens()]

    return run_async(main)


# --- sending ---------------------------------------------------------------------------------


def test_the_users_message_is_saved_before_the_reply_runs(chat_services: Services) -> None:
    session = new_session(chat_services)
    turn = chat_services.chat.begin_turn(session.uuid, "  Where is the kettle?  ", CTX)
    history = chat_services.chat.history(session.uuid, CTX)
    assert [(m.id, m.role, m.content, m.status) for m in history] == [
        (turn.message.id, "user", "Where is the kettle?", MESSAGE_COMPLETE)]
    # The reply has not been asked for: nothing from the assistant yet.
    assert len(stored_messages(chat_services.engine, session.id)) == 1
    [sent] = audit_rows(chat_services.engine, session_id=session.id, event="message.sent")
    assert sent.details == {"chars": len("Where is the kettle?")}
    assert "kettle" not in json.dumps(sent.details)


def test_the_turn_carries_the_history_with_the_question_last(make_chat) -> None:
    assistant = Scripted("Fine.")
    services = make_chat(assistant)
    session = new_session(services)
    run(services, session.uuid, "first question")
    run(services, session.uuid, "second question")
    history, _, files = assistant.calls[-1]
    assert [(h.role, h.content) for h in history] == [
        ("user", "first question"), ("assistant", "Fine."), ("user", "second question")]
    assert files == []


def test_failed_replies_are_left_out_of_the_history_and_it_is_bounded(make_chat) -> None:
    assistant = Scripted(AssistantError("Provider down."))
    services = make_chat(assistant)
    session = new_session(services)
    run(services, session.uuid, "doomed question")
    assistant.script = ("ok",)
    for n in range(HISTORY_MESSAGES):
        run(services, session.uuid, f"question {n}")
    history, _, _ = assistant.calls[-1]
    assert len(history) == HISTORY_MESSAGES
    assert history[-1] == HistoryTurn("user", f"question {HISTORY_MESSAGES - 1}")
    assert all(turn.content != "Provider down." for turn in history)


@pytest.mark.parametrize(
    "content",
    ["", "   \n\t  ", "\x00\x07\u200b", "x" * (MAX_MESSAGE_CHARS + 1), None, 42, ["hi"], b"hi"],
    ids=["empty", "whitespace", "only-controls", "too-long", "none", "int", "list", "bytes"],
)
def test_bad_messages_are_rejected_and_nothing_is_saved(
    chat_services: Services, content: object
) -> None:
    session = new_session(chat_services)
    before = audit_rows(chat_services.engine, session_id=session.id)
    with pytest.raises(MessageRejected) as caught:
        chat_services.chat.begin_turn(session.uuid, content, CTX)
    assert caught.value.status == 422
    assert stored_messages(chat_services.engine, session.id) == []
    assert audit_rows(chat_services.engine, session_id=session.id) == before


def test_the_too_long_message_says_the_limit(chat_services: Services) -> None:
    session = new_session(chat_services)
    with pytest.raises(MessageRejected, match="8,000 characters; this one has 8,001"):
        chat_services.chat.begin_turn(session.uuid, "x" * (MAX_MESSAGE_CHARS + 1), CTX)


def test_exactly_max_message_chars_is_accepted(chat_services: Services) -> None:
    session = new_session(chat_services)
    # Dropped characters and trimmed ends do not count against the limit.
    text = "y" * MAX_MESSAGE_CHARS
    turn = chat_services.chat.begin_turn(session.uuid, f"  {text}\x00\n", CTX)
    assert turn.message.content == text
    [row] = stored_messages(chat_services.engine, session.id)
    assert row.content == text


def test_nul_and_other_control_characters_are_dropped(chat_services: Services) -> None:
    session = new_session(chat_services)
    raw = "tea\x00 at\x07 four\u200b\ufeff\u202e\ud800 o'clock\r\nkettle\ton\x1b"
    turn = chat_services.chat.begin_turn(session.uuid, raw, CTX)
    expected = "tea at four o'clock\nkettle\ton"
    assert turn.message.content == expected
    assert [row.content for row in stored_messages(chat_services.engine, session.id)] == [
        expected]


def _ended(services: Services, how: str) -> str:
    session = new_session(services)
    if how == "reset":
        services.sessions.reset(session.uuid, CTX)
    else:
        services.sessions.expire(session.uuid, RequestContext(actor="dev"), reason="dev")
    return session.uuid


@pytest.mark.parametrize("how", ["malformed", "unknown", "reset", "expired", "uppercase-unknown"])
def test_bad_session_ids_get_the_same_errors_as_resume(chat_services: Services, how: str) -> None:
    raw: object
    if how == "malformed":
        raw = "{" + new_session_id() + "}"
    elif how in ("unknown", "uppercase-unknown"):
        raw = new_session_id().upper() if how.startswith("uppercase") else new_session_id()
    else:
        raw = _ended(chat_services, how)
    with pytest.raises(AppError) as expected:
        chat_services.sessions.resume(raw, CTX)
    with pytest.raises(AppError) as caught:
        chat_services.chat.begin_turn(raw, "hello", CTX)
    assert type(caught.value) is type(expected.value)
    assert (caught.value.status, caught.value.detail) == (expected.value.status,
                                                          expected.value.detail)
    assert isinstance(caught.value, MalformedSessionId if how == "malformed" else SessionNotFound)
    for reader in (chat_services.chat.history, chat_services.chat.transcript):
        with pytest.raises(type(expected.value)):
            reader(raw, CTX)
    with Session(chat_services.engine) as db:
        assert db.exec(select(func.count()).select_from(ChatMessage).join(
            UserSession, col(UserSession.id) == col(ChatMessage.session_id)
        ).where(UserSession.uuid == str(raw).lower())).one() == 0


# --- how a reply ends ------------------------------------------------------------------------


def test_a_complete_reply_is_saved_with_the_citations_of_its_passages(make_chat) -> None:
    assistant = Scripted("The kettle ", "is in the ", "second cupboard.")
    services = make_chat(assistant)
    session, turn = turn_with_passages(services)
    reply = services.chat.reply(turn)
    assert consume(reply) == ["The kettle ", "is in the ", "second cupboard."]
    assert (reply.status, reply.error) == (MESSAGE_COMPLETE, None)
    assert reply.message is not None
    assert (reply.message.content, reply.message.status) == (
        "The kettle is in the second cupboard.", MESSAGE_COMPLETE)
    assert reply.message.citations == [p.citation() for p in turn.passages]
    assert cited_files(reply.message)[0] == "kettle.md"
    # The assistant got the passages and the names of the session's files.
    _, passages, files = assistant.calls[0]
    assert passages == turn.passages and files == ["kettle.md", "lantern.md"]
    assert assistant.closed
    rows = stored_messages(services.engine, session.id)
    assert [(r.role, r.status) for r in rows] == [("user", "complete"), ("assistant", "complete")]
    assert rows[1].citations == reply.message.citations


def test_stop_after_two_pieces_saves_the_partial_text_as_incomplete(make_chat) -> None:
    assistant = Scripted("one ", "two ", "three ", "four")
    services = make_chat(assistant)
    session = new_session(services)
    reply = run(services, session.uuid, "count", stop_after=2)
    assert reply.stopped and reply.status == MESSAGE_INCOMPLETE and reply.error is None
    assert reply.message is not None
    assert (reply.message.content, reply.message.status) == ("one two ", MESSAGE_INCOMPLETE)
    assert assistant.closed  # the provider's stream is closed, not left running
    assert stored_messages(services.engine, session.id)[-1].content == "one two "


def test_an_assistant_error_before_any_piece_saves_the_error_as_failed(make_chat) -> None:
    services = make_chat(Scripted(AssistantError("The provider refused the API key (401).")))
    session, turn = turn_with_passages(services)
    reply = services.chat.reply(turn)
    assert consume(reply) == []
    assert reply.status == MESSAGE_FAILED
    assert reply.error is not None and reply.error.detail.endswith("(401).")
    assert reply.message is not None
    assert (reply.message.content, reply.message.status, reply.message.citations) == (
        "The provider refused the API key (401).", MESSAGE_FAILED, [])
    # The user's message is kept.
    assert [m.role for m in services.chat.history(session.uuid, CTX)] == ["user", "assistant"]


def test_an_assistant_error_after_some_pieces_keeps_them_as_incomplete(make_chat) -> None:
    services = make_chat(Scripted("The kettle ", "is ", AssistantError("Timed out.")))
    _, turn = turn_with_passages(services)
    reply = services.chat.reply(turn)
    assert consume(reply) == ["The kettle ", "is "]
    assert reply.status == MESSAGE_INCOMPLETE
    assert reply.error is not None and reply.error.detail == "Timed out."
    assert reply.message is not None
    assert (reply.message.content, reply.message.status) == ("The kettle is ", MESSAGE_INCOMPLETE)
    assert reply.message.citations == [p.citation() for p in turn.passages]


@pytest.mark.parametrize("assistant", [
    pytest.param(lambda: Scripted(RuntimeError("bug in the backend")), id="while-streaming"),
    pytest.param(FailsOnCall, id="on-call"),
])
def test_an_unexpected_exception_fails_the_reply_in_words(
    make_chat, assistant: Callable[[], object], caplog: pytest.LogCaptureFixture
) -> None:
    services = make_chat(assistant())
    session = new_session(services)
    reply = run(services, session.uuid, "hello")
    assert reply.status == MESSAGE_FAILED
    assert reply.error is not None and reply.error.detail == UNEXPECTED
    assert reply.message is not None
    assert (reply.message.content, reply.message.status) == (UNEXPECTED, MESSAGE_FAILED)
    assert "failed" in caplog.text  # logged for us, not shown to the user


def test_an_unexpected_exception_after_pieces_keeps_them(make_chat) -> None:
    services = make_chat(Scripted("Half ", "a reply", ValueError("boom")))
    session = new_session(services)
    reply = run(services, session.uuid, "hello")
    assert reply.message is not None
    assert (reply.message.content, reply.message.status) == ("Half a reply", MESSAGE_INCOMPLETE)
    assert reply.error is not None and reply.error.detail == UNEXPECTED


def test_a_consumer_that_abandons_the_stream_saves_it_incomplete(make_chat) -> None:
    assistant = Scripted("one ", "two ", "three ", "four")
    services = make_chat(assistant)
    session = new_session(services)
    reply = services.chat.reply(services.chat.begin_turn(session.uuid, "count", CTX))

    async def abandon() -> None:
        tokens = reply.tokens()
        assert [await anext(tokens), await anext(tokens)] == ["one ", "two "]
        await tokens.aclose()  # the browser went away

    run_async(abandon)
    assert reply.message is not None
    assert (reply.message.content, reply.message.status) == ("one two ", MESSAGE_INCOMPLETE)
    assert assistant.closed
    assert stored_messages(services.engine, session.id)[-1].status == MESSAGE_INCOMPLETE


def test_cancelling_while_the_provider_is_slow_saves_what_arrived(make_chat) -> None:
    assistant = Scripted("Thinking ", hang=True)
    services = make_chat(assistant)
    session = new_session(services)
    reply = services.chat.reply(services.chat.begin_turn(session.uuid, "hello", CTX))

    async def stop_while_waiting() -> None:
        tokens = reply.tokens()
        assert await anext(tokens) == "Thinking "
        waiting = asyncio.ensure_future(anext(tokens))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        waiting.cancel()  # what the UI's Stop does when no piece is coming
        with pytest.raises(asyncio.CancelledError):
            await waiting

    run_async(stop_while_waiting)
    assert reply.message is not None
    assert (reply.message.content, reply.message.status) == ("Thinking ", MESSAGE_INCOMPLETE)
    assert assistant.closed


def test_a_reset_while_the_reply_streams_discards_the_reply(make_chat) -> None:
    services = make_chat(Scripted("one ", "two ", "three"))
    session = new_session(services)
    reply = services.chat.reply(services.chat.begin_turn(session.uuid, "count", CTX))
    reset_to: list[SessionView] = []

    async def reset_midway() -> None:
        async for piece in reply.tokens():
            if piece == "one ":
                reset_to.append(services.sessions.reset(session.uuid, CTX).session)

    run_async(reset_midway)
    assert reply.text == "one two three"  # the stream ran on ...
    assert reply.message is None  # ... but nothing is written into the ended session
    assert stored_messages(services.engine, session.id) == []
    assert services.chat.history(reset_to[0].uuid, CTX) == []
    assert stored_messages(services.engine, reset_to[0].id) == []


# --- the session's end erases messages and passages -------------------------------------------


def test_reset_erases_messages_and_passages_and_counts_them(chat_services: Services) -> None:
    session = new_session(chat_services)
    files = upload_notes(chat_services, session)
    file_ids = [f.id for f in files]
    assert chunk_count(chat_services.engine, file_ids) == 2
    run(chat_services, session.uuid, "Where does the kettle live?")
    run(chat_services, session.uuid, "And the lantern?")
    assert chat_services.sessions.contents(session.uuid, CTX).messages == 4
    result = chat_services.sessions.reset(session.uuid, CTX)
    assert (result.erased_messages, result.erased_files) == (4, 2)
    assert result.erased_bytes == len(KETTLE) + len(LANTERN)
    assert stored_messages(chat_services.engine, session.id) == []
    assert chunk_count(chat_services.engine, file_ids) == 0
    [audit] = audit_rows(chat_services.engine, session_id=session.id, event="session.reset")
    assert (audit.details["messages"], audit.details["files"]) == (4, 2)
    assert chat_services.chat.history(result.session.uuid, CTX) == []
    # The new session starts without files to quote.
    assert run(chat_services, result.session.uuid, "Where does the kettle live?").text == NO_FILES


def test_expiring_a_session_erases_messages_and_passages(chat_services: Services) -> None:
    session = new_session(chat_services)
    file_ids = [f.id for f in upload_notes(chat_services, session)]
    run(chat_services, session.uuid, "Where does the kettle live?")
    other = new_session(chat_services)
    run(chat_services, other.uuid, "untouched")
    cache = chat_services.chat.retriever._cache  # white-box: the index holds passage text
    assert session.id in cache
    chat_services.sessions.expire(session.uuid, RequestContext(actor="dev"), reason="dev")
    assert stored_messages(chat_services.engine, session.id) == []
    assert chunk_count(chat_services.engine, file_ids) == 0
    assert session.id not in cache and other.id in cache
    assert len(stored_messages(chat_services.engine, other.id)) == 2  # only that session's


def test_the_sweep_expiring_a_session_erases_messages_and_passages(
    make_settings, store: ObjectStore, database_url: str, tmp_path: Path
) -> None:
    # A database of its own: the sweep expires every due session it finds.
    kind = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    with fresh_database(kind, tmp_path) as url:
        services = build_services(make_settings(DATABASE_URL=url), store=store,
                                  assistant=RetrievalAssistant(pace_s=0))
        idle, fresh = new_session(services), new_session(services)
        file_ids = [f.id for f in upload_notes(services, idle)]
        run(services, idle.uuid, "Where does the kettle live?")
        run(services, fresh.uuid, "hello")
        with Session(services.engine) as db:
            db.execute(sa.update(UserSession).where(col(UserSession.id) == idle.id).values(
                last_seen_at=idle.last_seen_at - timedelta(days=30)))
            db.commit()
        report = Sweeper(files=services.files, sessions=services.sessions,
                         grace=timedelta(0)).run(RequestContext(actor="sweep"))
        assert report.expired_sessions == 1
        assert stored_messages(services.engine, idle.id) == []
        assert chunk_count(services.engine, file_ids) == 0
        assert len(stored_messages(services.engine, fresh.id)) == 2
        with pytest.raises(SessionNotFound):
            services.chat.begin_turn(idle.uuid, "still there?", CTX)


def test_a_deleted_file_loses_its_passages_and_is_no_longer_cited(
    chat_services: Services,
) -> None:
    session = new_session(chat_services)
    kettle, lantern = upload_notes(chat_services, session)
    question = "Where does the copper kettle live?"
    before = run(chat_services, session.uuid, question).message
    assert before is not None and cited_files(before)[0] == "kettle.md"
    chat_services.files.delete_file(session.uuid, kettle.id, CTX)
    assert chunk_count(chat_services.engine, [kettle.id]) == 0
    assert chunk_count(chat_services.engine, [lantern.id]) == 1
    after = run(chat_services, session.uuid, question).message
    assert after is not None
    assert "kettle.md" not in cited_files(after)
    assert "second cupboard" not in after.content and "kettle.md" not in after.content


# --- transcript and history -------------------------------------------------------------------


def test_the_transcript_has_messages_statuses_sources_and_files(make_chat) -> None:
    services = make_chat()
    session = new_session(services)
    upload_notes(services, session)
    upload_bytes(services, session.uuid, "handbook.pdf",
                 (Path(__file__).resolve().parents[1] / "data/corpus/handbook.pdf").read_bytes())
    answered = run(services, session.uuid, "Where does the copper kettle live?")
    paged = run(services, session.uuid, "Who is the current principal keeper?")
    services.chat.assistant = Scripted("Half ", "of it", "never shown")
    run(services, session.uuid, "Tell me everything", stop_after=2)
    services.chat.assistant = Scripted(AssistantError("The provider is down."))
    run(services, session.uuid, "Are you there?")
    document = services.chat.transcript(session.uuid, CTX)

    assert document.startswith("# Chat transcript\n")
    assert f"Session `{session.uuid[:8]}`" in document
    assert session.uuid not in document and session.uuid[8:] not in document
    for text in ["Where does the copper kettle live?", "Who is the current principal keeper?",
                 "Tell me everything", "Are you there?"]:
        assert f"\n{text}\n" in document
    assert answered.text.split("\n\n")[1] in document  # the quoted passage
    assert "Half of it" in document and "never shown" not in document
    assert "(stopped before the end)" in document
    assert "(failed)" in document and "The provider is down." in document
    assert "Sources: kettle.md" in document
    assert paged.message is not None and paged.message.citations[0]["page"] == 1
    assert "handbook.pdf, page 1" in document.split("Sources: ", 2)[2]
    files = document.split("## Files\n", 1)[1].split("## Conversation", 1)[0]
    assert [line.split(" (")[0] for line in files.strip().splitlines()] == [
        "- kettle.md", "- lantern.md", "- handbook.pdf"]
    assert f"({len(KETTLE):,} bytes)" in files
    # Headings follow the order of the conversation.
    authors = [line.split(" · ")[0] for line in document.splitlines()
               if line.startswith("### ")]
    assert authors == ["### You", "### Assistant"] * 4


def test_an_empty_session_has_an_empty_transcript(chat_services: Services) -> None:
    session = new_session(chat_services)
    document = chat_services.chat.transcript(session.uuid, CTX)
    assert "No files." in document and "No messages." in document
    assert session.uuid not in document


def test_file_names_in_the_transcript_are_escaped(chat_services: Services) -> None:
    session = new_session(chat_services)
    view = upload_bytes(chat_services, session.uuid, "*bold*_under_`code`.txt", b"text\n")
    document = chat_services.chat.transcript(session.uuid, CTX)
    assert view.filename in document.replace("\\", "") and view.filename not in document


def test_history_is_in_id_order_whatever_the_clock_says(chat_services: Services) -> None:
    session = new_session(chat_services)
    for n in range(3):
        run(chat_services, session.uuid, f"question {n}")
    rows = stored_messages(chat_services.engine, session.id)
    with Session(chat_services.engine) as db:  # the first message claims to be the newest
        db.execute(sa.update(ChatMessage).where(col(ChatMessage.id) == rows[0].id).values(
            created_at=rows[-1].created_at + timedelta(hours=1)))
        db.commit()
    history = chat_services.chat.history(session.uuid, CTX)
    assert [m.id for m in history] == sorted(m.id for m in history) == [r.id for r in rows]
    assert [m.content for m in history][::2] == ["question 0", "question 1", "question 2"]
    assert [m.role for m in history] == ["user", "assistant"] * 3


# --- concurrency -----------------------------------------------------------------------------


def test_messages_racing_a_reset_never_land_in_the_ended_session(chat_services: Services) -> None:
    session = new_session(chat_services)
    start = threading.Barrier(9)

    def send(n: int) -> str:
        start.wait()
        try:
            chat_services.chat.begin_turn(session.uuid, f"message {n}", CTX)
            return "saved"
        except SessionNotFound:
            return "refused"

    def reset() -> str:
        start.wait()
        return chat_services.sessions.reset(session.uuid, CTX).session.uuid

    with ThreadPoolExecutor(max_workers=9) as pool:
        sends = [pool.submit(send, n) for n in range(8)]
        successor = pool.submit(reset).result()
        outcomes = [future.result() for future in sends]
    assert set(outcomes) <= {"saved", "refused"}
    # Saved before the reset: erased by it; after it: refused. Nothing survives in between.
    assert stored_messages(chat_services.engine, session.id) == []
    assert chat_services.chat.history(successor, CTX) == []


def test_concurrent_searches_rank_like_one_search(chat_services: Services) -> None:
    session = new_session(chat_services)
    corpus = Path(__file__).resolve().parents[1] / "data" / "corpus"
    for name in ("handbook.pdf", "sourdough_bread.txt", "travel_expense_policy.md"):
        upload_bytes(chat_services, session.uuid, name, (corpus / name).read_bytes())
    questions = ["When do keepers have to switch on the fog horn?",
                 "How many grams of salt go into the dough?",
                 "What rate is paid per mile when I drive my own car?",
                 "Which extinguishers are kept in the lamp room?"] * 6
    retriever = chat_services.chat.retriever

    def rank(question: str) -> list[tuple[str, int]]:
        return [(p.filename, p.ordinal) for p in retriever.search(session.id, question).passages]

    alone = [rank(question) for question in questions]
    with ThreadPoolExecutor(max_workers=8) as pool:
        together = list(pool.map(rank, questions))
    assert together == alone
    assert all(ranking for ranking in alone)
