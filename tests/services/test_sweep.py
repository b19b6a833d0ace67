"""The sweep (SPEC section 5): expiry, purge of ended sessions, reconciliation, stale pending rows.

Every test gets a database of its own: a sweep looks at every row, not just the test's.
After every sweep, invariants 2 and 3 (SPEC section 11) are checked against the store directly.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from chat_app.container import Services
from chat_app.errors import AppError, SessionNotFound
from chat_app.models import (
    FILE_DELETED,
    FILE_DELETING,
    FILE_FAILED,
    FILE_PENDING,
    FILE_STORED,
    SESSION_ACTIVE,
    SESSION_EXPIRED,
    AuditLog,
    SessionFile,
    UserSession,
    utcnow,
)
from chat_app.services.audit import RequestContext
from chat_app.services.file_rules import SNIFF_BYTES
from chat_app.services.sessions import SessionView
from chat_app.services.sweep import Sweeper, SweepReport
from chat_app.services.uploads import begin_upload
from chat_app.storage.base import ObjectStore, StorageUnavailable
from chat_app.storage.local import LocalStore
from chat_app.storage.s3 import S3Store
from tests.conftest import DB_KINDS
from tests.invariants import (
    assert_no_stale_orphans,
    assert_storage_invariants,
    assert_stored_rows_have_objects,
    stale_orphans,
    stored_rows_without_objects,
)
from tests.services.conftest import (
    CTX,
    FlakyStore,
    PausingStore,
    audit_rows,
    file_row,
    file_rows,
    fresh_database,
    new_session,
    put_object,
    session_keys,
    upload_bytes,
)

SWEEP_CTX = RequestContext(actor="sweep", request_id="test-sweep")
GRACE = timedelta(minutes=60)
ORPHAN = b"orphan bytes"
COUNTS = ["deleted_objects", "deleted_bytes", "expired_sessions", "purged_files",
          "retired_pending", "errors"]


@pytest.fixture(params=DB_KINDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated database for this test alone (overrides the shared one)."""
    with fresh_database(request.param, tmp_path) as url:
        yield url


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def make_sweeper(services: Services, *, grace: timedelta = timedelta(0),
                 clock: Callable[[], datetime] = utcnow) -> Sweeper:
    return Sweeper(files=services.files, sessions=services.sessions, grace=grace, clock=clock)


def sweep(services: Services, sweeper: Sweeper | None = None, *, dry_run: bool = False,
          grace: timedelta = timedelta(0), now: datetime | None = None) -> SweepReport:
    """Run one sweep, then check invariants 2 and 3 for the cutoff it used."""
    sweeper = sweeper or make_sweeper(services, grace=grace)
    started = now or utcnow()
    before = sweep_rows(services)
    report = sweeper.run(SWEEP_CTX, dry_run=dry_run)
    assert sweep_rows(services) == before + 1  # exactly one `sweep.completed` row per run
    if not dry_run:
        assert_storage_invariants(services.engine, services.store, older_than=started - grace)
    return report


def sweep_rows(services: Services) -> int:
    with Session(services.engine) as db:
        return db.exec(select(func.count()).where(AuditLog.event == "sweep.completed")).one()


def orphan_keys(count: int) -> list[str]:
    return [f"sessions/{uuid.uuid4()}/{uuid.uuid4()}" for _ in range(count)]


def put_objects(store: ObjectStore, keys: list[str], data: bytes = ORPHAN) -> None:
    """Write objects straight to the store, sixteen at a time."""
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda key: put_object(store, key, data), keys))


def all_keys(store: ObjectStore, prefix: str = "") -> set[str]:
    return {obj.key for obj in store.iter_keys(prefix)}


def age_session(services: Services, session: SessionView, *, idle_days: float = 0,
                age_days: float = 0) -> None:
    """Move a session's last use (and creation) into the past with a direct UPDATE."""
    now = utcnow()
    with Session(services.engine) as db:
        db.execute(sa.update(UserSession).where(col(UserSession.id) == session.id).values(
            last_seen_at=now - timedelta(days=idle_days),
            created_at=now - timedelta(days=max(idle_days, age_days))))
        db.commit()


