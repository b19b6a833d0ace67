"""LocalStore: objects as files under one folder, with S3's semantics, served by an app route."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from chat_app.storage.base import (
    CHUNK_SIZE,
    ObjectNotFound,
    ObjectStore,
    ObjectWriter,
    StorageUnavailable,
    StoredObject,
)
from chat_app.storage.keys import require_key, require_prefix
from chat_app.storage.signing import UrlSigner

# Temp names start with "." so they can never equal a key segment and listings can skip them.
_TEMP_PREFIX = ".tmp-"
# The ways a read finds "no object here" in a folder tree that S3 would just call a missing key.
_MISSING = (FileNotFoundError, NotADirectoryError, IsADirectoryError)


def _fsync_dir(path: Path) -> None:
    """Persist a rename in `path` (a folder must be fsynced for a new entry to survive a crash)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_temp(folder: Path) -> tuple[int, str]:
    """Create a temp file in `folder` (creating the folder too); returns (fd, path)."""
    # A concurrent delete_many may prune the folder between mkdir and mkstemp: try again.
    for _ in range(3):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            return tempfile.mkstemp(dir=folder, prefix=_TEMP_PREFIX)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise StorageUnavailable() from exc
    raise StorageUnavailable()


class _LocalWriter(ObjectWriter):
    """Writes to a temp file beside the target; `commit` renames it into place atomically."""

    def __init__(self, path: Path) -> None:
        fd, temp = _make_temp(path.parent)
        self._path, self._temp = path, Path(temp)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")
        self._size = 0

    def _require_open(self) -> BinaryIO:
        if self._file is None:
            raise ValueError("the writer is already committed or aborted")
        return self._file

    def write(self, data: bytes) -> None:
        """Append bytes to the temp file."""
        file = self._require_open()
        try:
            file.write(data)
        except OSError as exc:
            self.abort()
            raise StorageUnavailable() from exc
        self._size += len(data)

    def commit(self) -> int:
        """fsync, then rename over the key: readers see the old object or the whole new one."""
        file = self._require_open()
        try:
            file.flush()
            os.fsync(file.fileno())
            file.close()
            os.replace(self._temp, self._path)
            self._file = None
            _fsync_dir(self._path.parent)
        except OSError as exc:
            self.abort()
            raise StorageUnavailable() from exc
        return self._size

    def abort(self) -> None:
        """Close and remove the temp file; a no-op after commit or a previous abort."""
        if self._file is None:
            return
        file, self._file = self._file, None
        with contextlib.suppress(OSError):
            file.close()
        with contextlib.suppress(OSError):
            self._temp.unlink(missing_ok=True)


def _read_chunks(file: BinaryIO) -> Iterator[bytes]:
    """Yield `file` in CHUNK_SIZE pieces, closing it when done or abandoned."""
    with file:
        while True:
            try:
                chunk = file.read(CHUNK_SIZE)
            except OSError as exc:
                raise StorageUnavailable() from exc
            if not chunk:
                return
            yield chunk


class LocalStore(ObjectStore):
    """A folder of files keyed like S3; downloads go through `url_prefix` with a signed token."""

    def __init__(
        self, root: Path, *, signer: UrlSigner, url_prefix: str = "/api/v1/blobs"
    ) -> None:
        self.root = Path(root)
        self.signer = signer
        self._url_prefix = url_prefix.rstrip("/")

    def _path(self, key: str) -> Path:
        # Validated keys are relative, ASCII and free of "..": joining cannot leave the root.
        return self.root.joinpath(*require_key(key).split("/"))

    def open_writer(self, key: str, content_type: str) -> ObjectWriter:
        """Start writing `key` (content type is not kept: downloads are always attachments)."""
        return _LocalWriter(self._path(key))

    def open(self, key: str) -> Iterator[bytes]:
        """The object's bytes in 1 MiB chunks; raises ObjectNotFound now, not on first read."""
        path = self._path(key)
        try:
            file = path.open("rb")
        except _MISSING:
            raise ObjectNotFound() from None
        except OSError as exc:
            raise StorageUnavailable() from exc
        return _read_chunks(file)

    def url(self, key: str, filename: str, expires_s: int) -> str:
        """The app route that serves `key` as `filename` until the token expires."""
        return f"{self._url_prefix}/{self.signer.sign(require_key(key), filename, expires_s)}"

    def delete_many(self, keys: Iterable[str]) -> list[str]:
        """Remove each key's file and prune emptied folders; missing keys count as deleted."""
        paths = [self._path(key) for key in keys]  # validate all before deleting any
        for path in paths:
            try:
                path.unlink()
            except _MISSING:
                continue
            except OSError as exc:
                raise StorageUnavailable() from exc
            self._prune(path.parent)
        return []

    def _prune(self, folder: Path) -> None:
        """Remove `folder` and its parents up to the root while they are empty."""
        while folder != self.root and self.root in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return  # not empty (or gone, or in use by a writer): leave it
            folder = folder.parent

    def iter_keys(self, prefix: str) -> Iterator[StoredObject]:
        """Every object whose key starts with `prefix`, in S3's order, one folder at a time."""
        require_prefix(prefix)
        head = prefix.rpartition("/")[0]
        start = self.root.joinpath(*head.split("/")) if head else self.root
        return self._walk(start, f"{head}/" if head else "", prefix)

    def _walk(self, folder: Path, base: str, prefix: str) -> Iterator[StoredObject]:
        try:
            with os.scandir(folder) as scan:
                entries = [entry for entry in scan if not entry.name.startswith(".")]
        except _MISSING:
            return
        except OSError as exc:
            raise StorageUnavailable() from exc
        # Sort folders as "name/" so the walk yields keys in S3's byte order ("a-b" < "a/c" < "a0").
        entries.sort(key=lambda e: e.name + "/" if e.is_dir(follow_symlinks=False) else e.name)
        for entry in entries:
            key = base + entry.name
            if entry.is_dir(follow_symlinks=False):
                if f"{key}/".startswith(prefix) or prefix.startswith(f"{key}/"):
                    yield from self._walk(Path(entry.path), f"{key}/", prefix)
            elif key.startswith(prefix) and entry.is_file(follow_symlinks=False):
                try:
                    info = entry.stat(follow_symlinks=False)
                except _MISSING:
                    continue  # deleted while we listed
                modified = datetime.fromtimestamp(info.st_mtime, tz=UTC)
                yield StoredObject(key=key, size=info.st_size, modified=modified)

    def exists(self, key: str) -> bool:
        """True when `key`'s file exists."""
        try:
            return stat.S_ISREG(self._path(key).stat().st_mode)
        except _MISSING:
            return False
        except OSError as exc:
            raise StorageUnavailable() from exc

    def check(self) -> None:
        """Raise StorageUnavailable unless the root folder can be created, written and read."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=self.root, prefix=_TEMP_PREFIX)
            os.close(fd)
            os.unlink(probe)
            with os.scandir(self.root) as scan:
                next(scan, None)
        except OSError as exc:
            raise StorageUnavailable() from exc
