"""S3Store with botocore's Stubber: responses a real server will not give on demand."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from botocore.client import BaseClient
from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ParamValidationError,
    ReadTimeoutError,
)
from botocore.stub import ANY, Stubber

from chat_app.storage.base import ObjectNotFound, StorageError, StorageUnavailable
from chat_app.storage.s3 import S3Store
from chat_app.storage.s3_client import make_s3_client, translate

BUCKET = "stubbed-bucket"
PART = 5 * 1024 * 1024


@pytest.fixture(scope="module")
def client() -> BaseClient:
    """A client that never reaches a network: every call is answered by the Stubber."""
    return make_s3_client(
        endpoint_url="http://127.0.0.1:9", region="us-east-1", max_attempts=1,
        aws_access_key_id="stub", aws_secret_access_key="stub",
    )


@pytest.fixture
def stubber(client: BaseClient) -> Iterator[Stubber]:
    with Stubber(client) as stub:
        yield stub
        stub.assert_no_pending_responses()


@pytest.fixture
def store(client: BaseClient, stubber: Stubber) -> S3Store:
    # One part at a time: the Stubber answers calls in the order they come.
    return S3Store(BUCKET, endpoint_url=None, region="us-east-1", part_size=PART,
                   parts_in_flight=1, client=client)


def delete_params(keys: list[str]) -> dict[str, object]:
    return {"Bucket": BUCKET, "Delete": {"Objects": [{"Key": k} for k in keys], "Quiet": True}}


def test_delete_many_returns_the_keys_s3_reports_as_failed(
    store: S3Store, stubber: Stubber
) -> None:
    errors = [{"Key": "b", "Code": "AccessDenied", "Message": "Access Denied"}]
    stubber.add_response("delete_objects", {"Errors": errors}, delete_params(["a", "b", "c"]))
    assert store.delete_many(["a", "b", "c"]) == ["b"]


def test_delete_many_sends_batches_of_1000(store: S3Store, stubber: Stubber) -> None:
    keys = [f"sessions/s/{i:04d}" for i in range(2500)]
    for batch in (keys[:1000], keys[1000:2000], keys[2000:]):
        stubber.add_response("delete_objects", {}, delete_params(batch))
    assert store.delete_many(keys) == []


def test_delete_many_raises_when_a_batch_cannot_be_sent(store: S3Store, stubber: Stubber) -> None:
    keys = [f"k{i:04d}" for i in range(1500)]
    stubber.add_response("delete_objects", {}, delete_params(keys[:1000]))
    stubber.add_client_error("delete_objects", "ServiceUnavailable", http_status_code=503)
    with pytest.raises(StorageUnavailable):
        store.delete_many(keys)


@pytest.mark.parametrize(
    ("operation", "code", "status", "expected"),
    [
        ("get_object", "NoSuchKey", 404, ObjectNotFound),
        ("get_object", "NoSuchBucket", 404, StorageUnavailable),
        ("get_object", "InternalError", 500, StorageUnavailable),
        ("get_object", "SlowDown", 503, StorageUnavailable),
        ("get_object", "AccessDenied", 403, StorageError),
        ("put_object", "NoSuchKey", 404, StorageError),  # writes never report a missing object
        ("put_object", "InternalError", 500, StorageUnavailable),
        ("head_object", "403", 403, StorageError),
        ("head_bucket", "404", 404, StorageUnavailable),
        ("head_bucket", "403", 403, StorageUnavailable),
    ],
)
def test_client_errors_are_translated(
    store: S3Store, stubber: Stubber, operation: str, code: str, status: int, expected: type
) -> None:
    calls: dict[str, Callable[[], object]] = {
        "get_object": lambda: store.open("k"),
        "put_object": lambda: store.put("k", io.BytesIO(b"x"), 1, "text/plain"),
        "head_object": lambda: store.exists("k"),
        "head_bucket": store.check,
    }
    stubber.add_client_error(operation, code, http_status_code=status)
    with pytest.raises(expected) as caught:
        calls[operation]()
    assert type(caught.value) is expected  # not a broader or narrower class than intended


def test_exists_is_false_on_404(store: S3Store, stubber: Stubber) -> None:
    stubber.add_client_error("head_object", "404", http_status_code=404)
    assert store.exists("k") is False


@pytest.mark.parametrize(
    "error",
    [
        EndpointConnectionError(endpoint_url="http://s3"),
        ConnectTimeoutError(endpoint_url="http://s3"),
        ReadTimeoutError(endpoint_url="http://s3"),
        ConnectionClosedError(endpoint_url="http://s3"),
        ConnectionResetError(),
    ],
)
def test_connection_failures_mean_unavailable(error: Exception) -> None:
    assert isinstance(translate(error), StorageUnavailable)


def test_programming_errors_are_not_disguised() -> None:
    error = ParamValidationError(report="bad")
    assert translate(error) is error


def test_failed_part_aborts_the_multipart_upload(store: S3Store, stubber: Stubber) -> None:
    stubber.add_response("create_multipart_upload", {"UploadId": "u1"}, {
        "Bucket": BUCKET, "Key": "k", "ContentType": "application/pdf",
    })
    stubber.add_client_error("upload_part", "InternalError", http_status_code=500)
    stubber.add_response("abort_multipart_upload", {}, {
        "Bucket": BUCKET, "Key": "k", "UploadId": "u1",
    })
    writer = store.open_writer("k", "application/pdf")
    with pytest.raises(StorageUnavailable):
        writer.write(os.urandom(PART))  # the part goes to a sender thread...
        writer.commit()  # ...whose failure comes out here at the latest
    writer.abort()  # already aborted: no second call


def test_iter_keys_fetches_pages_lazily(store: S3Store, stubber: Stubber) -> None:
    when = datetime(2024, 1, 1, tzinfo=UTC)
    first = {"Contents": [{"Key": "p/1", "Size": 1, "LastModified": when}],
             "IsTruncated": True, "NextContinuationToken": "next"}
    second = {"Contents": [{"Key": "p/2", "Size": 2, "LastModified": when}], "IsTruncated": False}
    stubber.add_response("list_objects_v2", first, {
        "Bucket": BUCKET, "Prefix": "p/", "MaxKeys": 1000,
    })
    stubber.add_response("list_objects_v2", second, {
        "Bucket": BUCKET, "Prefix": "p/", "MaxKeys": 1000, "ContinuationToken": "next",
    })
    listing = store.iter_keys("p/")
    assert next(listing).key == "p/1"
    with pytest.raises(AssertionError):
        stubber.assert_no_pending_responses()  # the second page is not fetched yet
    rest = list(listing)
    assert [(item.key, item.size, item.modified) for item in rest] == [("p/2", 2, when)]


def test_multipart_upload_numbers_its_parts(store: S3Store, stubber: Stubber) -> None:
    stubber.add_response("create_multipart_upload", {"UploadId": "u1"})
    stubber.add_response("upload_part", {"ETag": '"e1"'}, {
        "Bucket": BUCKET, "Key": "k", "UploadId": "u1", "PartNumber": 1, "Body": ANY,
    })
    stubber.add_response("upload_part", {"ETag": '"e2"'})
    stubber.add_response("complete_multipart_upload", {}, {
        "Bucket": BUCKET, "Key": "k", "UploadId": "u1",
        "MultipartUpload": {"Parts": [{"ETag": '"e1"', "PartNumber": 1},
                                      {"ETag": '"e2"', "PartNumber": 2}]},
    })
    writer = store.open_writer("k", "application/octet-stream")
    writer.write(os.urandom(PART + 10))
    assert writer.commit() == PART + 10