def insert_pending(services: Services, session: SessionView, *, age: timedelta,
                   with_object: bool) -> SessionFile:
    """A `pending` row as an upload interrupted by a crash leaves it (object written or not)."""
    file_id = str(uuid.uuid4())
    row = SessionFile(
        id=file_id, session_id=session.id, object_key=f"sessions/{session.uuid}/{file_id}",
        filename="crashed.txt", content_type="text/plain", status=FILE_PENDING,
        created_at=utcnow() - age,
    )
    with Session(services.engine, expire_on_commit=False) as db:
        db.add(row)
        db.commit()
    if with_object:
        put_object(services.store, row.object_key, b"half-finished\n")
    return row


def stored_file(services: Services, session: SessionView, name: str = "f.txt",
                data: bytes = b"live\n") -> str:
    """Upload a file; returns its object key."""
    view = upload_bytes(services, session.uuid, name, data)
    return file_row(services.engine, view.id).object_key


@pytest.fixture
def sweep_services(make_file_services) -> Services:
    return make_file_services(CHAT_APP_ORPHAN_GRACE_MINUTES=0)


# --- orphans ------------------------------------------------------------------------------------


@pytest.mark.parametrize("store", ["s3-own-bucket"], indirect=True)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("count", [0, 1, 1000, 1001, 2500])
def test_orphans_are_deleted_in_any_number(sweep_services: Services, count: int) -> None:
    services = sweep_services
    live_session = new_session(services)
    live = stored_file(services, live_session)
    put_objects(services.store, orphan_keys(count))

    dry = sweep(services, dry_run=True)
    assert (dry.scanned_objects, dry.deleted_objects) == (count + 1, count)
    assert len(all_keys(services.store, "sessions/")) == count + 1  # a dry run deletes nothing

    report = sweep(services)
    assert (report.scanned_objects, report.deleted_objects) == (count + 1, count)
    assert report.deleted_bytes == count * len(ORPHAN)
    assert report.errors == 0
    assert {k: getattr(dry, k) for k in COUNTS} == {k: getattr(report, k) for k in COUNTS}
    assert all_keys(services.store, "sessions/") == {live}


def test_orphans_are_deleted_on_both_stores(sweep_services: Services) -> None:
    services = sweep_services
    session = new_session(services)
    live = stored_file(services, session)
    orphans = orphan_keys(3)
    put_objects(services.store, orphans)
    report = sweep(services)
    assert report.deleted_objects == 3
    assert all_keys(services.store) == {live}


def test_objects_younger_than_the_grace_period_survive(sweep_services: Services) -> None:
    services = sweep_services
    clock = FakeClock()
    sweeper = make_sweeper(services, grace=GRACE, clock=clock)
    orphans = orphan_keys(5)
    put_objects(services.store, orphans)

    report = sweep(services, sweeper, grace=GRACE, now=clock.now)
    assert (report.scanned_objects, report.deleted_objects) == (5, 0)
    assert all_keys(services.store) == set(orphans)

    clock.advance(GRACE - timedelta(minutes=1))
    assert sweep(services, sweeper, grace=GRACE, now=clock.now).deleted_objects == 0
    assert all_keys(services.store) == set(orphans)

    clock.advance(timedelta(minutes=2))
    report = sweep(services, sweeper, grace=GRACE, now=clock.now)
    assert report.deleted_objects == 5
    assert all_keys(services.store) == set()


def test_the_configured_grace_period_is_used(make_file_services) -> None:
    services = make_file_services()  # CHAT_APP_ORPHAN_GRACE_MINUTES defaults to 60
    put_objects(services.store, orphan_keys(2))
    started = utcnow()
    report = services.sweeper.run(SWEEP_CTX)
    assert (report.scanned_objects, report.deleted_objects) == (2, 0)
    assert len(all_keys(services.store)) == 2
    assert_storage_invariants(services.engine, services.store, older_than=started - GRACE)


