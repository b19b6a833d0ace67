"""Files under faults: the store's link cut or stalled (S3 through a TCP proxy to SeaweedFS), a
reset racing an upload, and DeleteObjects failing for some keys (SPEC sections 4, 5 and 11).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chat_app.container import Services, build_services
from chat_app.errors import SessionNotFound
from chat_app.models import FILE_DELETED, FILE_DELETING, FILE_FAILED, FILE_STORED, utcnow
from chat_app.services.audit import RequestContext
from chat_app.services.file_rules import SNIFF_BYTES
from chat_app.services.uploads import begin_upload, upload_stream
from chat_app.storage.base import ObjectStore, StorageUnavailable
from chat_app.storage.s3 import S3Store
from tests.conftest import DB_KINDS
from tests.faults import TcpProxy
from tests.invariants import assert_storage_invariants, assert_stored_rows_have_objects
from tests.seaweed import REGION, S3StoreFactory, SeaweedServer
from tests.services.conftest import (
    CTX,
    FlakyStore,
    audit_rows,
    file_row,
    file_rows,
    fresh_database,
    new_session,
    session_keys,
    upload_bytes,
)
from tests.unit.test_file_rules import PNG

MIB = 2**20
SWEEP_CTX = RequestContext(actor="sweep", request_id="test-faults")
#: A dead link must fail an upload within this long (connect 1 s, read 2 s, no retries).
BOUND_S = 10


@pytest.fixture(params=DB_KINDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated database for this test alone: the sweeps below look at every row."""
    with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def proxy(seaweed: SeaweedServer) -> Iterator[TcpProxy]:
    with TcpProxy("127.0.0.1", seaweed.s3_port) as link:
        yield link


@pytest.fixture
def proxied(make_settings, make_s3_store: S3StoreFactory, proxy: TcpProxy) -> Services:
    """Services whose S3 store talks through `proxy`, with short timeouts and no retries."""
    store = make_s3_store(endpoint_url=proxy.endpoint_url, connect_timeout_s=1.0,
                          read_timeout_s=2.0, max_attempts=1)
    return build_services(make_settings(CHAT_APP_ORPHAN_GRACE_MINUTES=0), store=store)


@pytest.fixture
def direct(seaweed: SeaweedServer, proxied: Services) -> S3Store:
    """The same bucket reached without the proxy, to look at what really is in it."""
    assert isinstance(proxied.store, S3Store)
    return S3Store(proxied.store.bucket, endpoint_url=seaweed.endpoint_url, region=REGION,
                   client=seaweed.client())


def sweep_and_check(services: Services, store: ObjectStore) -> None:
    """A sweep (grace 0), then invariants 2 and 3 checked against the store directly."""
    started = utcnow()
    report = services.sweeper.run(SWEEP_CTX)
    assert report.errors == 0, report
    assert_storage_invariants(services.engine, store, older_than=started)


class CuttingStream(io.RawIOBase):
    """`size` bytes of a PNG; calls `at_offset` once the first `offset` bytes have been read."""

    def __init__(self, size: int, offset: int, at_offset: Callable[[], None]) -> None:
        self._data = PNG + b"\x00" * (size - len(PNG))
        self._pos = 0
        self._offset = offset
        self._at_offset: Callable[[], None] | None = at_offset

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._at_offset is not None and self._pos >= self._offset:
            hook, self._at_offset = self._at_offset, None
            hook()
        end = len(self._data) if size < 0 else self._pos + size
        chunk = self._data[self._pos:end]
        self._pos += len(chunk)
        return chunk


# --- the store's link fails mid-upload -----------------------------------------------------------


@pytest.mark.parametrize("fault", ["cut", "stall"])
def test_a_link_lost_mid_multipart_upload_fails_fast_and_leaves_no_stored_row(
    proxied: Services, proxy: TcpProxy, direct: S3Store, fault: str
) -> None:
    session = new_session(proxied)
    # Past one 5 MiB part: the multipart upload has started when the link goes.
    faulted: list[float] = []

    def break_link() -> None:
        getattr(proxy, fault)()
        faulted.append(time.monotonic())

    stream = CuttingStream(11 * MIB, 6 * MIB, break_link)  # fails writing the second part
    with pytest.raises(StorageUnavailable):
        upload_stream(proxied.files, session.uuid, "big.png", stream, CTX)  # type: ignore[arg-type]
    assert len(faulted) == 1
    assert time.monotonic() - faulted[0] < BOUND_S

    [row] = file_rows(proxied.engine, session.id)
    assert row.status == FILE_FAILED
    assert [r.details["reason"] for r in audit_rows(
        proxied.engine, session_id=session.id, event="file.rejected")] == ["store_error"]
    proxy.restore()
    assert session_keys(direct, session.uuid) == []
    assert proxied.files.list_files(session.uuid, CTX) == []
    assert_stored_rows_have_objects(proxied.engine, direct)
    sweep_and_check(proxied, direct)
    # The link is back: uploads work again.
    view = upload_bytes(proxied, session.uuid, "after.png", PNG)
    assert file_row(proxied.engine, view.id).status == FILE_STORED


