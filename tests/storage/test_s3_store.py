"""S3Store against a real SeaweedFS: the shared contract, multipart details and network faults."""

from __future__ import annotations

import io
import os
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator

import httpx
import pytest
from botocore.exceptions import EndpointConnectionError
from botocore.model import OperationModel

from chat_app.storage.base import ObjectStore, StorageError, StorageUnavailable
from chat_app.storage.s3 import S3Store
from chat_app.storage.s3_writer import PARTS_IN_FLIGHT
from tests.faults import TcpProxy
from tests.seaweed import S3StoreFactory, SeaweedServer
from tests.storage.contract import MIB, ObjectStoreContract, put_bytes, read_all

PART = 5 * MIB
#: Small timeouts and one retry, so a dead link fails within a few seconds.
IMPATIENT = {"connect_timeout_s": 1.0, "read_timeout_s": 1.0, "max_attempts": 2}
#: Starts recording a store's S3 operation names into the returned list.
Recorder = Callable[[S3Store], list[str]]


class TestS3Store(ObjectStoreContract):
    @pytest.fixture
    def store(self, make_s3_store: S3StoreFactory) -> ObjectStore:
        return make_s3_store()

    @pytest.fixture
    def populate(
        self, seaweed: SeaweedServer, store: S3Store
    ) -> Callable[[list[str]], None]:
        """Bulk objects through SeaweedFS's filer: listing is under test here, not S3 writes."""
        return lambda keys: seaweed.fill(store.bucket, {key: key.encode() for key in keys})

    def fetch_url(self, store: ObjectStore, url: str) -> tuple[bytes, str]:
        """GET the presigned URL over HTTP, as the browser does after the redirect."""
        response = httpx.get(url, timeout=10)
        assert response.status_code == 200, response.text
        return response.content, response.headers["content-disposition"]


@pytest.fixture
def record_calls() -> Iterator[Recorder]:
    """Starts recording the S3 operations a store performs; the hook goes at teardown."""
    hooked: list[tuple[S3Store, Callable[..., None]]] = []

    def start(store: S3Store) -> list[str]:
        calls: list[str] = []

        def hook(model: OperationModel, **kwargs: object) -> None:
            calls.append(model.name)

        store.client.meta.events.register("before-call.s3", hook)
        hooked.append((store, hook))
        return calls

    yield start
    # Test clients are shared between tests: leave no hook behind.
    for store, hook in hooked:
        store.client.meta.events.unregister("before-call.s3", hook)


def test_small_object_is_one_put(make_s3_store: S3StoreFactory, record_calls: Recorder) -> None:
    store = make_s3_store()
    calls = record_calls(store)
    put_bytes(store, "k", os.urandom(PART - 1))
    assert calls == ["PutObject"]


def test_large_object_is_a_multipart_upload(
    make_s3_store: S3StoreFactory, record_calls: Recorder
) -> None:
    store = make_s3_store()
    calls = record_calls(store)
    data = os.urandom(2 * PART + 1)
    put_bytes(store, "k", data)
    assert calls == [
        "CreateMultipartUpload", "UploadPart", "UploadPart", "UploadPart",
        "CompleteMultipartUpload",
    ]
    assert read_all(store, "k") == data


def test_abort_cancels_the_multipart_upload(make_s3_store: S3StoreFactory) -> None:
    store = make_s3_store()
    writer = store.open_writer("k", "application/octet-stream")
    writer.write(os.urandom(PART + 1))
    writer.abort()
    assert store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []


@pytest.fixture
def hook_parts() -> Iterator[Callable[[S3Store, Callable[..., None]], None]]:
    """Runs a function before each UploadPart of a store; the hook goes at teardown."""
    hooked: list[tuple[S3Store, Callable[..., None]]] = []

    def start(store: S3Store, before_part: Callable[..., None]) -> None:
        store.client.meta.events.register("before-call.s3.UploadPart", before_part)
        hooked.append((store, before_part))

    yield start
    for store, hook in hooked:
        store.client.meta.events.unregister("before-call.s3.UploadPart", hook)


def test_writer_sends_parts_side_by_side_and_assembles_them_in_order(
    make_s3_store: S3StoreFactory, hook_parts: Callable[[S3Store, Callable[..., None]], None]
) -> None:
    store = make_s3_store()
    lock, sending, most = threading.Lock(), [0], [0]

    def slow_part(**_: object) -> None:
        with lock:
            sending[0] += 1
            most[0] = max(most[0], sending[0])
        time.sleep(0.1)  # long enough for the next part to start meanwhile
        with lock:
            sending[0] -= 1

    hook_parts(store, slow_part)
    data = os.urandom(6 * PART + 7)
    put_bytes(store, "k", data)
    assert most[0] == PARTS_IN_FLIGHT
    assert read_all(store, "k") == data


def test_a_part_failing_beside_others_aborts_the_whole_upload(
    make_s3_store: S3StoreFactory, hook_parts: Callable[[S3Store, Callable[..., None]], None]
) -> None:
    store = make_s3_store(**IMPATIENT)

    def third_part_fails(params: dict, **_: object) -> None:
        if str(params["query_string"]["partNumber"]) == "3":
            raise EndpointConnectionError(endpoint_url="http://s3.invalid")
        time.sleep(0.05)

    hook_parts(store, third_part_fails)
    writer = store.open_writer("k", "application/octet-stream")
    with pytest.raises(StorageUnavailable):
        for _ in range(6):
            writer.write(os.urandom(PART))
        writer.commit()
    assert store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []
    with pytest.raises(StorageError):
        read_all(store, "k")


