"""GET /health, and 503 (never 500) when the database is down."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.api.support import assert_problem

UNREACHABLE_DB = "postgresql+psycopg://postgres@127.0.0.1:1/chat_app_nowhere"


def test_health_ok(api):
    response = api.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "store": "ok"}
    assert response.headers["x-request-id"]


@pytest.fixture
def api_without_db(make_api):
    return make_api(DATABASE_URL=UNREACHABLE_DB)


@pytest.mark.parametrize(
    ("method", "path", "with_id"),
    [
        ("GET", "/health", False),
        ("GET", "/session", True),
        ("POST", "/session", False),
        ("POST", "/session/reset", True),
        ("GET", "/session/audit", True),
        ("GET", "/session/files", True),
        ("POST", "/session/files", True),
        ("GET", f"/session/files/{uuid.uuid4()}", True),
        ("DELETE", f"/session/files/{uuid.uuid4()}", True),
    ],
)
def test_database_down_is_503_problem(api_without_db, method, path, with_id):
    headers = {"X-Session-Id": str(uuid.uuid4())} if with_id else {}
    files = {"file": ("a.txt", b"text\n")} if method == "POST" and "files" in path else None
    started = time.monotonic()

    response = api_without_db.client.request(
        method, f"/api/v1{path}", headers=headers, files=files
    )

    assert time.monotonic() - started < 5
    body = assert_problem(response, 503, "database-unavailable")
    assert "5432" not in response.text and ":1/" not in response.text
    assert "psycopg" not in response.text.lower()
    assert body["title"] == "Service Unavailable"
