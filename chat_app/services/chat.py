"""The conversation: send (user message saved at once), streamed replies, history, transcript.

A turn is two transactions: `begin_turn` saves the user's message with its audit row before any
assistant work starts (so an assistant failure never loses it), and the reply is saved when its
stream ends: `complete`, `incomplete` (stopped or cut) or `failed`.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import anyio
import anyio.to_thread
import sqlalchemy as sa
from sqlalchemy import Row
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, func, select

from chat_app.db import unit_of_work
from chat_app.errors import DatabaseUnavailable, InvalidInput, SessionNotFound
from chat_app.models import (
    MESSAGE_ASSISTANT,
    MESSAGE_COMPLETE,
    MESSAGE_FAILED,
    MESSAGE_INCOMPLETE,
    MESSAGE_USER,
    SESSION_ACTIVE,
    ChatMessage,
    FileChunk,
    SessionFile,
    UserSession,
    utcnow,
)
from chat_app.services.assistant import Assistant, AssistantError, HistoryTurn
from chat_app.services.audit import AuditWriter, RequestContext
from chat_app.services.files import FileService
from chat_app.services.retrieval import Passage, Retriever
from chat_app.services.sessions import SessionContents, SessionService, SessionView
from chat_app.services.transcript import render_transcript

log = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 8_000
#: Earlier messages handed to the assistant with the question.
HISTORY_MESSAGES = 20
#: Passages retrieved per question.
TOP_PASSAGES = 3
# Control and format characters other than line breaks and tabs: invisible, and NUL cannot
# even be stored in PostgreSQL text.
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs"})


class MessageRejected(InvalidInput):
    type_slug = "invalid-message"


@dataclass(frozen=True)
class MessageView:
    """What callers may know about a message."""

    id: int
    role: str
    content: str
    status: str
    created_at: datetime
    citations: list[dict[str, Any]]


@dataclass(frozen=True)
class Turn:
    """A saved user message and everything its reply needs."""

    session: SessionView
    message: MessageView
    history: list[HistoryTurn]
    passages: list[Passage]
    files: list[str]
    ctx: RequestContext


@dataclass
class Reply:
    """The assistant's reply to one turn: iterate `tokens()`; it is saved when they end."""

    chat: ChatService
    turn: Turn
    status: str = MESSAGE_INCOMPLETE
    error: AssistantError | None = None
    message: MessageView | None = None
    _parts: list[str] = field(default_factory=list)
    _stopped: bool = False

    @property
    def text(self) -> str:
        """Everything streamed so far."""
        return "".join(self._parts)

    @property
    def stopped(self) -> bool:
        """Stop was asked for."""
        return self._stopped

    def stop(self) -> None:
        """End the reply after the current piece; it is saved as `incomplete`."""
        self._stopped = True

    async def tokens(self) -> AsyncIterator[str]:
        """The reply's pieces as the assistant produces them."""
        stream: AsyncIterator[str] | None = None
        try:
            # Inside the try: a backend that fails on the call itself still ends the turn.
            stream = self.chat.assistant.stream_reply(
                self.turn.history, self.turn.passages, files=self.turn.files
            )
            async for piece in stream:
                self._parts.append(piece)
                yield piece
                if self._stopped:
                    break
            else:
                self.status = MESSAGE_COMPLETE
        except AssistantError as error:
            self.error = error
            self.status = MESSAGE_INCOMPLETE if self._parts else MESSAGE_FAILED
        except Exception:
            # A defect in a backend must still end the turn in words, not a hung bubble.
            log.exception("assistant %s failed", self.chat.assistant.name)
            self.error = AssistantError("The assistant failed unexpectedly. Try again.")
            self.status = MESSAGE_INCOMPLETE if self._parts else MESSAGE_FAILED
        finally:
            if stream is not None:
                await _close(stream)
            # Shielded: a cancelled stream (client gone) is still saved as what it got to be.
            with anyio.CancelScope(shield=True):
                self.message = await anyio.to_thread.run_sync(self._save)

    def _save(self) -> MessageView | None:
        content = self.text
        if self.status == MESSAGE_FAILED and self.error is not None:
            content = self.error.detail  # what the user sees in place of the reply, on reload too
        # One citation per source: two passages of one page are one "Sources" entry.
        citations = list({
            (c["file_id"], c["page"]): c for c in (p.citation() for p in self.turn.passages)
        }.values()) if self.text else []
        return self.chat.save_reply(self.turn, content, self.status, citations)


