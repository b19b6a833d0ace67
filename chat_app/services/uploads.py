"""The crash-consistent upload protocol (SPEC section 5).

validate → `pending` row → stream to the store → re-check the session → `stored` (or `failed`
and the object deleted). The database never points at a missing object.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import BinaryIO

import anyio.to_thread
import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from chat_app.errors import AppError, SessionNotFound
from chat_app.models import (
    FILE_FAILED,
    FILE_PENDING,
    FILE_STORED,
    SESSION_ACTIVE,
    FileChunk,
    SessionFile,
    UserSession,
)
from chat_app.services.audit import RequestContext
from chat_app.services.extraction import ExtractionCopy, ExtractionFailed, TextChunk, copy_for
from chat_app.services.file_rules import (
    SNIFF_BYTES,
    CleanName,
    FileTooLarge,
    TooManyFiles,
    check_content,
    check_extension,
    clean_filename,
)
from chat_app.services.files import FileService, FileView, object_key, to_view
from chat_app.services.sessions import SessionView
from chat_app.storage.base import CHUNK_SIZE, ObjectWriter, StorageError

log = logging.getLogger(__name__)


class Upload:
    """One file on its way in: feed it bytes, then `finish` (or `abandon` on any error)."""

    def __init__(
        self, files: FileService, session: SessionView, name: CleanName, content_type: str,
        ctx: RequestContext,
    ) -> None:
        self._files = files
        self._session = session
        self._name = name
        self._content_type = content_type
        self._ctx = ctx
        self._head = bytearray()
        self._size = 0
        self._sha256 = hashlib.sha256()
        self._row_id: str | None = None
        self._key = ""
        self._writer: ObjectWriter | None = None
        self._copy: ExtractionCopy | None = copy_for(name.extension)
        #: Passages indexed for the assistant; None for files without text (images).
        self.passages: int | None = None

    @property
    def filename(self) -> str:
        """The cleaned display name."""
        return self._name.display

    def feed(self, data: bytes) -> None:
        """Take the next bytes; nothing is written before the head has been sniffed."""
        self._size += len(data)
        if self._size > self._files.limits.max_bytes:
            raise self._reject(FileTooLarge(_too_large_message(self._files.limits.max_bytes)))
        self._sha256.update(data)
        if self._copy is not None:
            self._copy.keep(data)
        if self._writer is None:
            self._head += data
            if len(self._head) >= SNIFF_BYTES:
                self._start(complete=False)
            return
        self._write(data)

    def finish(self) -> FileView:
        """Commit the object, then mark the row `stored` if the session is still active."""
        if self._writer is None:
            self._start(complete=True)
        assert self._writer is not None and self._row_id is not None
        try:
            self._writer.commit()
        except BaseException:
            self._fail("store_error")
            raise
        chunks = self._extract()
        now = self._files.clock()
        with self._files.transaction() as db:
            # The session row's lock, not a read of its status: on PostgreSQL a read does not
            # wait for a reset in progress, and would store the file in the session it ends.
            stored = self._lock_active_session(db) and db.execute(
                sa.update(SessionFile)
                .where(col(SessionFile.id) == self._row_id,
                       col(SessionFile.status) == FILE_PENDING)
                .values(status=FILE_STORED, size_bytes=self._size,
                        sha256=self._sha256.hexdigest())
            ).rowcount == 1
            if stored:
                if chunks:
                    # One executemany: a long text has ~1,500 passages, and an ORM object per
                    # row cost 3-8 times the INSERT itself (PostgreSQL, SQLite).
                    db.execute(sa.insert(FileChunk), [
                        {"file_id": self._row_id, "ordinal": c.ordinal, "text": c.text,
                         "page": c.page}
                        for c in chunks
                    ])
                self.passages = None if chunks is None else len(chunks)
                self._files.audit.record(
                    db, "file.uploaded", self._ctx, at=now, session=self._session,
                    details={"bytes": self._size, "content_type": self._content_type},
                )
                row = db.get(SessionFile, self._row_id)
                assert row is not None
                return to_view(row)
        # The session ended while the bytes were in flight: the object must not outlive it.
        # The row is failed first: a store that cannot delete now (it went down after the
        # write) must not leave the row `pending` and turn "session ended" into a 503. The
        # object is then an orphan of an ended session, which the sweep deletes.
        self._mark_failed("session_ended")
        try:
            self._files.store.delete_many([self._key])
        except StorageError as exc:
            log.warning("could not delete an ended session's upload (%s); the sweep will",
                        type(exc).__name__)
        raise SessionNotFound("ended")

    def abandon(self) -> None:
        """Give up (client gone, another error): remove the object and fail the row."""
        self._drop_copy()
        if self._row_id is not None:
            self._fail("abandoned")

    # --- steps -------------------------------------------------------------------------------

    def _extract(self) -> list[TextChunk] | None:
        """The file's passages, from the copy kept while streaming; None when it has no text."""
        if self._copy is None:
            return None
        try:
            return self._copy.chunks()
        except ExtractionFailed as exc:
            # The file is still stored and downloadable; only the assistant cannot quote it.
            log.warning("text extraction skipped (%s)", type(exc).__name__)
            return []
        except Exception as exc:
            # A parser defect on one odd file must not cost the user an upload that worked.
            log.error("text extraction failed unexpectedly (%s)", type(exc).__name__)
            return []
        finally:
            self._drop_copy()

    def _drop_copy(self) -> None:
        if self._copy is not None:
            self._copy.close()
            self._copy = None

    def _start(self, *, complete: bool) -> None:
        head = bytes(self._head)
        try:
            check_content(self._name.extension, head, complete=complete)
        except AppError as error:
            raise self._reject(error) from None
        try:
            self._insert_pending()
        except TooManyFiles as error:
            # A refused file is audited like any other rejection (SPEC section 7).
            raise self._reject(error) from None
        try:
            self._writer = self._files.store.open_writer(self._key, self._content_type)
        except BaseException:
            # A pending row that never got a writer would count against the file limit.
            self._mark_failed("store_error")
            raise
        self._head.clear()
        self._write(head)

    def _insert_pending(self) -> None:
        now = self._files.clock()
        file_id = str(uuid.uuid4())
        with self._files.transaction() as db:
            # Concurrent uploads cannot both pass the count check, and an ended session is seen.
            if not self._lock_active_session(db):
                raise SessionNotFound("ended")
            held = db.exec(
                select(func.count()).where(
                    SessionFile.session_id == self._session.id,
                    col(SessionFile.status).in_([FILE_PENDING, FILE_STORED]),
                )
            ).one()
            if held >= self._files.limits.max_files:
                limit = self._files.limits.max_files
                raise TooManyFiles(f"A session holds at most {limit} files. Delete one first.")
            self._key = object_key(self._session.uuid, file_id)
            db.add(SessionFile(
                id=file_id, session_id=self._session.id, object_key=self._key,
                filename=self._name.display, content_type=self._content_type,
                status=FILE_PENDING, created_at=now,
            ))
            self._files.audit.record(db, "file.upload_started", self._ctx, at=now,
                                     session=self._session)
        self._row_id = file_id

    def _lock_active_session(self, db: Session) -> bool:
        """Lock the session row (PostgreSQL) or the database (SQLite); False if it has ended.

        A reset or an expiry updates the same row, so it waits for this transaction, or this
        one for it and then sees the session ended.
        """
        locked = db.execute(
            sa.update(UserSession)
            .where(col(UserSession.id) == self._session.id,
                   col(UserSession.status) == SESSION_ACTIVE)
            .values(status=SESSION_ACTIVE)
        )
        return locked.rowcount == 1

    def _write(self, data: bytes) -> None:
        assert self._writer is not None
        try:
            self._writer.write(data)
        except BaseException:
            self._fail("store_error")
            raise

    def _reject(self, error: AppError) -> AppError:
        """Undo everything for a rejected file and return the error to raise."""
        self._drop_copy()
        if self._writer is not None:
            self._writer.abort()
        now = self._files.clock()
        with self._files.transaction() as db:
            if self._row_id is not None:
                # A rejected file leaves nothing behind: not even its pending row.
                db.execute(sa.delete(SessionFile).where(col(SessionFile.id) == self._row_id))
            self._files.audit.record(db, "file.rejected", self._ctx, at=now,
                                     session=self._session, details={"reason": error.type_slug})
        self._row_id = None
        return error

    def _fail(self, reason: str) -> None:
        self._drop_copy()
        if self._writer is not None:
            self._writer.abort()
        self._mark_failed(reason)

    def _mark_failed(self, reason: str) -> None:
        if self._row_id is None:
            return
        now = self._files.clock()
        with self._files.transaction() as db:
            db.execute(
                sa.update(SessionFile)
                .where(col(SessionFile.id) == self._row_id,
                       col(SessionFile.status) == FILE_PENDING)
                .values(status=FILE_FAILED, deleted_at=now)
            )
            self._files.audit.record(db, "file.rejected", self._ctx, at=now,
                                     session=self._session, details={"reason": reason})
        self._row_id = None


