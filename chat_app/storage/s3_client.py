"""The boto3 client S3Store uses, and the translation of botocore failures into StorageErrors."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import boto3
import urllib3.exceptions
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from chat_app.storage.base import ObjectNotFound, StorageError, StorageUnavailable

logger = logging.getLogger(__name__)

_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}
_UNAVAILABLE_CODES = {"NoSuchBucket", "SlowDown", "RequestTimeout", "ServiceUnavailable"}
#: Everything boto3 may raise for a failed call, before translation.
BOTO_ERRORS = (BotoCoreError, ClientError, urllib3.exceptions.HTTPError, OSError)


def make_s3_client(
    *,
    endpoint_url: str | None,
    region: str,
    connect_timeout_s: float = 3,
    read_timeout_s: float = 30,
    max_attempts: int = 3,
    **credentials: str,
) -> BaseClient:
    """A boto3 S3 client with bounded timeouts and retries (credentials from boto3's chain)."""
    config = Config(
        connect_timeout=connect_timeout_s,
        read_timeout=read_timeout_s,
        retries={"max_attempts": max_attempts, "mode": "standard"},
        s3={"addressing_style": "path"},
        signature_version="s3v4",
    )
    # A private Session: boto3's default one is not safe to share between threads.
    session = boto3.session.Session()
    return session.client(
        "s3", endpoint_url=endpoint_url, region_name=region, config=config, **credentials
    )


def translate(exc: Exception, *, reading: bool = False) -> Exception:
    """The StorageError for a botocore/urllib3 failure, or `exc` itself if it is a bug of ours."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if reading and code in _MISSING_CODES:
            return ObjectNotFound()
        if status >= 500 or code in _UNAVAILABLE_CODES:
            return StorageUnavailable()
        # Refused for a reason retrying will not fix (credentials, policy): still a StorageError.
        logger.error("S3 refused the request: %s %s", code, error.get("Message", ""))
        return StorageError("The file store refused the request.")
    if isinstance(exc, ParamValidationError):
        return exc
    if isinstance(exc, BotoCoreError | urllib3.exceptions.HTTPError | OSError):
        return StorageUnavailable()
    return exc


@contextlib.contextmanager
def translated(*, reading: bool = False) -> Iterator[None]:
    """Re-raise botocore failures inside the block as StorageError subclasses."""
    try:
        yield
    except BOTO_ERRORS as exc:
        raise translate(exc, reading=reading) from exc
