"""The sweep (SPEC section 5): expire sessions, purge ended sessions' files, reconcile the store.

One function behind the CLI, the background loop, the admin API and the dev panel. It streams
the store listing page by page and checks rows in batches, so memory stays flat at any count.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from itertools import islice

import sqlalchemy as sa
from sqlmodel import col, func, select

from chat_app.models import (
    FILE_DELETING,
    FILE_FAILED,
    FILE_PENDING,
    FILE_STORED,
    SESSION_ACTIVE,
    SessionFile,
    UserSession,
    utcnow,
)
from chat_app.services.audit import RequestContext
from chat_app.services.files import FileService
from chat_app.services.session_ids import is_uuid4
from chat_app.services.sessions import SessionService
from chat_app.storage.base import StorageError, StoredObject
from chat_app.storage.keys import require_key

BATCH = 1000
KEY_PREFIX = "sessions/"
Progress = Callable[[str, int], None]


@dataclass
class SweepReport:
    """What one sweep did (or, in a dry run, would do)."""

    dry_run: bool
    expired_sessions: int = 0
    purged_files: int = 0
    scanned_objects: int = 0
    deleted_objects: int = 0
    deleted_bytes: int = 0
    retired_pending: int = 0
    errors: int = 0
    error_kinds: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form (API, CLI --json, the audit row)."""
        return asdict(self)


REPORT_LINES = [
    ("expired_sessions", "sessions expired"),
    ("purged_files", "files of ended sessions purged"),
    ("scanned_objects", "objects scanned"),
    ("deleted_objects", "orphan objects deleted"),
    ("deleted_bytes", "bytes freed"),
    ("retired_pending", "stale pending uploads retired"),
    ("errors", "errors"),
]


def format_report(report: SweepReport) -> str:
    """The human-readable sweep report."""
    title = "Sweep (dry run: nothing was changed)" if report.dry_run else "Sweep"
    width = max(len(label) for _key, label in REPORT_LINES)
    lines = [f"{title} finished in {report.duration_s:.2f} s"]
    for key, label in REPORT_LINES:
        lines.append(f"  {label:<{width}}  {getattr(report, key):>12,}")
    if report.error_kinds:
        lines.append(f"  error kinds: {', '.join(sorted(set(report.error_kinds)))}")
    return "\n".join(lines)


