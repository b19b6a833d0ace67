"""A session's files: listing, download URLs, delete, and purge on reset (SPEC section 5).

Uploads live in uploads.py; both share this service's collaborators.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, func, select

from chat_app.db import unit_of_work
from chat_app.errors import DatabaseUnavailable, NotFound
from chat_app.models import (
    FILE_DELETED,
    FILE_DELETING,
    FILE_STORED,
    FileChunk,
    SessionFile,
    UserSession,
    utcnow,
)
from chat_app.services.audit import AuditWriter, RequestContext
from chat_app.services.session_ids import is_uuid4
from chat_app.services.sessions import SessionContents, SessionService, SessionView
from chat_app.storage.base import ObjectStore

DOWNLOAD_URL_TTL_S = 300
PURGE_BATCH = 1000


class FileNotFound(NotFound):
    type_slug = "file-not-found"

    def __init__(self) -> None:
        # Also the answer for another session's file: never confirm that it exists.
        super().__init__("No such file in this session.")


@dataclass(frozen=True)
class UploadLimits:
    """What one session may upload."""

    max_bytes: int
    max_files: int
    allowed_extensions: frozenset[str]


@dataclass(frozen=True)
class FileView:
    """What callers may know about a stored file."""

    id: str
    filename: str
    content_type: str
    size_bytes: int
    created_at: datetime


def object_key(session_uuid: str, file_id: str) -> str:
    """`sessions/<session uuid>/<file uuid>`: the user's filename never enters a key."""
    return f"sessions/{session_uuid}/{file_id}"


def to_view(row: SessionFile) -> FileView:
    """The public view of a file row."""
    return FileView(row.id, row.filename, row.content_type, row.size_bytes, row.created_at)