@pytest.mark.parametrize("fault", ["cut", "stall"])
def test_a_link_lost_at_commit_fails_fast_and_leaves_no_stored_row(
    proxied: Services, proxy: TcpProxy, direct: S3Store, fault: str
) -> None:
    session = new_session(proxied)
    upload = begin_upload(proxied.files, session.uuid, "small.png", CTX)
    upload.feed(PNG + b"\x00" * SNIFF_BYTES)  # pending row, bytes buffered for one PutObject
    getattr(proxy, fault)()
    started = time.monotonic()
    with pytest.raises(StorageUnavailable):
        upload.finish()
    assert time.monotonic() - started < BOUND_S
    [row] = file_rows(proxied.engine, session.id)
    assert row.status == FILE_FAILED
    proxy.restore()
    assert not direct.exists(row.object_key)
    sweep_and_check(proxied, direct)


def test_a_reset_during_an_outage_succeeds_and_the_sweep_purges_later(
    proxied: Services, proxy: TcpProxy, direct: S3Store
) -> None:
    session = new_session(proxied)
    keys = {file_row(proxied.engine, upload_bytes(proxied, session.uuid, f"{i}.txt", b"x\n").id)
            .object_key for i in range(3)}
    proxy.cut()
    started = time.monotonic()
    result = proxied.sessions.reset(session.uuid, CTX)
    assert time.monotonic() - started < BOUND_S
    assert result.erased_files == 3
    assert {r.status for r in file_rows(proxied.engine, session.id)} == {FILE_DELETING}

    outage = proxied.sweeper.run(SWEEP_CTX)  # reported, not raised
    assert outage.errors >= 1 and "storage-unavailable" in outage.error_kinds
    proxy.restore()
    assert set(session_keys(direct, session.uuid)) == keys
    sweep_and_check(proxied, direct)
    assert session_keys(direct, session.uuid) == []
    assert {r.status for r in file_rows(proxied.engine, session.id)} == {FILE_DELETED}


def test_orphans_left_by_an_outage_are_swept_after_restore(
    proxied: Services, proxy: TcpProxy, direct: S3Store
) -> None:
    live_session, doomed = new_session(proxied), new_session(proxied)
    live = upload_bytes(proxied, live_session.uuid, "live.txt", b"live\n")
    upload_bytes(proxied, doomed.uuid, "doomed.txt", b"doomed\n")
    in_flight = begin_upload(proxied.files, doomed.uuid, "in-flight.png", CTX)
    in_flight.feed(PNG + b"\x00" * SNIFF_BYTES)
    proxy.cut()
    proxied.sessions.reset(doomed.uuid, CTX)
    with pytest.raises((StorageUnavailable, SessionNotFound)):
        in_flight.finish()
    proxy.restore()
    sweep_and_check(proxied, direct)
    assert session_keys(direct, doomed.uuid) == []
    assert session_keys(direct, live_session.uuid) == [
        file_row(proxied.engine, live.id).object_key]


# --- a reset committed while an upload is in flight ----------------------------------------------