class Sweeper:
    """Runs sweeps against one database and store."""

    def __init__(
        self, *, files: FileService, sessions: SessionService, grace: timedelta,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._files = files
        self._sessions = sessions
        self._grace = grace
        self._clock = clock

    def run(self, ctx: RequestContext, *, dry_run: bool = False,
            progress: Progress | None = None) -> SweepReport:
        """One full sweep; store failures are counted in the report, never raised."""
        started = time.monotonic()
        report = SweepReport(dry_run=dry_run)
        now = self._clock()
        cutoff = now - self._grace
        tick = progress or (lambda _stage, _count: None)
        expiring = self._sessions.expire_due(ctx, now=now, dry_run=dry_run)
        report.expired_sessions = len(expiring)
        tick("expired", report.expired_sessions)
        self._guard(report, lambda: self._purge_ended(report, ctx, set(expiring), dry_run))
        tick("purged", report.purged_files)
        self._guard(report, lambda: self._reconcile(report, set(expiring), cutoff, dry_run, tick))
        self._guard(report, lambda: self._retire_pending(report, cutoff, dry_run))
        report.duration_s = round(time.monotonic() - started, 3)
        with self._files.transaction() as db:
            details = {k: v for k, v in report.as_dict().items() if k != "error_kinds"}
            self._files.audit.record(db, "sweep.completed", ctx, at=self._clock(),
                                     details=details)
        return report

    # --- stages ------------------------------------------------------------------------------

    def _purge_ended(self, report: SweepReport, ctx: RequestContext, expiring: set[int],
                     dry_run: bool) -> None:
        """Files of ended sessions, and `deleting` leftovers anywhere: delete, mark `deleted`."""
        ended = sa.exists().where(col(UserSession.id) == col(SessionFile.session_id),
                                  col(UserSession.status) != SESSION_ACTIVE)
        owner = col(SessionFile.session_id).in_(expiring) if expiring else sa.false()
        held = col(SessionFile.status).in_([FILE_STORED, FILE_DELETING])
        leftover = col(SessionFile.status) == FILE_DELETING  # a purge or delete that failed
        with self._files.transaction() as db:
            ended_ids = set(db.exec(
                select(SessionFile.session_id).distinct().where(held, ended | owner)
            ).all())
            retry_ids = set(db.exec(
                select(SessionFile.session_id).distinct().where(leftover)
            ).all())
            doomed = (held & col(SessionFile.session_id).in_(ended_ids)) | leftover
            report.purged_files = db.exec(select(func.count()).where(doomed)).one()
            if dry_run:
                return
            if ended_ids:
                db.execute(
                    sa.update(SessionFile)
                    .where(col(SessionFile.session_id).in_(ended_ids),
                           col(SessionFile.status) == FILE_STORED)
                    .values(status=FILE_DELETING)
                )
        for session_id in sorted(ended_ids | retry_ids):
            self._files.purge(session_id, ctx)

    def _reconcile(self, report: SweepReport, expiring: set[int], cutoff: datetime,
                   dry_run: bool, tick: Progress) -> None:
        """Objects under sessions/ older than the grace period that nothing live owns."""
        listing = self._files.store.iter_keys(KEY_PREFIX)
        for page in _batches(listing, BATCH):
            report.scanned_objects += len(page)
            doomed = self._orphans(
                [obj for obj in page if obj.modified < cutoff], expiring, dry_run
            )
            # A key the app never issues (put there by hand) would make the store refuse the
            # whole batch, every sweep: leave it to an operator and say so in the report.
            invalid = [obj for obj in doomed if not _is_valid_key(obj.key)]
            if invalid:
                report.errors += len(invalid)
                report.error_kinds.append("invalid_key")
                doomed = [obj for obj in doomed if _is_valid_key(obj.key)]
            if doomed and not dry_run:
                failed = set(self._files.store.delete_many([obj.key for obj in doomed]))
                if failed:
                    report.errors += len(failed)
                    report.error_kinds.append("delete_failed")
                doomed = [obj for obj in doomed if obj.key not in failed]
            report.deleted_objects += len(doomed)
            report.deleted_bytes += sum(obj.size for obj in doomed)
            tick("scanned", report.scanned_objects)

    def _orphans(self, candidates: list[StoredObject], expiring: set[int],
                 dry_run: bool) -> list[StoredObject]:
        """The candidates whose key is foreign, or whose row or session is not live."""
        parsed = {obj.key: _parse_key(obj.key) for obj in candidates}
        file_ids = [ids[1] for ids in parsed.values() if ids is not None]
        keep: set[str] = set()
        if file_ids:
            with self._files.transaction() as db:
                rows = db.exec(
                    select(SessionFile.object_key, SessionFile.status, SessionFile.session_id,
                           UserSession.status)
                    .join(UserSession, col(UserSession.id) == col(SessionFile.session_id))
                    .where(col(SessionFile.id).in_(file_ids))
                ).all()
            for key, file_status, session_id, session_status in rows:
                ended = session_status != SESSION_ACTIVE or session_id in expiring
                if not ended and file_status in (FILE_PENDING, FILE_STORED):
                    keep.add(key)  # live
                elif dry_run and ended and file_status in (FILE_STORED, FILE_DELETING):
                    keep.add(key)  # a real run purges it in the previous stage: count it once
        return [obj for obj in candidates if obj.key not in keep]

    def _retire_pending(self, report: SweepReport, cutoff: datetime, dry_run: bool) -> None:
        """Pending rows older than the grace period: an upload that never finished."""
        while True:
            with self._files.transaction() as db:
                rows = db.exec(
                    select(SessionFile.id, SessionFile.object_key)
                    .where(SessionFile.status == FILE_PENDING, SessionFile.created_at < cutoff)
                    .order_by(col(SessionFile.id)).limit(BATCH)
                ).all()
            if not rows:
                return
            report.retired_pending += len(rows)
            if dry_run:
                return
            failed = set(self._files.store.delete_many([key for _id, key in rows]))
            retired = [file_id for file_id, key in rows if key not in failed]
            with self._files.transaction() as db:
                db.execute(
                    sa.update(SessionFile)
                    .where(col(SessionFile.id).in_(retired),
                           col(SessionFile.status) == FILE_PENDING)
                    .values(status=FILE_FAILED, deleted_at=self._clock())
                )
            if failed or len(rows) < BATCH:
                report.errors += len(failed)
                return

    @staticmethod
    def _guard(report: SweepReport, stage: Callable[[], None]) -> None:
        # A store outage ends the stage; the next sweep retries. The report says so.
        try:
            stage()
        except StorageError as error:
            report.errors += 1
            report.error_kinds.append(error.type_slug)


def _is_valid_key(key: str) -> bool:
    try:
        require_key(key)
    except ValueError:
        return False
    return True


def _parse_key(key: str) -> tuple[str, str] | None:
    parts = key.split("/")
    if len(parts) != 3 or parts[0] != "sessions" or not (is_uuid4(parts[1]) and is_uuid4(parts[2])):
        return None
    return parts[1], parts[2]


def _batches(items: Iterable[StoredObject], size: int) -> Iterator[list[StoredObject]]:
    iterator = iter(items)
    while page := list(islice(iterator, size)):
        yield page
