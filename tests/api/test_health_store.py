"""GET /health checks the object store too; a store that is down is a 503, never a 500."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from chat_app.models import FILE_STORED
from chat_app.storage.local import LocalStore
from chat_app.storage.signing import UrlSigner
from tests.api.support import Api, assert_problem

HEALTHY = {"status": "ok", "database": "ok", "store": "ok"}
#: Nothing listens on port 1: connections are refused at once.
CLOSED_PORT_URL = "http://127.0.0.1:1"
TEXT = b"some text\n"


def test_health_checks_database_and_store(make_api, store):
    api = make_api(store=store)

    response = api.get("/health")

    assert response.status_code == 200
    assert response.json() == HEALTHY


@pytest.fixture
def local_store_down(tmp_path: Path) -> LocalStore:
    """A LocalStore whose root lies under a regular file: it can never be created."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder should be")
    return LocalStore(blocker / "files", signer=UrlSigner(b"unused"))


@pytest.fixture
def s3_store_down(make_s3_store):
    """An S3Store aimed at a closed port, giving up after one quick attempt."""
    return make_s3_store(
        endpoint_url=CLOSED_PORT_URL, create=False,
        connect_timeout_s=1, read_timeout_s=1, max_attempts=1,
    )


@pytest.fixture(params=["local", "s3"])
def api_without_store(request, make_api) -> Api:
    return make_api(store=request.getfixturevalue(f"{request.param}_store_down"))


def test_store_down_is_503(api_without_store):
    started = time.monotonic()

    response = api_without_store.get("/health")

    assert time.monotonic() - started < 5
    body = assert_problem(response, 503, "storage-unavailable")
    assert body["title"] == "Service Unavailable"
    for leak in ("not-a-folder", "127.0.0.1", "botocore", "Errno"):
        assert leak not in response.text


def test_upload_with_store_down_is_503_and_stores_nothing(api_without_store):
    api = api_without_store
    session_id = api.new_session()

    response = api.upload(session_id, "a.txt", TEXT)

    assert_problem(response, 503, "storage-unavailable")
    assert [row for row in api.file_rows(session_id) if row.status == FILE_STORED] == []
    # Reads that need only the database keep working.
    assert api.get("/session/files", session_id).json() == {"items": []}
