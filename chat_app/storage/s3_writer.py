"""S3Writer: streams an object to S3 holding at most one part in memory."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from botocore.client import BaseClient

from chat_app.storage.base import ObjectWriter, StorageError
from chat_app.storage.s3_client import translated

logger = logging.getLogger(__name__)


class S3Writer(ObjectWriter):
    """Buffers at most one part: a single PutObject when small, a multipart upload otherwise."""

    def __init__(
        self, client: BaseClient, bucket: str, key: str, content_type: str, *, part_size: int
    ) -> None:
        self._client, self._bucket, self._key = client, bucket, key
        self._content_type = content_type
        self._part_size = part_size
        self._buffer = bytearray()
        self._parts: list[dict[str, Any]] = []
        self._upload_id: str | None = None
        self._size = 0
        self._closed = False

    def _require_open(self) -> None:
        if self._closed:
            raise ValueError("the writer is already committed or aborted")

    def write(self, data: bytes) -> None:
        """Buffer `data`, uploading each part as soon as it is full."""
        self._require_open()
        view = memoryview(data)
        while view:
            room = self._part_size - len(self._buffer)
            self._buffer += view[:room]
            view = view[room:]
            if len(self._buffer) == self._part_size:
                self._guarded(self._upload_part)
        self._size += len(data)

    def commit(self) -> int:
        """Upload what is buffered and make the object visible; returns its size."""
        self._require_open()
        self._guarded(self._finish)
        self._closed = True
        return self._size

    def abort(self) -> None:
        """Drop the buffer and abort the multipart upload, if one was started."""
        if self._closed:
            return
        self._closed, self._buffer = True, bytearray()
        if self._upload_id is None:
            return
        try:
            with translated():
                self._client.abort_multipart_upload(
                    Bucket=self._bucket, Key=self._key, UploadId=self._upload_id
                )
        except StorageError:
            # Never visible anyway; a bucket lifecycle rule should reap incomplete uploads.
            logger.warning("could not abort a multipart upload; its parts stay until reaped")

    def _guarded(self, step: Callable[[], None]) -> None:
        """Run an upload step; on any failure abort the upload and raise a StorageError."""
        try:
            with translated():
                step()
        except BaseException:
            self.abort()
            raise

    def _upload_part(self) -> None:
        if self._upload_id is None:
            created = self._client.create_multipart_upload(
                Bucket=self._bucket, Key=self._key, ContentType=self._content_type
            )
            self._upload_id = created["UploadId"]
        number = len(self._parts) + 1
        # Hand the buffer over and start a new one, so at most one part is held at a time.
        body, self._buffer = self._buffer, bytearray()
        uploaded = self._client.upload_part(
            Bucket=self._bucket, Key=self._key, UploadId=self._upload_id,
            PartNumber=number, Body=body,
        )
        self._parts.append({"ETag": uploaded["ETag"], "PartNumber": number})

    def _finish(self) -> None:
        if self._upload_id is None:
            self._client.put_object(
                Bucket=self._bucket, Key=self._key, Body=self._buffer,
                ContentType=self._content_type,
            )
            return
        if self._buffer:
            self._upload_part()
        self._client.complete_multipart_upload(
            Bucket=self._bucket, Key=self._key, UploadId=self._upload_id,
            MultipartUpload={"Parts": self._parts},
        )
