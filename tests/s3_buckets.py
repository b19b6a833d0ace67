"""Buckets for S3 tests: shared clients with test credentials and a factory of clean buckets."""

from __future__ import annotations

import contextlib
import functools
import uuid
from typing import TYPE_CHECKING

from botocore.client import BaseClient

from chat_app.storage.s3 import MIN_PART_SIZE, S3Store
from chat_app.storage.s3_client import make_s3_client

if TYPE_CHECKING:
    from tests.seaweed import SeaweedServer

#: SeaweedFS without an identity config accepts any credentials; these never leave the tests.
ACCESS_KEY_ID = "chat-app-test"
SECRET_ACCESS_KEY = "chat-app-test-secret"
REGION = "us-east-1"


@functools.cache
def cached_client(endpoint_url: str, **options: float) -> BaseClient:
    """A cached client with the test credentials: building one costs ~0.3 s of model loading."""
    return make_s3_client(
        endpoint_url=endpoint_url, region=REGION,
        aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY, **options,
    )


def empty_bucket(client: BaseClient, bucket: str) -> None:
    """Delete every object and unfinished multipart upload in `bucket`."""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])


def drop_bucket(client: BaseClient, bucket: str) -> None:
    """Delete `bucket` with its contents (SeaweedFS allows it; otherwise empty it first)."""
    try:
        client.delete_bucket(Bucket=bucket)
    except client.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "BucketNotEmpty":
            raise
        empty_bucket(client, bucket)
        client.delete_bucket(Bucket=bucket)


class S3StoreFactory:
    """Makes S3Stores, each on a bucket no other test is using; `cleanup` empties them."""

    def __init__(self, server: SeaweedServer) -> None:
        self.server = server
        self.admin = server.client()
        self._pooled: list[str] = []
        self._named: list[str] = []

    def _bucket(self, bucket: str | None, create: bool) -> str:
        if bucket is None and create:
            if self.server.spare_buckets:
                name = self.server.spare_buckets.pop()
            else:
                name = f"test-{uuid.uuid4().hex}"
                self.admin.create_bucket(Bucket=name)
            self._pooled.append(name)
            return name
        name = bucket or f"test-{uuid.uuid4().hex}"
        if name not in self._named:
            self._named.append(name)
            if create:
                self.admin.create_bucket(Bucket=name)
        return name

    def __call__(
        self,
        bucket: str | None = None,
        *,
        create: bool = True,
        endpoint_url: str | None = None,
        part_size: int = MIN_PART_SIZE,
        **timeouts: float,
    ) -> S3Store:
        """An S3Store on `bucket` (default: an empty one of its own) via `endpoint_url` if given."""
        name = self._bucket(bucket, create)
        endpoint_url = endpoint_url or self.server.endpoint_url
        return S3Store(
            name, endpoint_url=endpoint_url, region=REGION, part_size=part_size,
            client=cached_client(endpoint_url, **timeouts),
        )

    def cleanup(self) -> None:
        """Empty small pooled buckets for the next tests; drop big and named ones whole."""
        for name in self._pooled:
            listing = self.admin.list_objects_v2(Bucket=name, MaxKeys=100)
            if listing.get("IsTruncated"):
                drop_bucket(self.admin, name)  # one call instead of thousands of deletes
                continue
            empty_bucket(self.admin, name)
            self.server.spare_buckets.append(name)
        for name in self._named:
            with contextlib.suppress(self.admin.exceptions.NoSuchBucket):
                drop_bucket(self.admin, name)
