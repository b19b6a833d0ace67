"""Service-layer fixtures: file services on each database x each object store (SPEC section 5)."""

from __future__ import annotations

import io
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from chat_app import migrations
from chat_app.container import Services, build_services
from chat_app.db import get_engine
from chat_app.models import AuditLog, SessionFile
from chat_app.services.audit import RequestContext
from chat_app.services.files import FileView
from chat_app.services.sessions import SessionView
from chat_app.services.uploads import upload_stream
from chat_app.storage.base import ObjectStore, ObjectWriter, StorageUnavailable, StoredObject
from chat_app.storage.local import LocalStore
from chat_app.storage.signing import UrlSigner
from tests.conftest import create_postgres_database, drop_postgres_database

STORE_KINDS = ["local", "s3"]


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """An empty object store of each kind: a temp folder, or a clean bucket on SeaweedFS.

    Tests that write thousands of objects ask for "s3-own-bucket" (indirect parametrization).
    """
    if request.param == "local":
        return LocalStore(tmp_path / "store", signer=UrlSigner(b"test-secret-key"))
    make_s3_store = request.getfixturevalue("make_s3_store")
    if request.param == "s3-own-bucket":
        # Thousands of deletes leave SeaweedFS's empty folders behind, which slow every later
        # listing: a named bucket is dropped whole at teardown instead of going back to the pool.
        return make_s3_store(f"test-own-{uuid.uuid4().hex}")
    return make_s3_store()


@pytest.fixture
def make_file_services(make_settings, store: ObjectStore) -> Callable[..., Services]:
    """Services on `store`; keyword overrides use env names (CHAT_APP_MAX_UPLOAD_MB=...)."""

    def make(*, store_override: ObjectStore | None = None, **env: object) -> Services:
        return build_services(make_settings(**env), store=store_override or store)

    return make


@pytest.fixture
def file_services(make_file_services) -> Services:
    """Services with default settings on `store`."""
    return make_file_services()


@contextmanager
def fresh_database(kind: str, folder: Path) -> Iterator[str]:
    """A migrated database of `kind` for one test alone (the sweep looks at every row)."""
    url = f"sqlite:///{folder / 'own.db'}" if kind == "sqlite" else create_postgres_database()
    migrations.upgrade(url)
    try:
        yield url
    finally:
        if kind == "sqlite":
            get_engine(url).dispose()
        else:
            drop_postgres_database(url)


# --- helpers shared by the service tests ---------------------------------------------------------

CTX = RequestContext(actor="api", ip="198.51.100.4", request_id="test-files")


def new_session(services: Services) -> SessionView:
    """A brand-new active session."""
    return services.sessions.create(CTX, reason="api")


def upload_bytes(services: Services, session_uuid: str, filename: str, data: bytes) -> FileView:
    """Upload `data` through the sync stream path."""
    return upload_stream(services.files, session_uuid, filename, io.BytesIO(data), CTX)


def file_rows(engine: Engine, session_id: int) -> list[SessionFile]:
    """Every file row of a session, whatever its status, oldest first."""
    with Session(engine) as db:
        return list(db.exec(
            select(SessionFile).where(SessionFile.session_id == session_id)
            .order_by(col(SessionFile.created_at), col(SessionFile.id))
        ).all())


def file_row(engine: Engine, file_id: str) -> SessionFile:
    """One file row, which must exist."""
    with Session(engine) as db:
        row = db.get(SessionFile, file_id)
    assert row is not None, "no such file row"
    return row


def session_keys(store: ObjectStore, session_uuid: str) -> list[str]:
    """Keys of the objects stored under the session's prefix."""
    return [obj.key for obj in store.iter_keys(f"sessions/{session_uuid}/")]


def read_object(store: ObjectStore, key: str) -> bytes:
    """Every byte of one object."""
    return b"".join(store.open(key))


def audit_rows(engine: Engine, *, session_id: int | None = None, event: str | None = None
               ) -> list[AuditLog]:
    """Audit rows (of one session, of one event), oldest first."""
    query = select(AuditLog).order_by(col(AuditLog.id))
    if session_id is not None:
        query = query.where(AuditLog.session_id == session_id)
    if event is not None:
        query = query.where(AuditLog.event == event)
    with Session(engine) as db:
        return list(db.exec(query).all())


def put_object(store: ObjectStore, key: str, data: bytes = b"orphan") -> None:
    """Write an object straight to the store, bypassing the services (no row)."""
    store.put(key, io.BytesIO(data), len(data), "application/octet-stream")


class FlakyStore(ObjectStore):
    """A real store whose next `delete_many` can fail, for some keys or as an outage."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self._next_delete: Callable[[list[str]], list[str]] | None = None
        self._outage = False
        self.delete_calls: list[list[str]] = []

    def fail_next_delete(self, pick: Callable[[list[str]], list[str]]) -> None:
        """The next delete_many reports `pick(keys)` as failed and leaves those objects alone."""
        self._next_delete = pick

    def break_deletes(self, broken: bool = True) -> None:
        """Every delete_many raises StorageUnavailable until called with False."""
        self._outage = broken

    def delete_many(self, keys: Iterable[str]) -> list[str]:
        keys = list(keys)
        self.delete_calls.append(keys)
        if self._outage:
            raise StorageUnavailable()
        pick, self._next_delete = self._next_delete, None
        failed = set(pick(keys)) if pick is not None else set()
        done = self.inner.delete_many([key for key in keys if key not in failed])
        return done + [key for key in keys if key in failed]

    def open_writer(self, key: str, content_type: str) -> ObjectWriter:
        return self.inner.open_writer(key, content_type)

    def open(self, key: str) -> Iterator[bytes]:
        return self.inner.open(key)

    def url(self, key: str, filename: str, expires_s: int) -> str:
        return self.inner.url(key, filename, expires_s)

    def iter_keys(self, prefix: str) -> Iterator[StoredObject]:
        return self.inner.iter_keys(prefix)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def check(self) -> None:
        self.inner.check()


class PausingStore(FlakyStore):
    """A real store whose next `delete_many` waits to be released, so that a test can run
    another request in the gap (a race, made deterministic)."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner)
        #: Set when the paused call is waiting; `release` lets it go on.
        self.paused = threading.Event()
        self._release = threading.Event()
        self._armed = False

    def pause_next_delete(self) -> None:
        self._armed = True

    def release(self) -> None:
        self._release.set()

    def delete_many(self, keys: Iterable[str]) -> list[str]:
        if self._armed:
            self._armed = False
            self.paused.set()
            if not self._release.wait(timeout=60):
                raise TimeoutError("the paused delete was never released")
        return super().delete_many(keys)