async def _close(stream: AsyncIterator[str]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        with anyio.CancelScope(shield=True):
            await aclose()


def clean_message(raw: object) -> str:
    """The text to store: controls dropped, ends trimmed; 422 when empty or too long."""
    if not isinstance(raw, str):
        raise MessageRejected("A message must be text.")
    if len(raw) > 2 * MAX_MESSAGE_CHARS:
        raise _too_long(len(raw))  # far over the limit: not worth cleaning character by character
    text = "".join(
        ch for ch in raw
        if ch in "\n\t" or unicodedata.category(ch) not in _DROPPED_CATEGORIES
    ).strip()
    if not text:
        raise MessageRejected("Type a message before sending.")
    if len(text) > MAX_MESSAGE_CHARS:
        raise _too_long(len(text))
    return text


def _too_long(length: int) -> MessageRejected:
    return MessageRejected(
        f"A message can be at most {MAX_MESSAGE_CHARS:,} characters; this one has "
        f"{length:,}. Shorten it or split it into several messages."
    )


#: A MessageView's fields, in order, as columns.
_VIEW_COLUMNS = (
    col(ChatMessage.id), col(ChatMessage.role), col(ChatMessage.content),
    col(ChatMessage.status), col(ChatMessage.created_at), col(ChatMessage.citations),
)


def to_view(row: ChatMessage) -> MessageView:
    """The public view of a message row."""
    assert row.id is not None
    return MessageView(row.id, row.role, row.content, row.status, row.created_at,
                       list(row.citations or []))


class ChatService:
    """Messages of active sessions; also a contents handler (resets and expiry erase them)."""

    def __init__(
        self,
        engine: Engine,
        *,
        sessions: SessionService,
        files: FileService,
        audit: AuditWriter,
        retriever: Retriever,
        assistant: Assistant,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.sessions = sessions
        self.files = files
        self.audit = audit
        self.retriever = retriever
        self.assistant = assistant

    # --- use cases -----------------------------------------------------------------------------

    def history(self, raw_session_id: object, ctx: RequestContext) -> list[MessageView]:
        """Every message of an active session, oldest first."""
        session = self.sessions.resume(raw_session_id, ctx)
        return self.messages_of(session.id)

    def messages_of(self, session_id: int) -> list[MessageView]:
        """Read-only listing for display after validation elsewhere."""
        # Columns, not ORM entities: the page re-reads the history at the end of every turn,
        # and building entities was most of that read's cost (py-spy, bench.events (b)).
        with self._transaction() as db:
            rows = db.execute(
                sa.select(*_VIEW_COLUMNS).where(col(ChatMessage.session_id) == session_id)
                .order_by(col(ChatMessage.id))
            ).all()
        return [MessageView(*row[:5], list(row[5] or [])) for row in rows]

    def transcript(self, raw_session_id: object, ctx: RequestContext) -> str:
        """The conversation and the file list as a Markdown document."""
        session = self.sessions.resume(raw_session_id, ctx)
        return render_transcript(
            session, self.messages_of(session.id), self.files.list_stored(session.id),
            exported_at=self.clock(),
        )

    def begin_turn(self, raw_session_id: object, content: object, ctx: RequestContext) -> Turn:
        """Validate the session and save the user's message in one transaction, then gather
        what the reply needs."""
        refused: MessageRejected | None = None
        with self._transaction() as db:
            # Locked against a concurrent reset until the commit: once a reset committed,
            # nothing more is written into the ended session.
            session = self.sessions.claim_active(db, raw_session_id, ctx)
            if session is not None:
                try:
                    text = clean_message(content)
                except MessageRejected as error:
                    refused = error  # the session was still used: its touch commits
                else:
                    message, earlier, files = self._save_question(db, session, text, ctx)
        if session is None:
            # Not active, or expired by the clock: `resume` ends it if due, records why, raises.
            self.sessions.resume(raw_session_id, ctx)
            raise SessionNotFound("ended")  # it was valid after all: a reset won the race
        if refused is not None:
            raise refused
        # Ranking runs after the commit, outside the lock (building an index can take a while).
        found = self.retriever.search(session.id, text, k=TOP_PASSAGES, signature=files)
        history = [HistoryTurn(m.role, m.content) for m in reversed(earlier)]
        return Turn(session, message, history, found.passages, found.files, ctx)

    def _save_question(
        self, db: Session, session: SessionView, text: str, ctx: RequestContext
    ) -> tuple[MessageView, Sequence[Row[tuple[str, str]]], tuple[str, ...]]:
        """The user's message and its audit row; the history and the file list the reply uses."""
        now = self.clock()
        # Core INSERTs, not ORM objects: the ORM's flush of these two rows cost more than the
        # statements themselves, right before the first piece of the reply (bench.events (b)).
        messages = ChatMessage.__table__
        message_id = db.connection().execute(
            sa.insert(messages)
            .values(session_id=session.id, role=MESSAGE_USER, content=text,
                    status=MESSAGE_COMPLETE, created_at=now)
            .returning(messages.c.id)
        ).scalar_one()
        self.audit.insert(db, "message.sent", ctx, at=now, session=session,
                          details={"chars": len(text)})
        # Two columns, not whole rows: building 20 ORM objects cost more than the query.
        earlier = db.exec(
            select(ChatMessage.role, ChatMessage.content)
            .where(ChatMessage.session_id == session.id,
                   col(ChatMessage.status) != MESSAGE_FAILED)
            .order_by(col(ChatMessage.id).desc()).limit(HISTORY_MESSAGES)
        ).all()
        message = MessageView(message_id, MESSAGE_USER, text, MESSAGE_COMPLETE, now, [])
        return message, earlier, self.retriever.signature(db, session.id)

    def reply(self, turn: Turn) -> Reply:
        """The assistant's reply to `turn`, not yet started."""
        return Reply(self, turn)

    def save_reply(
        self, turn: Turn, content: str, status: str, citations: list[dict[str, Any]]
    ) -> MessageView | None:
        """Store the finished reply; None when the session ended meanwhile (nothing to keep)."""
        now = self.clock()
        try:
            with self._transaction() as db:
                self._lock_active(db, turn.session.id)
                row = ChatMessage(session_id=turn.session.id, role=MESSAGE_ASSISTANT,
                                  content=content, status=status, created_at=now,
                                  citations=citations or None)
                db.add(row)
                db.flush()
                return to_view(row)
        except SessionNotFound:
            return None

    # --- ContentsHandler ------------------------------------------------------------------------

    def summarize(self, db: Session, session_id: int) -> SessionContents:
        """How many messages the session holds."""
        count = db.exec(
            select(func.count()).where(ChatMessage.session_id == session_id)
        ).one()
        return SessionContents(messages=int(count))

    def release(self, db: Session, session_id: int, now: datetime) -> SessionContents:
        """In the reset's transaction: delete the messages and the files' passages."""
        contents = self.summarize(db, session_id)
        self.erase_on_expiry(db, session_id, now)
        return contents

    def purge(self, session_id: int, ctx: RequestContext) -> None:
        """Nothing outside the database to clean."""
        self.retriever.forget(session_id)

    def erase_on_expiry(self, db: Session, session_id: int, now: datetime) -> None:
        """Delete what an ended session must not keep: its messages and passages."""
        db.execute(sa.delete(ChatMessage).where(col(ChatMessage.session_id) == session_id))
        files = select(SessionFile.id).where(SessionFile.session_id == session_id)
        db.execute(sa.delete(FileChunk).where(col(FileChunk.file_id).in_(files)))
        # Nor may the retriever's in-memory copy of those passages outlive them.
        self.retriever.forget(session_id)

    # --- shared steps ---------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        try:
            with unit_of_work(self.engine) as db:
                yield db
        except OperationalError as exc:
            raise DatabaseUnavailable() from exc

    @staticmethod
    def _lock_active(db: Session, session_id: int) -> None:
        # Serialises with a concurrent reset (row lock on PostgreSQL, write lock on SQLite):
        # once the reset committed, nothing more is written into the ended session.
        locked = db.execute(
            sa.update(UserSession)
            .where(col(UserSession.id) == session_id, col(UserSession.status) == SESSION_ACTIVE)
            .values(status=SESSION_ACTIVE)
        )
        if locked.rowcount != 1:
            raise SessionNotFound("ended")
