"""S3Store: one bucket of any S3-compatible service through boto3 (AWS, MinIO, SeaweedFS, R2)."""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Iterable, Iterator
from datetime import UTC
from typing import Any

from botocore.client import BaseClient
from botocore.exceptions import ClientError

from chat_app.storage.base import (
    CHUNK_SIZE,
    ObjectNotFound,
    ObjectStore,
    ObjectWriter,
    StorageError,
    StorageUnavailable,
    StoredObject,
)
from chat_app.storage.keys import require_key, require_prefix
from chat_app.storage.s3_client import BOTO_ERRORS, make_s3_client, translate, translated
from chat_app.storage.s3_writer import PARTS_IN_FLIGHT, S3Writer
from chat_app.storage.signing import content_disposition

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
#: S3 refuses multipart parts below 5 MiB (except the last one).
MIN_PART_SIZE = 5 * MIB
#: DeleteObjects and ListObjectsV2 take or return at most this many keys per request.
BATCH_SIZE = 1000


def _batched(items: Iterable[str], size: int) -> Iterator[list[str]]:
    """Consecutive lists of at most `size` items (itertools.batched needs Python 3.12)."""
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def _read_body(body: Any) -> Iterator[bytes]:
    """Yield a GetObject body in CHUNK_SIZE pieces, closing the connection when done."""
    try:
        while True:
            with translated():
                chunk = body.read(CHUNK_SIZE)
            if not chunk:
                return
            yield chunk
    finally:
        body.close()


class S3Store(ObjectStore):
    """One bucket; every method is sync and blocking (callers wrap them in asyncio.to_thread)."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None,
        region: str,
        part_size: int = 8 * MIB,
        parts_in_flight: int = PARTS_IN_FLIGHT,
        connect_timeout_s: float = 3,
        read_timeout_s: float = 30,
        max_attempts: int = 3,
        client: BaseClient | None = None,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum)")
        self.bucket, self.region, self.part_size = bucket, region, part_size
        self.parts_in_flight = parts_in_flight
        self.client = client or make_s3_client(
            endpoint_url=endpoint_url, region=region, connect_timeout_s=connect_timeout_s,
            read_timeout_s=read_timeout_s, max_attempts=max_attempts,
        )

    def open_writer(self, key: str, content_type: str) -> ObjectWriter:
        """Start writing `key`; nothing is visible until commit."""
        return S3Writer(
            self.client, self.bucket, require_key(key), content_type, part_size=self.part_size,
            parts_in_flight=self.parts_in_flight,
        )

    def open(self, key: str) -> Iterator[bytes]:
        """The object's bytes in 1 MiB chunks; raises ObjectNotFound now, not on first read."""
        with translated(reading=True):
            response = self.client.get_object(Bucket=self.bucket, Key=require_key(key))
        return _read_body(response["Body"])

    def url(self, key: str, filename: str, expires_s: int) -> str:
        """A presigned GET that downloads `key` as an attachment named `filename`."""
        params = {
            "Bucket": self.bucket, "Key": require_key(key),
            "ResponseContentDisposition": content_disposition(filename),
        }
        with translated():
            return self.client.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=expires_s
            )

    def delete_many(self, keys: Iterable[str]) -> list[str]:
        """Delete in batches of 1000; returns the keys S3 reported as not deleted."""
        checked = [require_key(key) for key in keys]  # all valid before any is deleted
        failed: list[str] = []
        for batch in _batched(checked, BATCH_SIZE):
            with translated():
                response = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
                )
            for error in response.get("Errors", []):
                logger.warning("S3 did not delete an object: %s", error.get("Code"))
                failed.append(error["Key"])
        return failed

    def iter_keys(self, prefix: str) -> Iterator[StoredObject]:
        """Every object under `prefix`, fetched one page of 1000 at a time."""
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket, Prefix=require_prefix(prefix),
            PaginationConfig={"PageSize": BATCH_SIZE},
        )
        return self._iter_pages(iter(pages))

    def _iter_pages(self, pages: Iterator[dict[str, Any]]) -> Iterator[StoredObject]:
        while True:
            # Translate only the fetch: errors raised by the consumer are not ours to rename.
            with translated():
                page = next(pages, None)
            if page is None:
                return
            for item in page.get("Contents", []):
                modified = item["LastModified"].astimezone(UTC)
                yield StoredObject(key=item["Key"], size=item["Size"], modified=modified)

    def exists(self, key: str) -> bool:
        """True when HeadObject finds `key`."""
        try:
            with translated(reading=True):
                self.client.head_object(Bucket=self.bucket, Key=require_key(key))
        except ObjectNotFound:
            return False
        return True

    def check(self) -> None:
        """Raise StorageUnavailable unless the bucket answers HeadBucket."""
        try:
            with translated():
                self.client.head_bucket(Bucket=self.bucket)
        except StorageError as exc:
            raise StorageUnavailable() from exc

    def ensure_bucket(self) -> None:
        """Create the bucket unless it already exists."""
        with contextlib.suppress(StorageUnavailable):
            self.check()
            return
        options: dict[str, Any] = {}
        if self.region != "us-east-1":  # us-east-1 rejects an explicit LocationConstraint
            options["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            self.client.create_bucket(Bucket=self.bucket, **options)
        except ClientError as exc:
            # Another process of ours may have created it between the check and the create.
            if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                raise translate(exc) from exc
        except BOTO_ERRORS as exc:
            raise translate(exc) from exc
