"""The conversation: history from the database, send, a streamed reply, Stop, transcript."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import anyio.to_thread
import reflex as rx

from chat_app.errors import AppError
from chat_app.services.chat import MessageView, Reply, clean_message
from chat_app.state.common import error_toast, request_context, services
from chat_app.state.session import SessionState

COMPOSER_ID = "composer"
#: Built once: making the EventSpec costs more than sending it.
CLEAR_COMPOSER = rx.set_value(COMPOSER_ID, "")
#: The streamed reply reaches the browser in batches: each delta re-sends the whole text.
FLUSH_EVERY_S = 0.05
STATUS_LABELS = {"incomplete": "Stopped", "failed": "Failed"}


def message_row(message: MessageView) -> dict[str, str]:
    """A message as the page shows it."""
    sources = "; ".join(
        f"{c.get('filename', '')}, page {c['page']}" if c.get("page") else str(c.get("filename"))
        for c in message.citations
    )
    return {
        "id": str(message.id),
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "status_label": STATUS_LABELS.get(message.status, ""),
        "time": message.created_at.strftime("%H:%M"),
        "sources": sources,
    }


class ChatState(SessionState):
    """A substate of SessionState: the history follows the session id."""

    streaming: bool = False
    stop_requested: bool = False
    #: The reply being streamed (the only var each flush re-sends).
    reply_text: str = ""
    #: The session the streaming reply belongs to.
    streaming_sid: str = ""
    #: The user's message of the turn in flight, shown above the reply until the history is
    #: re-read at its end: re-sending (and re-rendering) the whole history before the first
    #: piece would put that cost in front of it, growing with the conversation (bench.first_token).
    pending_text: str = ""

    @rx.var
    async def messages(self) -> list[dict[str, str]]:
        """The saved messages of this browser's session."""
        _ = self.sid, self.refresh_tick, self.chat_tick
        # In a worker thread, like FilesState.files: a silent database must not stall the loop.
        if self._showing_nothing():
            return []  # every page load hydrates first: no thread hop for nothing (bench.events)
        if (preloaded := self._page_messages()) is not None:
            return [message_row(m) for m in preloaded]  # read with the page-load flow
        return await anyio.to_thread.run_sync(self._saved_messages)

    def _saved_messages(self) -> list[dict[str, str]]:
        session_id = self._shown_active_id()
        if session_id is None:
            return []
        try:
            return [message_row(m) for m in services().chat.messages_of(session_id)]
        except AppError:
            return []

    @rx.var
    def show_reply(self) -> bool:
        """A reply is streaming for the session on screen."""
        return self.streaming and self.streaming_sid == self.sid

    @rx.event
    def stop_reply(self):
        """Stop: the reply ends after the current piece and is saved as stopped."""
        if self.streaming:
            self.stop_requested = True

    @rx.event(background=True)
    async def send(self, form: dict):
        """Save the user's message at once, then stream the reply from a background task."""
        try:
            text = clean_message(form.get("message", ""))  # refuse empty/overlong before any work
        except AppError as error:
            yield error_toast(error)
            return
        async with self:
            busy = self.streaming
            sid, ctx = self.sid, request_context(self)
            if not busy:
                self.streaming, self.stop_requested, self.reply_text = True, False, ""
                # Shown at once, before it is saved: one state write less before the first
                # piece of the reply (bench.events (b)); a refusal below takes it back.
                self.streaming_sid, self.pending_text = sid, text
        if busy:
            yield rx.toast.warning("Wait for the reply to finish, or press Stop.")
            return
        svc = services()
        try:
            await svc.limiter.hit_async("messages", svc.audit.session_ref(sid))
            turn = await anyio.to_thread.run_sync(
                svc.chat.begin_turn, sid, form.get("message", ""), ctx
            )
        except AppError as error:
            async with self:
                self.streaming, self.pending_text = False, ""
            # The composer keeps the text: nothing the user typed is lost to a refusal.
            yield error_toast(error)
            return
        reply = svc.chat.reply(turn)
        try:
            # Saved: only now is the typed text safe to clear (the pending row shows it).
            async for event in self._stream(reply, sid, after_first_piece=CLEAR_COMPOSER):
                yield event
        finally:
            async with self:
                self.streaming, self.stop_requested, self.reply_text = False, False, ""
                self.pending_text = ""
                self.chat_tick += 1

    @rx.event
    def download_transcript(self):
        """The conversation and the file list as a Markdown file."""
        try:
            document = services().chat.transcript(self.sid, request_context(self))
        except AppError as error:
            return error_toast(error)
        return rx.download(data=document, filename=f"transcript-{self.sid[:8]}.md",
                           mime_type="text/markdown")

    # --- streaming ------------------------------------------------------------------------------

    async def _stream(
        self, reply: Reply, sid: str, *, after_first_piece: rx.event.EventSpec | None = None
    ) -> AsyncIterator[rx.event.EventSpec]:
        """Pump `reply` into `reply_text`, flushing every FLUSH_EVERY_S, honouring Stop.

        `after_first_piece` goes out right after the first flush: yielded before it, an event
        would delay the first piece by a round of Reflex's event processing (bench.events (b)).
        """
        tokens = reply.tokens()
        next_piece: asyncio.Task | None = None
        last_flush = 0.0
        flushed = ""
        try:
            while True:
                if next_piece is None:
                    next_piece = asyncio.ensure_future(anext(tokens))
                done, _ = await asyncio.wait({next_piece}, timeout=FLUSH_EVERY_S)
                finished = False
                if done:
                    try:
                        next_piece.result()
                    except StopAsyncIteration:
                        finished = True
                    next_piece = None
                now = time.monotonic()
                # The first piece goes out at once; later ones in batches.
                if finished or not flushed or now - last_flush >= FLUSH_EVERY_S:
                    async with self:
                        if self.stop_requested or self.sid != sid:
                            reply.stop()  # Stop pressed, or the session was reset meanwhile
                        if reply.text != flushed:
                            self.reply_text = flushed = reply.text
                    last_flush = now
                    if after_first_piece is not None:
                        yield after_first_piece
                        after_first_piece = None
                if finished:
                    break
                if reply.stopped and next_piece is not None:
                    # Waiting on a slow provider: do not wait for its next piece to stop.
                    next_piece.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await next_piece
                    next_piece = None
                    break
        finally:
            if next_piece is not None:
                next_piece.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await next_piece
            await tokens.aclose()
        if reply.error is not None:
            yield rx.toast.error(reply.error.detail)
        elif reply.status == "incomplete" and reply.message is not None:
            yield rx.toast.info("Reply stopped. What was written so far is kept.")