def _too_large_message(max_bytes: int) -> str:
    return f"The file is larger than the {max_bytes / 2**20:g} MiB limit."


def begin_upload(
    files: FileService, raw_session_id: object, filename: str, ctx: RequestContext
) -> Upload:
    """Validate what can be validated before any byte arrives: session, name, extension."""
    session = files.sessions.resume(raw_session_id, ctx)
    try:
        name = clean_filename(filename)
        content_type = check_extension(name, files.limits.allowed_extensions)
    except AppError as error:
        with files.transaction() as db:
            files.audit.record(db, "file.rejected", ctx, at=files.clock(), session=session,
                               details={"reason": error.type_slug})
        raise
    return Upload(files, session, name, content_type, ctx)


def upload_stream(
    files: FileService, raw_session_id: object, filename: str, stream: BinaryIO,
    ctx: RequestContext,
) -> FileView:
    """Upload everything a (spooled) binary stream yields."""
    upload = begin_upload(files, raw_session_id, filename, ctx)
    try:
        while chunk := stream.read(CHUNK_SIZE):
            upload.feed(chunk)
        return upload.finish()
    except AppError:
        raise
    except BaseException:
        upload.abandon()
        raise


async def upload_chunks(
    files: FileService, raw_session_id: object, filename: str, chunks: AsyncIterator[bytes],
    ctx: RequestContext,
) -> FileView:
    """Upload bytes arriving asynchronously; store and database calls run in worker threads."""
    upload = await anyio.to_thread.run_sync(begin_upload, files, raw_session_id, filename, ctx)
    try:
        async for chunk in chunks:
            await anyio.to_thread.run_sync(upload.feed, chunk)
        return await anyio.to_thread.run_sync(upload.finish)
    except AppError:
        raise
    except BaseException:
        await anyio.to_thread.run_sync(upload.abandon)
        raise