FOREIGN = [
    "sessions/readme.txt",
    "sessions/not-a-uuid/x",
    f"sessions/{uuid.uuid4()}",
    f"sessions/{uuid.uuid4()}/{uuid.uuid4()}/extra",
    f"sessions/{uuid.uuid4()}/not-a-uuid",
    f"sessions/{uuid.uuid1()}/{uuid.uuid4()}",  # version-1 session id
    f"sessions/{str(uuid.uuid4()).upper()}/{str(uuid.uuid4()).upper()}",
]
OUTSIDE = ["other/thing", "sessionsx/y", "readme.txt", "session/a/b"]


def test_foreign_keys_under_sessions_are_deleted_after_the_grace_period(
    sweep_services: Services,
) -> None:
    services = sweep_services
    clock = FakeClock()
    sweeper = make_sweeper(services, grace=GRACE, clock=clock)
    put_objects(services.store, FOREIGN + OUTSIDE)

    assert sweep(services, sweeper, grace=GRACE, now=clock.now).deleted_objects == 0
    assert all_keys(services.store) == set(FOREIGN + OUTSIDE)

    clock.advance(GRACE + timedelta(minutes=1))
    report = sweep(services, sweeper, grace=GRACE, now=clock.now)
    assert (report.scanned_objects, report.deleted_objects) == (len(FOREIGN), len(FOREIGN))
    assert all_keys(services.store) == set(OUTSIDE)  # nothing outside sessions/ is touched


def test_a_key_that_borrows_a_live_file_id_is_still_an_orphan(sweep_services: Services) -> None:
    services = sweep_services
    session = new_session(services)
    live = stored_file(services, session)
    file_id = live.rsplit("/", 1)[1]
    forged = f"sessions/{uuid.uuid4()}/{file_id}"
    put_object(services.store, forged)
    assert sweep(services).deleted_objects == 1
    assert all_keys(services.store) == {live}


def test_live_files_of_active_sessions_are_never_deleted(sweep_services: Services) -> None:
    services = sweep_services
    sessions = [new_session(services) for _ in range(3)]
    keys = {stored_file(services, s, f"{i}.txt", f"{i}\n".encode())
            for i, s in enumerate(sessions)}
    upload = begin_upload(services.files, sessions[0].uuid, "in-flight.txt", CTX)
    upload.feed(b"p" * SNIFF_BYTES)  # young `pending` row
    report = sweep(services, make_sweeper(services, grace=GRACE), grace=GRACE)
    assert (report.deleted_objects, report.retired_pending, report.purged_files) == (0, 0, 0)
    assert all_keys(services.store) == keys
    view = upload.finish()  # the young upload completes normally
    assert file_row(services.engine, view.id).status == FILE_STORED


# --- dry run ------------------------------------------------------------------------------------


def test_a_dry_run_changes_nothing_and_predicts_the_real_run(sweep_services: Services) -> None:
    services = sweep_services
    flaky = FlakyStore(services.store)
    services.files.store = flaky  # deletes of the reset below fail: its rows stay `deleting`
    live_session = new_session(services)
    stored_file(services, live_session)
    expired = new_session(services)
    stored_file(services, expired, "1.txt")
    stored_file(services, expired, "2.txt")
    services.sessions.expire(expired.uuid, CTX, reason="idle")
    reset = new_session(services)
    stored_file(services, reset)
    flaky.break_deletes()
    services.sessions.reset(reset.uuid, CTX)
    flaky.break_deletes(False)
    idle = new_session(services)
    stored_file(services, idle)
    age_session(services, idle, idle_days=15)
    insert_pending(services, live_session, age=timedelta(hours=2), with_object=True)
    insert_pending(services, expired, age=timedelta(hours=2), with_object=True)
    put_objects(services.store, [*orphan_keys(3), "sessions/foreign"])

    def snapshot() -> tuple[set[str], list[tuple[str, str]], list[tuple[str, str]]]:
        with Session(services.engine) as db:
            files = sorted((r.id, r.status) for r in db.exec(select(SessionFile)))
            users = sorted((r.uuid, r.status) for r in db.exec(select(UserSession)))
        return all_keys(services.store), files, users

    before = snapshot()
    dry = sweep(services, dry_run=True)
    assert snapshot() == before
    assert len(audit_rows(services.engine, event="session.expired")) == 1  # the expire above
    assert (dry.expired_sessions, dry.purged_files, dry.retired_pending) == (1, 4, 2)
    assert dry.deleted_objects == 5  # 3 orphans, a foreign key, the expired session's pending

    real = sweep(services)
    assert {k: getattr(dry, k) for k in COUNTS} == {k: getattr(real, k) for k in COUNTS}
    # The real run lists the store after purging the ended sessions' files.
    assert dry.scanned_objects == real.scanned_objects + real.purged_files
    assert session_keys(services.store, expired.uuid) == []
    assert session_keys(services.store, reset.uuid) == []
    assert session_keys(services.store, idle.uuid) == []
    assert len(all_keys(services.store)) == 1  # the live session's stored file


