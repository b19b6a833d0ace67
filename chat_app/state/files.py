"""The session's files: streaming uploads with per-file progress, listing, download, delete."""

from __future__ import annotations

import math
import time

import anyio.to_thread
import reflex as rx

from chat_app.errors import AppError
from chat_app.services.files import FileView
from chat_app.services.uploads import Upload, begin_upload
from chat_app.state.common import error_toast, request_context, services
from chat_app.state.session import SessionState, human_size

UPLOAD_ID = "attach"
PROGRESS_EVERY_S = 0.1


def file_row(view: FileView) -> dict[str, str]:
    """A stored file as the list shows it."""
    return {"id": view.id, "filename": view.filename, "size": human_size(view.size_bytes)}


class FilesState(SessionState):
    """A substate of SessionState: re-reads the list whenever the session id changes."""

    #: Per-file progress of the current upload: name, received, state (uploading/stored/refused).
    uploads: list[dict[str, str]] = []
    upload_percent: int = 0
    #: The session the progress list belongs to: after a reset it is someone else's history.
    uploads_sid: str = ""

    @rx.var
    def visible_uploads(self) -> list[dict[str, str]]:
        """The progress list, only for the current session."""
        return self.uploads if self.uploads_sid == self.sid else []

    @rx.var
    async def files(self) -> list[dict[str, str]]:
        """The stored files of this browser's session."""
        _ = self.sid, self.refresh_tick, self.files_tick
        # In a worker thread: computed on every page load (hydration), and a database that is
        # silent until its timeouts must not stall the event loop every tab of this worker shares.
        if self._showing_nothing():
            return []  # every page load hydrates first: no thread hop for nothing (bench.events)
        if (preloaded := self._page_files()) is not None:
            return [file_row(v) for v in preloaded]  # read with the page-load flow
        return await anyio.to_thread.run_sync(self._stored_files)

    def _stored_files(self) -> list[dict[str, str]]:
        # Display only: the page-load flow does the validating and auditing.
        session_id = self._shown_active_id()
        if session_id is None:
            return []
        try:
            views = services().files.list_stored(session_id)
        except AppError:
            return []
        return [file_row(v) for v in views]

    @rx.event
    def set_upload_percent(self, progress: dict):
        """The browser's progress for the whole request (0-100)."""
        fraction = progress.get("progress", 0)
        # Client input: a forged event may send text, NaN or infinity (Python's JSON reads both).
        if isinstance(fraction, int | float) and math.isfinite(fraction):
            self.upload_percent = min(100, max(0, round(fraction * 100)))

    @rx.event(background=True)
    async def upload_files(self, chunks: rx.UploadChunkIterator):
        """Stream each picked file into the store as its bytes arrive (never whole in memory)."""
        async with self:
            sid, ctx = self.sid, request_context(self)
            self.uploads, self.upload_percent, self.uploads_sid = [], 0, self.sid
        current: Upload | None = None
        index = -1
        last_push = 0.0
        async for chunk in chunks:
            if chunk.offset == 0:  # a new multipart part: the next file starts
                if current is not None:
                    yield await self._finish(current, index)
                index += 1
                current, refusal = await self._begin(sid, chunk.filename, ctx, index)
                if refusal is not None:
                    yield refusal
            if current is None:
                continue  # the rest of a refused file: drain it
            try:
                await anyio.to_thread.run_sync(current.feed, chunk.data)
            except AppError as error:
                current = None
                yield await self._refuse(index, error)
                continue
            if time.monotonic() - last_push > PROGRESS_EVERY_S:
                last_push = time.monotonic()
                async with self:
                    self._set_upload(index, received=chunk.offset + len(chunk.data))
        if current is not None:
            yield await self._finish(current, index)

    @rx.event
    def download_file(self, file_id: str):
        """Mint a short-lived URL at click time and hand it to the browser."""
        try:
            url = services().files.download_url(self.sid, file_id, request_context(self))
        except AppError as error:
            return error_toast(error)
        if url.startswith("/"):
            return rx.download(url=url)
        # S3 presigned URLs are absolute; the attachment disposition keeps the page in place.
        return rx.call_script(f"window.location.assign({url!r})")

    @rx.event
    def delete_file(self, file_id: str, filename: str):
        """Delete one file of this session."""
        try:
            services().files.delete_file(self.sid, file_id, request_context(self))
        except AppError as error:
            return error_toast(error)
        self.files_tick += 1
        return rx.toast.success(f"Deleted {filename}.")

    # --- upload steps ------------------------------------------------------------------------

    async def _begin(self, sid, filename: str, ctx, index: int):
        async with self:
            self.uploads = [*self.uploads, {"name": filename, "received": "0 bytes",
                                            "state": "uploading"}]
        try:
            upload = await anyio.to_thread.run_sync(
                begin_upload, services().files, sid, filename, ctx
            )
        except AppError as error:
            return None, await self._refuse(index, error)
        return upload, None

    async def _finish(self, upload: Upload, index: int):
        try:
            view = await anyio.to_thread.run_sync(upload.finish)
        except AppError as error:
            return await self._refuse(index, error)
        async with self:
            self._set_upload(index, received=view.size_bytes, state="stored")
            self.files_tick += 1
        uploaded = f"Uploaded {view.filename} ({human_size(view.size_bytes)})."
        if upload.passages == 0:
            return rx.toast.warning(
                uploaded, description="No text could be read from it, so the assistant "
                "cannot quote it (a scanned or protected PDF?)."
            )
        return rx.toast.success(uploaded)

    async def _refuse(self, index: int, error: AppError):
        async with self:
            self._set_upload(index, state="refused")
            name = self.uploads[index]["name"] if 0 <= index < len(self.uploads) else "file"
        return rx.toast.error(f"{name} was not uploaded: {error.detail}")

    def _set_upload(self, index: int, *, received: int | None = None,
                    state: str | None = None) -> None:
        if not 0 <= index < len(self.uploads):
            return
        entry = dict(self.uploads[index])
        if received is not None:
            entry["received"] = human_size(received)
        if state is not None:
            entry["state"] = state
        self.uploads = [*self.uploads[:index], entry, *self.uploads[index + 1:]]
