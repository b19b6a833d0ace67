"""The object-store interface (SPEC section 5): a few verbs, keys only, no domain knowledge."""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

from chat_app.errors import AppError, NotFound, ServiceUnavailable

#: Read size for streaming copies; also the granularity callers should write in.
CHUNK_SIZE = 1024 * 1024


class StorageError(AppError):
    """Root of the storage layer's errors."""

    status, type_slug = 503, "storage-error"


class ObjectNotFound(StorageError, NotFound):
    status, type_slug, toast_level = 404, "object-not-found", "warning"

    def __init__(self) -> None:
        super().__init__("The file's content is not in the store.")


class StorageUnavailable(StorageError, ServiceUnavailable):
    status, type_slug = 503, "storage-unavailable"

    def __init__(self) -> None:
        super().__init__("The file store is unavailable. Try again in a moment.")


@dataclass(frozen=True)
class StoredObject:
    """One listed object."""

    key: str
    size: int
    modified: datetime


class ObjectWriter(abc.ABC):
    """An object being written: bytes go in with `write`, then exactly one `commit` or `abort`.

    Nothing is visible under the key before `commit`; `abort` leaves nothing behind.
    """

    @abc.abstractmethod
    def write(self, data: bytes) -> None:
        """Append bytes (memory use stays bounded whatever the total size)."""

    @abc.abstractmethod
    def commit(self) -> int:
        """Make the object visible under its key; returns its size in bytes."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Discard everything written so far; safe to call more than once."""


class ObjectStore(abc.ABC):
    """What the file services need from a store; every failure is a StorageError subclass."""

    @abc.abstractmethod
    def open_writer(self, key: str, content_type: str) -> ObjectWriter:
        """Start writing the object `key`."""

    def put(self, key: str, stream: BinaryIO, size: int | None, content_type: str) -> int:
        """Store everything `stream` yields under `key`; returns the size written."""
        writer = self.open_writer(key, content_type)
        try:
            while chunk := stream.read(CHUNK_SIZE):
                writer.write(chunk)
            written = writer.commit()
        except BaseException:
            writer.abort()
            raise
        if size is not None and written != size:
            self.delete_many([key])
            raise ValueError(f"stream gave {written} bytes, expected {size}")
        return written

    @abc.abstractmethod
    def open(self, key: str) -> Iterator[bytes]:
        """The object's bytes in chunks; raises ObjectNotFound."""

    @abc.abstractmethod
    def url(self, key: str, filename: str, expires_s: int) -> str:
        """A short-lived download URL (attachment; RFC 6266 `filename*`) minted now."""

    @abc.abstractmethod
    def delete_many(self, keys: Iterable[str]) -> list[str]:
        """Delete `keys` (missing ones count as deleted); returns the keys that failed."""

    @abc.abstractmethod
    def iter_keys(self, prefix: str) -> Iterator[StoredObject]:
        """Every object under `prefix`, page by page (memory stays flat at any count)."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """True when `key` holds an object."""

    @abc.abstractmethod
    def check(self) -> None:
        """Raise StorageUnavailable unless the store answers."""