# --- expiry and purge of ended sessions ----------------------------------------------------------


def test_idle_and_old_sessions_expire_and_their_files_are_purged(
    sweep_services: Services,
) -> None:
    services = sweep_services
    idle, old, fresh = new_session(services), new_session(services), new_session(services)
    idle_keys = {stored_file(services, idle, "a.txt"), stored_file(services, idle, "b.txt")}
    old_key = stored_file(services, old)
    fresh_key = stored_file(services, fresh)
    age_session(services, idle, idle_days=14.01)
    age_session(services, old, age_days=90.01)  # used a minute ago, but past the absolute limit
    assert all_keys(services.store) == idle_keys | {old_key, fresh_key}

    report = sweep(services)
    assert (report.expired_sessions, report.purged_files) == (2, 3)
    assert all_keys(services.store) == {fresh_key}
    with Session(services.engine) as db:
        ended = {r.id: (r.status, r.end_reason) for r in db.exec(select(UserSession))}
    assert ended[idle.id] == (SESSION_EXPIRED, "idle")
    assert ended[old.id] == (SESSION_EXPIRED, "max_age")
    assert ended[fresh.id][0] == SESSION_ACTIVE
    for session in (idle, old):
        assert {r.status for r in file_rows(services.engine, session.id)} == {FILE_DELETED}
        assert len(audit_rows(services.engine, session_id=session.id, event="session.expired")) == 1
        assert len(audit_rows(services.engine, session_id=session.id, event="files.purged")) == 1
        with pytest.raises(SessionNotFound):
            services.files.list_files(session.uuid, CTX)
    assert [f.filename for f in services.files.list_files(fresh.uuid, CTX)] == ["f.txt"]


def test_a_clock_past_the_idle_limit_expires_every_session(sweep_services: Services) -> None:
    services = sweep_services
    sessions = [new_session(services) for _ in range(3)]
    for session in sessions:
        stored_file(services, session)
    clock = FakeClock()
    clock.advance(timedelta(days=14, seconds=1))
    report = sweep(services, make_sweeper(services, clock=clock))
    assert (report.expired_sessions, report.purged_files) == (3, 3)
    assert all_keys(services.store) == set()
    again = sweep(services, make_sweeper(services, clock=clock))
    assert (again.expired_sessions, again.purged_files, again.deleted_objects) == (0, 0, 0)


def test_files_a_reset_could_not_purge_are_purged_by_the_sweep(sweep_services: Services) -> None:
    services = sweep_services
    flaky = FlakyStore(services.store)
    services.files.store = flaky
    session = new_session(services)
    keys = {stored_file(services, session, f"{i}.txt") for i in range(3)}
    flaky.break_deletes()
    services.sessions.reset(session.uuid, CTX)
    assert {r.status for r in file_rows(services.engine, session.id)} == {FILE_DELETING}
    assert all_keys(services.store) == keys

    flaky.break_deletes(False)
    report = sweep(services, make_sweeper(services, grace=GRACE), grace=GRACE)  # no grace here
    assert report.purged_files == 3
    assert all_keys(services.store) == set()
    assert {r.status for r in file_rows(services.engine, session.id)} == {FILE_DELETED}