class FileService:
    """Files of active sessions; also the sessions' contents handler for resets."""

    def __init__(
        self,
        engine: Engine,
        *,
        store: ObjectStore,
        audit: AuditWriter,
        sessions: SessionService,
        limits: UploadLimits,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.store = store
        self.audit = audit
        self.sessions = sessions
        self.limits = limits
        #: The sessions' clock: the sweep ages `pending` rows by it, so both must agree.
        self.clock = clock

    # --- use cases ---------------------------------------------------------------------------

    def list_files(self, raw_session_id: object, ctx: RequestContext) -> list[FileView]:
        """The stored files of an active session, oldest first."""
        session = self.sessions.resume(raw_session_id, ctx)
        return self.list_stored(session.id)

    def list_stored(self, session_id: int) -> list[FileView]:
        """The stored files of a session, read-only (for display after validation elsewhere)."""
        query = (
            select(SessionFile)
            .where(SessionFile.session_id == session_id, SessionFile.status == FILE_STORED)
            .order_by(col(SessionFile.created_at), col(SessionFile.id))
        )
        with self.transaction() as db:
            return [to_view(row) for row in db.exec(query)]

    def download_url(self, raw_session_id: object, file_id: str, ctx: RequestContext) -> str:
        """A short-lived download URL for one of the session's stored files, minted now."""
        session = self.sessions.resume(raw_session_id, ctx)
        with self.transaction() as db:
            row = self._own_file(db, session, file_id, statuses=(FILE_STORED,))
        return self.store.url(row.object_key, row.filename, DOWNLOAD_URL_TTL_S)

    def delete_file(self, raw_session_id: object, file_id: str, ctx: RequestContext) -> None:
        """Delete one of the session's files; deleting twice is harmless."""
        session = self.sessions.resume(raw_session_id, ctx)
        now = self.clock()
        with self.transaction() as db:
            row = self._own_file(db, session, file_id,
                                 statuses=(FILE_STORED, FILE_DELETING, FILE_DELETED))
            if row.status == FILE_DELETED:
                return
            db.execute(
                sa.update(SessionFile)
                .where(col(SessionFile.id) == row.id, col(SessionFile.status) == FILE_STORED)
                .values(status=FILE_DELETING)
            )
            # The assistant must stop quoting a file the moment it is deleted.
            db.execute(sa.delete(FileChunk).where(col(FileChunk.file_id) == row.id))
        # A store failure here leaves the row `deleting`: hidden from the user, swept later.
        failed = self.store.delete_many([row.object_key])
        if failed:
            return
        with self.transaction() as db:
            marked = db.execute(
                sa.update(SessionFile)
                .where(col(SessionFile.id) == row.id, col(SessionFile.status) == FILE_DELETING)
                .values(status=FILE_DELETED, deleted_at=now)
            )
            # A racing delete (another tab) or a reset's purge may have finished the row first;
            # it wrote the audit row then, and one deletion gets one row.
            if marked.rowcount == 1:
                self.audit.record(db, "file.deleted", ctx, at=now, session=session,
                                  details={"bytes": row.size_bytes})

    # --- ContentsHandler (called by SessionService.reset) ------------------------------------

    def summarize(self, db: Session, session_id: int) -> SessionContents:
        """How many stored files (and bytes) the session holds."""
        count, total = db.exec(
            select(func.count(), func.coalesce(func.sum(SessionFile.size_bytes), 0)).where(
                SessionFile.session_id == session_id, SessionFile.status == FILE_STORED
            )
        ).one()
        return SessionContents(files=int(count), bytes=int(total))

    def release(self, db: Session, session_id: int, now: datetime) -> SessionContents:
        """In the reset transaction: hide the stored files (`deleting`) for the purge."""
        contents = self.summarize(db, session_id)
        # Pending uploads are left alone: their own final check sees the ended session and
        # fails them, removing their objects (uploads.py).
        db.execute(
            sa.update(SessionFile)
            .where(col(SessionFile.session_id) == session_id,
                   col(SessionFile.status) == FILE_STORED)
            .values(status=FILE_DELETING)
        )
        return contents

    def erase_on_expiry(self, db: Session, session_id: int, now: datetime) -> None:
        """Nothing here: the sweep purges an ended session's files (and their passages)."""

    def purge(self, session_id: int, ctx: RequestContext) -> None:
        """Delete the objects of the session's `deleting` files and mark them `deleted`."""
        while True:
            with self.transaction() as db:
                rows = db.exec(
                    select(SessionFile)
                    .where(SessionFile.session_id == session_id,
                           SessionFile.status == FILE_DELETING)
                    .order_by(col(SessionFile.id))
                    .limit(PURGE_BATCH)
                ).all()
            if not rows:
                return
            failed = set(self.store.delete_many([row.object_key for row in rows]))
            done = [row for row in rows if row.object_key not in failed]
            self._mark_deleted(session_id, done, ctx, failed=len(failed))
            if failed or len(rows) < PURGE_BATCH:
                return

    # --- shared steps ------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work; a lost database is a 503."""
        try:
            with unit_of_work(self.engine) as db:
                yield db
        except OperationalError as exc:
            raise DatabaseUnavailable() from exc

    def _own_file(
        self, db: Session, session: SessionView, file_id: str, *, statuses: tuple[str, ...]
    ) -> SessionFile:
        if not is_uuid4(file_id):
            raise FileNotFound()
        row = db.get(SessionFile, file_id.lower())
        if row is None or row.session_id != session.id or row.status not in statuses:
            raise FileNotFound()
        return row

    def _mark_deleted(
        self, session_id: int, rows: list[SessionFile], ctx: RequestContext, *, failed: int
    ) -> None:
        now = self.clock()
        with self.transaction() as db:
            marked: set[str] = set()
            if rows:
                db.execute(sa.delete(FileChunk).where(
                    col(FileChunk.file_id).in_([row.id for row in rows])))
                marked = set(db.execute(
                    sa.update(SessionFile)
                    .where(col(SessionFile.id).in_([row.id for row in rows]),
                           col(SessionFile.status) == FILE_DELETING)
                    .values(status=FILE_DELETED, deleted_at=now)
                    .returning(col(SessionFile.id))
                ).scalars())
            # Only the rows this purge marked: a racing delete_file or purge (the sweep's, or a
            # second worker's) that marked one first has audited it already.
            done = [row for row in rows if row.id in marked]
            if not done and not failed:
                return
            self.audit.record(
                db,
                "files.purged",
                ctx,
                at=now,
                session=db.get(UserSession, session_id),
                details={"files": len(done), "bytes": sum(r.size_bytes for r in done),
                         "failed": failed},
            )
