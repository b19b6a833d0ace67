"""LocalStore: the shared contract on a temp folder, plus what only a folder can get wrong."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chat_app.storage.base import ObjectNotFound, ObjectStore, StorageUnavailable
from chat_app.storage.local import LocalStore
from chat_app.storage.signing import UrlSigner, content_disposition
from tests.storage.contract import ObjectStoreContract, put_bytes, put_many, read_all

PREFIX = "/api/v1/blobs/"


def files_under(root: Path) -> list[str]:
    """Every file and folder below `root`, hidden ones included, as relative paths."""
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


@pytest.fixture
def local_store(tmp_path: Path) -> LocalStore:
    """A LocalStore in a fresh temp folder."""
    return LocalStore(tmp_path / "files", signer=UrlSigner(b"test-signing-secret"))


class TestLocalStore(ObjectStoreContract):
    @pytest.fixture
    def store(self, local_store: LocalStore) -> ObjectStore:
        return local_store

    def fetch_url(self, store: ObjectStore, url: str) -> tuple[bytes, str]:
        """What the blob route does: verify the token, then stream the key under its filename."""
        assert isinstance(store, LocalStore) and url.startswith(PREFIX)
        blob = store.signer.verify(url.removeprefix(PREFIX))
        return read_all(store, blob.key), content_disposition(blob.filename)


def test_url_token_maps_back_to_key_and_filename(local_store: LocalStore) -> None:
    url = local_store.url("sessions/s/f", "Ünïcödé.txt", 300)
    blob = local_store.signer.verify(url.removeprefix(PREFIX))
    assert (blob.key, blob.filename) == ("sessions/s/f", "Ünïcödé.txt")


def test_url_prefix_is_configurable(tmp_path: Path) -> None:
    store = LocalStore(tmp_path, signer=UrlSigner(b"s"), url_prefix="/files/")
    assert store.url("k", "f", 60).startswith("/files/")


def test_abort_removes_the_temp_file(local_store: LocalStore) -> None:
    writer = local_store.open_writer("sessions/s/f", "text/plain")
    writer.write(b"partial")
    assert len(files_under(local_store.root / "sessions" / "s")) == 1  # the hidden temp file
    writer.abort()
    assert files_under(local_store.root / "sessions" / "s") == []


def test_listing_skips_temp_files(local_store: LocalStore) -> None:
    writer = local_store.open_writer("sessions/s/f", "text/plain")
    writer.write(b"partial")
    put_bytes(local_store, "sessions/s/g", b"g")
    assert [item.key for item in local_store.iter_keys("sessions/")] == ["sessions/s/g"]
    writer.abort()


def test_delete_prunes_emptied_folders(local_store: LocalStore) -> None:
    put_bytes(local_store, "sessions/s1/a", b"a")
    put_bytes(local_store, "sessions/s1/b", b"b")
    put_bytes(local_store, "sessions/s2/c", b"c")
    local_store.delete_many(["sessions/s1/a"])
    assert files_under(local_store.root) == ["sessions", "sessions/s1", "sessions/s1/b",
                                             "sessions/s2", "sessions/s2/c"]
    local_store.delete_many(["sessions/s1/b", "sessions/s2/c"])
    assert files_under(local_store.root) == []
    assert local_store.root.is_dir()  # the root itself stays


def test_failed_commit_raises_unavailable_and_cleans_up(
    local_store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = local_store.open_writer("sessions/s/f", "text/plain")
    writer.write(b"data")

    def full_disk(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(StorageUnavailable):
        writer.commit()
    assert files_under(local_store.root / "sessions" / "s") == []


def test_unusable_root_makes_the_store_unavailable(tmp_path: Path) -> None:
    root = tmp_path / "not-a-folder"
    root.write_bytes(b"")
    store = LocalStore(root, signer=UrlSigner(b"s"))
    with pytest.raises(StorageUnavailable):
        store.check()
    with pytest.raises(StorageUnavailable):
        store.open_writer("sessions/s/f", "text/plain")


def test_check_creates_a_missing_root(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "new" / "files", signer=UrlSigner(b"s"))
    store.check()
    assert store.root.is_dir() and files_under(store.root) == []


def test_keys_never_escape_the_root(local_store: LocalStore, tmp_path: Path) -> None:
    put_bytes(local_store, "a/b", b"x")
    assert (local_store.root / "a" / "b").read_bytes() == b"x"
    assert files_under(tmp_path) == ["files", "files/a", "files/a/b"]


def test_a_folder_is_not_an_object(local_store: LocalStore) -> None:
    put_bytes(local_store, "sessions/s/f", b"x")
    with pytest.raises(ObjectNotFound):
        local_store.open("sessions/s")  # S3 has no folders: a missing key, not an OS error
    with pytest.raises(ObjectNotFound):
        local_store.open("sessions/s/f/g")


def test_listing_follows_s3_byte_order(local_store: LocalStore) -> None:
    keys = ["a/c", "a-b", "a0", "a.x", "a/b/c"]
    put_many(local_store, keys)
    # "-" < "." < "/" < "0": a folder sorts as "name/", not as "name".
    assert [item.key for item in local_store.iter_keys("")] == sorted(keys)
