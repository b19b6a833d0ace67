"""Helpers shared by the API tests."""

from __future__ import annotations

import socket
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import uvicorn
from sqlmodel import Session, col, select

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's notice about httpx vs httpx2
    from fastapi.testclient import TestClient

from chat_app.api import create_api
from chat_app.container import Services
from chat_app.models import AuditLog, SessionFile, UserSession

#: Limits high enough that tests not about limits never meet them.
HIGH_LIMITS = (
    "create=10000/minute,validate=10000/minute,failed_validate=10000/minute,"
    "reset=10000/minute,read=10000/minute,upload=10000/minute,messages=10000/minute"
)
SESSION_KEYS = {"session_id", "status", "created_at", "last_seen_at", "expires_at"}
PROBLEM_KEYS = {"type", "title", "status", "detail", "request_id"}


def session_headers(session_id: str | None) -> dict[str, str]:
    """The X-Session-Id header, or none."""
    return {"X-Session-Id": session_id} if session_id is not None else {}


@dataclass
class Api:
    """A client on a freshly built app, plus the services behind it."""

    client: TestClient
    services: Services

    def new_session(self) -> str:
        """Create a session through the API and return its id."""
        response = self.client.post("/api/v1/session")
        assert response.status_code == 201, response.text
        return response.json()["session_id"]

    def get(self, path: str, session_id: str | None = None, **kwargs) -> httpx.Response:
        """GET /api/v1<path>, with the session header when given."""
        headers = {**session_headers(session_id), **kwargs.pop("headers", {})}
        return self.client.get(f"/api/v1{path}", headers=headers, **kwargs)

    def post(self, path: str, session_id: str | None = None, **kwargs) -> httpx.Response:
        """POST /api/v1<path>, with the session header when given."""
        headers = {**session_headers(session_id), **kwargs.pop("headers", {})}
        return self.client.post(f"/api/v1{path}", headers=headers, **kwargs)

    def delete(self, path: str, session_id: str | None = None, **kwargs) -> httpx.Response:
        """DELETE /api/v1<path>, with the session header when given."""
        headers = {**session_headers(session_id), **kwargs.pop("headers", {})}
        return self.client.delete(f"/api/v1{path}", headers=headers, **kwargs)

    def upload(self, session_id: str | None, filename: str, content: bytes) -> httpx.Response:
        """POST one file as multipart field `file`."""
        return self.post("/session/files", session_id, files={"file": (filename, content)})

    def audit_rows(self, *, request_id: str) -> list[AuditLog]:
        """The audit rows one request wrote, oldest first."""
        with Session(self.services.engine) as db:
            query = (
                select(AuditLog)
                .where(AuditLog.request_id == request_id)
                .order_by(col(AuditLog.id))
            )
            return list(db.exec(query).all())

    def file_rows(self, session_id: str) -> list[SessionFile]:
        """The session_files rows of a session, oldest first."""
        with Session(self.services.engine) as db:
            query = (
                select(SessionFile)
                .join(UserSession, col(UserSession.id) == col(SessionFile.session_id))
                .where(UserSession.uuid == session_id)
                .order_by(col(SessionFile.created_at), col(SessionFile.id))
            )
            rows = list(db.exec(query).all())
            for row in rows:
                db.expunge(row)
            return rows

    def object_keys(self, session_id: str) -> list[str]:
        """The keys the store holds under the session's prefix."""
        return [obj.key for obj in self.services.store.iter_keys(f"sessions/{session_id}/")]

    def follow(self, redirect: httpx.Response) -> httpx.Response:
        """GET a download redirect's Location as a browser would: no session header."""
        assert redirect.status_code == 302, redirect.text
        location = redirect.headers["location"]
        if location.startswith("/"):  # LocalStore: the app's own signed route
            return self.client.get(location)
        return httpx.get(location, timeout=10)  # S3: a presigned URL on the store itself

    def session_row(self, session_id: str) -> UserSession:
        """The database row of a session."""
        with Session(self.services.engine) as db:
            row = db.exec(select(UserSession).where(UserSession.uuid == session_id)).one()
            db.expunge(row)
            return row


def assert_problem(response: httpx.Response, status: int, slug: str | None = None) -> dict:
    """Check a problem+json response and return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert set(body) == PROBLEM_KEYS
    assert body["status"] == status
    assert body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    if slug is not None:
        assert body["type"] == f"urn:chat-app:problem:{slug}"
    return body


def assert_no_echo(response: httpx.Response, value: str) -> None:
    """`value` appears nowhere in the body or the headers."""
    assert value.lower() not in response.text.lower()
    for name, header in response.headers.items():
        assert value.lower() not in header.lower(), name


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve_over_http(services: Services) -> Iterator[str]:
    """The API on uvicorn in a background thread (real sockets, real streaming); its base URL."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(
        create_api(services), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    ))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