@pytest.mark.parametrize("fed", [SNIFF_BYTES, 6 * MIB], ids=["one-put", "multipart"])
def test_a_reset_during_an_upload_fails_it_and_removes_its_object(
    make_file_services, fed: int
) -> None:
    services = make_file_services(CHAT_APP_ORPHAN_GRACE_MINUTES=0)
    session = new_session(services)
    kept = upload_bytes(services, session.uuid, "done.txt", b"done\n")
    upload = begin_upload(services.files, session.uuid, "in-flight.png", CTX)
    upload.feed(PNG + b"\x00" * fed)  # the row is `pending` and bytes are on their way
    [_, pending] = file_rows(services.engine, session.id)

    result = services.sessions.reset(session.uuid, CTX)  # another request, committed meanwhile
    assert result.erased_files == 1  # the stored file; the pending one is the upload's to fail

    upload.feed(b"\x00" * 1000)
    with pytest.raises(SessionNotFound):
        upload.finish()
    assert file_row(services.engine, pending.id).status == FILE_FAILED
    assert file_row(services.engine, kept.id).status == FILE_DELETED
    assert session_keys(services.store, session.uuid) == []
    reasons = [r.details["reason"] for r in audit_rows(
        services.engine, session_id=session.id, event="file.rejected")]
    assert reasons == ["session_ended"]
    # Only the file finished before the reset was ever announced as uploaded.
    assert len(audit_rows(services.engine, session_id=session.id, event="file.uploaded")) == 1
    sweep_and_check(services, services.store)


def test_an_upload_whose_session_ended_answers_404_even_when_the_store_cannot_delete(
    make_file_services, store: ObjectStore
) -> None:
    """The store fails the delete of an ended session's object (an outage that began after
    the object was written): the row is still failed and audited, the answer still "session
    ended", and the object is left to the sweep, not the row left `pending` behind a 503."""
    flaky = FlakyStore(store)
    services = make_file_services(store_override=flaky, CHAT_APP_ORPHAN_GRACE_MINUTES=0)
    session = new_session(services)
    upload = begin_upload(services.files, session.uuid, "in-flight.png", CTX)
    upload.feed(PNG + b"\x00" * SNIFF_BYTES)
    [pending] = file_rows(services.engine, session.id)
    services.sessions.reset(session.uuid, CTX)
    flaky.break_deletes()

    with pytest.raises(SessionNotFound):
        upload.finish()
    assert file_row(services.engine, pending.id).status == FILE_FAILED
    reasons = [r.details["reason"] for r in audit_rows(
        services.engine, session_id=session.id, event="file.rejected")]
    assert reasons == ["session_ended"]
    assert session_keys(store, session.uuid) == [pending.object_key]  # the sweep's now

    flaky.break_deletes(False)
    sweep_and_check(services, store)
    assert session_keys(store, session.uuid) == []


def test_a_reset_before_the_head_is_sniffed_leaves_no_row(make_file_services) -> None:
    services = make_file_services()
    session = new_session(services)
    upload = begin_upload(services.files, session.uuid, "early.txt", CTX)
    upload.feed(b"only a little")
    services.sessions.reset(session.uuid, CTX)
    with pytest.raises(SessionNotFound):
        upload.finish()
    assert file_rows(services.engine, session.id) == []
    assert session_keys(services.store, session.uuid) == []


# --- DeleteObjects fails for some keys -----------------------------------------------------------


def test_keys_a_purge_could_not_delete_stay_deleting_until_the_sweep(
    make_file_services, store: ObjectStore
) -> None:
    flaky = FlakyStore(store)
    services = make_file_services(store_override=flaky, CHAT_APP_ORPHAN_GRACE_MINUTES=0)
    session = new_session(services)
    views = [upload_bytes(services, session.uuid, f"{i}.txt", f"{i}\n".encode()) for i in range(4)]
    keys = sorted(file_row(services.engine, v.id).object_key for v in views)
    refused = keys[:2]
    flaky.fail_next_delete(lambda batch: [key for key in batch if key in refused])

    result = services.sessions.reset(session.uuid, CTX)
    assert result.erased_files == 4  # the reset itself succeeded
    status = {row.object_key: row.status for row in file_rows(services.engine, session.id)}
    assert status == {key: FILE_DELETING if key in refused else FILE_DELETED for key in keys}
    assert sorted(session_keys(store, session.uuid)) == refused
    [purged] = audit_rows(services.engine, session_id=session.id, event="files.purged")
    assert purged.details == {"files": 2, "bytes": 4, "failed": 2}

    report = services.sweeper.run(SWEEP_CTX)
    assert (report.purged_files, report.errors) == (2, 0)
    assert session_keys(store, session.uuid) == []
    assert {row.status for row in file_rows(services.engine, session.id)} == {FILE_DELETED}
    assert len(audit_rows(services.engine, session_id=session.id, event="files.purged")) == 2
    assert_storage_invariants(services.engine, store, older_than=utcnow())