def test_a_user_delete_the_store_refused_is_finished_by_the_sweep(
    sweep_services: Services,
) -> None:
    services = sweep_services
    flaky = FlakyStore(services.store)
    services.files.store = flaky
    session = new_session(services)
    gone = upload_bytes(services, session.uuid, "gone.txt", b"bye\n")
    kept_key = stored_file(services, session, "kept.txt")
    flaky.break_deletes()
    with pytest.raises(StorageUnavailable):
        services.files.delete_file(session.uuid, gone.id, CTX)
    assert file_row(services.engine, gone.id).status == FILE_DELETING

    flaky.break_deletes(False)
    report = sweep(services, make_sweeper(services, grace=GRACE), grace=GRACE)
    assert report.purged_files == 1
    assert file_row(services.engine, gone.id).status == FILE_DELETED
    # The session is still active: its other files are untouched.
    assert all_keys(services.store) == {kept_key}
    assert [v.filename for v in services.files.list_files(session.uuid, CTX)] == ["kept.txt"]


def test_a_sweep_racing_a_resets_purge_counts_each_file_once(sweep_services: Services) -> None:
    # Found by the model check: both purges wrote `files.purged` for the same rows.
    services = sweep_services
    paused = PausingStore(services.store)
    services.files.store = paused
    session = new_session(services)
    for name in ("a.txt", "b.txt"):
        stored_file(services, session, name)
    paused.pause_next_delete()
    with ThreadPoolExecutor(max_workers=1) as pool:
        resetting = pool.submit(services.sessions.reset, session.uuid, CTX)
        assert paused.paused.wait(timeout=30)  # committed; its purge holds the `deleting` rows
        report = sweep(services)  # a worker's background sweep purges them first
        paused.release()
        assert resetting.result(timeout=30).erased_files == 2
    assert report.purged_files == 2
    assert {r.status for r in file_rows(services.engine, session.id)} == {FILE_DELETED}
    purged = audit_rows(services.engine, session_id=session.id, event="files.purged")
    assert sum(row.details["files"] for row in purged) == 2


# --- stale pending rows ---------------------------------------------------------------------------


@pytest.mark.parametrize("with_object", [False, True])
def test_stale_pending_rows_are_retired(sweep_services: Services, with_object: bool) -> None:
    services = sweep_services
    session = new_session(services)
    stale = insert_pending(services, session, age=GRACE + timedelta(minutes=1),
                           with_object=with_object)
    young = insert_pending(services, session, age=timedelta(minutes=5), with_object=False)

    report = sweep(services, make_sweeper(services, grace=GRACE), grace=GRACE)
    assert report.retired_pending == 1
    assert file_row(services.engine, stale.id).status == FILE_FAILED
    assert file_row(services.engine, young.id).status == FILE_PENDING
    assert all_keys(services.store) == set()


def test_an_upload_retired_while_in_flight_never_becomes_stored(sweep_services: Services) -> None:
    services = sweep_services
    session = new_session(services)
    upload = begin_upload(services.files, session.uuid, "slow.txt", CTX)
    upload.feed(b"s" * SNIFF_BYTES)
    [row] = file_rows(services.engine, session.id)
    clock = FakeClock()
    clock.advance(GRACE + timedelta(minutes=1))
    report = sweep(services, make_sweeper(services, grace=GRACE, clock=clock), grace=GRACE,
                   now=clock.now)
    assert report.retired_pending == 1
    assert file_row(services.engine, row.id).status == FILE_FAILED

    with pytest.raises(AppError):
        upload.finish()
    assert file_row(services.engine, row.id).status == FILE_FAILED
    assert all_keys(services.store) == set()


# --- store failures ------------------------------------------------------------------------------


def test_objects_the_store_fails_to_delete_are_reported_and_retried(
    sweep_services: Services,
) -> None:
    services = sweep_services
    flaky = FlakyStore(services.store)
    services.files.store = flaky
    orphans = orphan_keys(5)
    put_objects(services.store, orphans)
    flaky.fail_next_delete(lambda keys: sorted(keys)[:2])

    report = services.sweeper.run(SWEEP_CTX)
    assert (report.deleted_objects, report.errors, report.error_kinds) == (3, 2, ["delete_failed"])
    assert all_keys(services.store) == set(sorted(orphans)[:2])

    again = sweep(services)
    assert (again.deleted_objects, again.errors) == (2, 0)
    assert all_keys(services.store) == set()


