"""What every ObjectStore must do (Django's SessionTestsMixin style): subclass, give a `store`."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

import pytest

from chat_app.storage.base import CHUNK_SIZE, ObjectNotFound, ObjectStore
from chat_app.storage.signing import content_disposition

MIB = 1024 * 1024
#: More than two 5 MiB parts (S3Store's part size in tests) plus an odd tail.
LARGE = 2 * 5 * MIB + 12_345
#: Non-ASCII, quotes and a backslash: what the ASCII fallback must survive.
FILENAME = 'Résumé "final" \\ 報告 100%.pdf'
BAD_KEYS = [
    "../x", "/abs", "a//b", "a/../b", "", "ünïcode", "a/", "a\n", ".hidden", "a/./b", "a b",
    "a\\b", "sessions/.tmp-x",
]
BAD_PREFIXES = ["../", "/x", "a//", "a/../", "ü", ".tmp"]


def put_bytes(store: ObjectStore, key: str, data: bytes) -> int:
    """Store `data` under `key` through ObjectStore.put."""
    return store.put(key, io.BytesIO(data), len(data), "application/octet-stream")


def read_all(store: ObjectStore, key: str) -> bytes:
    """Every byte of `key`."""
    return b"".join(store.open(key))


def put_many(store: ObjectStore, keys: Iterable[str]) -> None:
    """Store a tiny object under each key, eight at a time (S3 round trips dominate otherwise)."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda key: put_bytes(store, key, key.encode()), keys))