def test_writer_memory_stays_near_its_parts_in_flight(make_s3_store: S3StoreFactory) -> None:
    store = make_s3_store()
    chunk = os.urandom(MIB)
    tracemalloc.start()
    try:
        writer = store.open_writer("k", "application/octet-stream")
        for _ in range(8 * PART // MIB):  # 40 MiB, 8 parts
            writer.write(chunk)
        writer.commit()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # The part filling, the parts being sent, plus small change; a copy of the part per upload
    # would add one more per part in flight.
    assert peak < (PARTS_IN_FLIGHT + 2) * PART, f"peak {peak / MIB:.1f} MiB"


def test_presigned_url_carries_the_expiry(make_s3_store: S3StoreFactory) -> None:
    url = make_s3_store().url("k", "f.txt", 300)
    assert "X-Amz-Expires=300" in url


def test_missing_bucket_is_unavailable(make_s3_store: S3StoreFactory) -> None:
    store = make_s3_store(create=False)
    with pytest.raises(StorageUnavailable):
        store.check()
    with pytest.raises(StorageError):
        put_bytes(store, "k", b"x")


def test_ensure_bucket_creates_it_once(make_s3_store: S3StoreFactory) -> None:
    store = make_s3_store(create=False)
    store.ensure_bucket()
    store.ensure_bucket()
    store.check()
    put_bytes(store, "k", b"x")
    assert read_all(store, "k") == b"x"


def test_objects_survive_a_server_restart(
    seaweed: SeaweedServer, make_s3_store: S3StoreFactory
) -> None:
    store = make_s3_store()
    put_bytes(store, "sessions/s/f", b"durable")
    seaweed.restart()
    assert read_all(store, "sessions/s/f") == b"durable"  # same client: it reconnects


def within(seconds: float, action: Callable[[], object]) -> float:
    """Run `action`, expecting StorageUnavailable within `seconds`; returns the time taken."""
    start = time.monotonic()
    with pytest.raises(StorageUnavailable):
        action()
    elapsed = time.monotonic() - start
    assert elapsed < seconds
    return elapsed


@pytest.fixture
def proxy(seaweed: SeaweedServer) -> Iterator[TcpProxy]:
    """A TcpProxy in front of SeaweedFS's S3 port."""
    with TcpProxy("127.0.0.1", seaweed.s3_port) as running:
        yield running


def test_cut_mid_upload_fails_fast_then_recovers(
    proxy: TcpProxy, make_s3_store: S3StoreFactory
) -> None:
    store = make_s3_store(endpoint_url=proxy.endpoint_url, **IMPATIENT)
    writer = store.open_writer("sessions/s/f", "application/octet-stream")
    writer.write(os.urandom(PART + 1))  # the first part is already uploaded
    proxy.cut()

    def finish() -> None:
        writer.write(os.urandom(PART))
        writer.commit()

    within(15, finish)
    proxy.restore()
    assert not store.exists("sessions/s/f")
    put_bytes(store, "sessions/s/g", b"after")
    assert read_all(store, "sessions/s/g") == b"after"
    assert [item.key for item in store.iter_keys("")] == ["sessions/s/g"]


def test_unreachable_store_raises_unavailable_everywhere(
    proxy: TcpProxy, make_s3_store: S3StoreFactory
) -> None:
    store = make_s3_store(endpoint_url=proxy.endpoint_url, **IMPATIENT)
    put_bytes(store, "k", b"x")
    proxy.cut()
    for action in (
        lambda: put_bytes(store, "k2", b"x"),
        lambda: store.open("k"),
        lambda: store.exists("k"),
        lambda: store.delete_many(["k"]),
        lambda: list(store.iter_keys("")),
        store.check,
    ):
        within(15, action)


def test_stalled_store_hits_the_read_timeout(
    proxy: TcpProxy, make_s3_store: S3StoreFactory
) -> None:
    store = make_s3_store(endpoint_url=proxy.endpoint_url, **IMPATIENT)
    put_bytes(store, "k", b"x")
    proxy.stall()
    elapsed = within(15, lambda: store.exists("k"))
    assert elapsed >= 1  # it waited for the read timeout, it was not refused
    proxy.restore()
    assert store.exists("k")


def test_cut_mid_download_raises_unavailable(
    proxy: TcpProxy, make_s3_store: S3StoreFactory
) -> None:
    store = make_s3_store(endpoint_url=proxy.endpoint_url, **IMPATIENT)
    put_bytes(store, "big", os.urandom(4 * PART))
    chunks = store.open("big")
    next(chunks)
    proxy.cut()
    within(15, lambda: list(chunks))


def test_store_works_from_many_threads(make_s3_store: S3StoreFactory) -> None:
    store = make_s3_store()
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            store.put(f"t/{n}", io.BytesIO(b"x" * n), n, "text/plain")
            assert read_all(store, f"t/{n}") == b"x" * n
        except BaseException as exc:  # collected: a thread's failure would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