def test_a_store_outage_is_reported_not_raised(sweep_services: Services) -> None:
    services = sweep_services
    flaky = FlakyStore(services.store)
    services.files.store = flaky
    put_objects(services.store, orphan_keys(2))
    flaky.break_deletes()
    report = services.sweeper.run(SWEEP_CTX)
    assert report.errors >= 1
    assert "storage-unavailable" in report.error_kinds
    [completed] = audit_rows(services.engine, event="sweep.completed")
    assert completed.details["errors"] == report.errors
    flaky.break_deletes(False)
    assert sweep(services).deleted_objects == 2


def test_the_audit_row_carries_the_report(sweep_services: Services) -> None:
    services = sweep_services
    put_objects(services.store, orphan_keys(2))
    dry = sweep(services, dry_run=True)
    real = sweep(services)
    rows = audit_rows(services.engine, event="sweep.completed")
    assert [(r.actor, r.session_id, r.details["dry_run"]) for r in rows] == [
        ("sweep", None, True), ("sweep", None, False)]
    for row, report in zip(rows, [dry, real], strict=True):
        expected = report.as_dict()
        expected.pop("error_kinds")
        assert row.details == expected


def put_raw(store: ObjectStore, key: str) -> None:
    """Write an object under a key the store's API would refuse (an operator's doing)."""
    if isinstance(store, S3Store):
        store.client.put_object(Bucket=store.bucket, Key=key, Body=b"by hand")
        return
    assert isinstance(store, LocalStore)
    path = store.root.joinpath(*key.split("/"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"by hand")


def test_keys_the_store_refuses_do_not_stop_the_sweep(sweep_services: Services) -> None:
    services = sweep_services
    invalid = ["sessions/a b", "sessions/\u00fcn\u00efcode", "sessions/x/a;b"]
    for key in invalid:
        put_raw(services.store, key)
    assert set(invalid) <= all_keys(services.store)
    orphans = orphan_keys(2)
    put_objects(services.store, orphans)
    session = new_session(services)
    stale = insert_pending(services, session, age=timedelta(hours=2), with_object=False)

    dry = services.sweeper.run(SWEEP_CTX, dry_run=True)
    report = services.sweeper.run(SWEEP_CTX)
    for run in (dry, report):
        assert (run.deleted_objects, run.errors) == (2, len(invalid))
        assert run.error_kinds == ["invalid_key"]
        assert run.retired_pending == 1  # the later stage still ran
    assert all_keys(services.store) == set(invalid)
    assert file_row(services.engine, stale.id).status == FILE_FAILED
    assert len(audit_rows(services.engine, event="sweep.completed")) == 2


# --- the invariant checks themselves can fail ----------------------------------------------------


def test_the_invariant_checks_detect_violations(sweep_services: Services) -> None:
    services = sweep_services
    active, ended = new_session(services), new_session(services)
    live = stored_file(services, active, "live.txt")
    lost = stored_file(services, active, "lost.txt")
    left = stored_file(services, ended, "left.txt")
    services.sessions.expire(ended.uuid, CTX, reason="idle")  # its file is not purged yet
    orphan = orphan_keys(1)[0]
    put_object(services.store, orphan)
    services.store.delete_many([lost])  # a `stored` row without its object
    later = utcnow() + timedelta(seconds=1)

    assert stored_rows_without_objects(services.engine, services.store) == [lost]
    with pytest.raises(AssertionError, match="invariant 2"):
        assert_stored_rows_have_objects(services.engine, services.store)
    assert sorted(stale_orphans(services.engine, services.store, older_than=later)) == sorted(
        [left, orphan])
    with pytest.raises(AssertionError, match="invariant 3"):
        assert_no_stale_orphans(services.engine, services.store, older_than=later)
    # Younger than the cutoff: not (yet) the sweep's business.
    an_hour_ago = later - timedelta(hours=1)
    assert stale_orphans(services.engine, services.store, older_than=an_hour_ago) == []
    assert live not in stale_orphans(services.engine, services.store, older_than=later)