def chunks_of(data: bytes, size: int) -> Iterator[bytes]:
    """`data` cut into pieces of `size` bytes."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


class ObjectStoreContract:
    """Behaviour shared by every store; subclasses provide `store` and `fetch_url`."""

    @pytest.fixture
    def store(self) -> ObjectStore:
        raise NotImplementedError("subclasses of ObjectStoreContract must provide a store fixture")

    def fetch_url(self, store: ObjectStore, url: str) -> tuple[bytes, str]:
        """Download `url` as a browser would: (body, Content-Disposition header)."""
        raise NotImplementedError("subclasses of ObjectStoreContract must provide fetch_url()")

    @pytest.fixture
    def populate(self, store: ObjectStore) -> Callable[[list[str]], None]:
        """Stores many tiny objects (body = key) for listing tests; a backend may do it faster."""
        return lambda keys: put_many(store, keys)

    @pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE + 1])
    def test_put_then_open_returns_identical_bytes(self, store: ObjectStore, size: int) -> None:
        data = os.urandom(size)
        assert put_bytes(store, "sessions/s/f", data) == size
        assert read_all(store, "sessions/s/f") == data

    def test_writer_round_trips_more_than_one_part(self, store: ObjectStore) -> None:
        data = os.urandom(LARGE)
        writer = store.open_writer("sessions/s/big", "application/pdf")
        for chunk in chunks_of(data, 700_001):  # odd size: parts never align with writes
            writer.write(chunk)
        assert writer.commit() == LARGE
        pieces = list(store.open("sessions/s/big"))
        assert b"".join(pieces) == data
        assert max(len(piece) for piece in pieces) <= CHUNK_SIZE

    def test_put_overwrites(self, store: ObjectStore) -> None:
        put_bytes(store, "k", b"old")
        put_bytes(store, "k", b"new")
        assert read_all(store, "k") == b"new"

    def test_put_with_wrong_size_raises_and_keeps_nothing(self, store: ObjectStore) -> None:
        with pytest.raises(ValueError):
            store.put("k", io.BytesIO(b"abc"), 4, "text/plain")
        assert not store.exists("k")

    def test_nothing_is_visible_before_commit(self, store: ObjectStore) -> None:
        writer = store.open_writer("sessions/s/f", "application/octet-stream")
        writer.write(os.urandom(LARGE))  # past the first part: a multipart upload is under way
        assert not store.exists("sessions/s/f")
        assert list(store.iter_keys("")) == []
        with pytest.raises(ObjectNotFound):
            store.open("sessions/s/f")
        writer.commit()
        assert store.exists("sessions/s/f")

    def test_abort_leaves_nothing(self, store: ObjectStore) -> None:
        writer = store.open_writer("sessions/s/f", "application/octet-stream")
        writer.write(os.urandom(LARGE))
        writer.abort()
        writer.abort()  # harmless twice
        assert not store.exists("sessions/s/f")
        assert list(store.iter_keys("")) == []

    def test_writer_refuses_use_after_commit(self, store: ObjectStore) -> None:
        writer = store.open_writer("k", "text/plain")
        writer.write(b"x")
        writer.commit()
        writer.abort()  # a no-op now: the object stays
        with pytest.raises(ValueError):
            writer.write(b"y")
        assert read_all(store, "k") == b"x"

    def test_exists(self, store: ObjectStore) -> None:
        assert not store.exists("sessions/s/f")
        put_bytes(store, "sessions/s/f", b"x")
        assert store.exists("sessions/s/f")
        assert not store.exists("sessions/s")  # a "folder" is not an object

    def test_open_missing_raises_object_not_found(self, store: ObjectStore) -> None:
        with pytest.raises(ObjectNotFound):
            store.open("sessions/none/f")

    def test_delete_many_is_idempotent(self, store: ObjectStore) -> None:
        put_bytes(store, "sessions/s/a", b"a")
        put_bytes(store, "sessions/s/b", b"b")
        assert store.delete_many(["sessions/s/a", "sessions/s/missing"]) == []
        assert store.delete_many(["sessions/s/a"]) == []
        assert store.delete_many([]) == []
        assert not store.exists("sessions/s/a")
        assert read_all(store, "sessions/s/b") == b"b"

    @pytest.mark.parametrize("count", [0, 1, 1001, 2500])
    def test_iter_keys_lists_every_object(
        self, store: ObjectStore, populate: Callable[[list[str]], None], count: int
    ) -> None:
        keys = [f"bulk/{i:05d}" for i in range(count)]
        populate([*keys, "bulky", "other/1"])
        listed = list(store.iter_keys("bulk/"))
        assert [item.key for item in listed] == keys
        assert all(item.size == len(item.key) for item in listed)

    def test_iter_keys_separates_prefixes(self, store: ObjectStore) -> None:
        keys = ["other/1", "sessions/a/1", "sessions/ab/1", "sessions/b/1"]
        put_many(store, keys)

        def listed(prefix: str) -> list[str]:
            return [item.key for item in store.iter_keys(prefix)]

        assert listed("sessions/a/") == ["sessions/a/1"]
        assert listed("sessions/a") == ["sessions/a/1", "sessions/ab/1"]
        assert listed("") == keys
        assert listed("nothing/") == []

    def test_iter_keys_reports_metadata(self, store: ObjectStore) -> None:
        keys = ["a/c", "a-b", "a0", "a.x", "a/b/c"]
        put_many(store, keys)
        listed = list(store.iter_keys(""))
        # Order is not part of the contract: SeaweedFS lists "folders" first, AWS in byte order.
        assert sorted(item.key for item in listed) == sorted(keys)
        now = datetime.now(UTC)
        for item in listed:
            assert item.modified.tzinfo is not None
            assert abs(item.modified - now) < timedelta(minutes=1)

    def test_iter_keys_is_lazy(self, store: ObjectStore) -> None:
        listing = store.iter_keys("")
        assert isinstance(listing, Iterator) and not isinstance(listing, list)

    def test_url_downloads_the_bytes_as_an_attachment(self, store: ObjectStore) -> None:
        put_bytes(store, "sessions/s/f", b"%PDF-1.7 body")
        url = store.url("sessions/s/f", FILENAME, 300)
        body, disposition = self.fetch_url(store, url)
        assert body == b"%PDF-1.7 body"
        assert disposition == content_disposition(FILENAME)
        assert disposition.startswith('attachment; filename="')
        assert unquote(disposition.split("filename*=UTF-8''")[1]) == FILENAME

    @pytest.mark.parametrize("key", BAD_KEYS)
    def test_invalid_keys_are_rejected(self, store: ObjectStore, key: str) -> None:
        for call in (
            lambda: store.open_writer(key, "text/plain"),
            lambda: put_bytes(store, key, b"x"),
            lambda: store.open(key),
            lambda: store.url(key, "f.txt", 60),
            lambda: store.exists(key),
            lambda: store.delete_many(["ok", key]),
        ):
            with pytest.raises(ValueError):
                call()
        assert list(store.iter_keys("")) == []

    @pytest.mark.parametrize("prefix", BAD_PREFIXES)
    def test_invalid_prefixes_are_rejected(self, store: ObjectStore, prefix: str) -> None:
        with pytest.raises(ValueError):
            store.iter_keys(prefix)

    def test_check_passes_when_the_store_answers(self, store: ObjectStore) -> None:
        store.check()
