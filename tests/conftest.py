"""Shared fixtures: real SQLite and PostgreSQL databases migrated with alembic, services on them."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from chat_app import migrations
from chat_app.container import Services, build_services
from chat_app.db import get_engine
from chat_app.services import sessions as sessions_module
from chat_app.services.audit import AuditWriter
from chat_app.settings import Settings
from tests.leaks import WATCH, LeakWatch, RecordingHandler

PG_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
DB_KINDS = ["sqlite", "postgresql"]


def create_postgres_database(template: str | None = None) -> str:
    """A fresh PostgreSQL database, empty or a copy of the database `template` names; its URL."""
    name = f"chat_app_test_{uuid.uuid4().hex[:12]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"{copy}'))
    admin.dispose()
    return sa.engine.make_url(PG_ADMIN_URL).set(database=name).render_as_string(
        hide_password=False
    )


def drop_postgres_database(url: str) -> None:
    """Drop a database made by create_postgres_database, closing its connections first."""
    get_engine(url).dispose()
    name = sa.engine.make_url(url).database
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def empty_database_factory(tmp_path_factory) -> Iterator[Callable[[str], str]]:
    """Makes empty databases of a kind ("sqlite" or "postgresql"); drops them at the end."""
    made: list[str] = []

    def make(kind: str) -> str:
        if kind == "sqlite":
            path = tmp_path_factory.mktemp("sqlite") / "chat_app.db"
            return f"sqlite:///{path}"
        url = create_postgres_database()
        made.append(url)
        return url

    yield make
    for url in made:
        drop_postgres_database(url)


@pytest.fixture(scope="session", params=DB_KINDS)
def database_url(request, empty_database_factory) -> str:
    """A migrated database of each kind, shared by the whole run (tests use their own rows)."""
    url = empty_database_factory(request.param)
    migrations.upgrade(url)
    return url


@pytest.fixture
def engine(database_url: str) -> sa.engine.Engine:
    """The engine of the migrated database."""
    return get_engine(database_url)


@pytest.fixture
def make_settings(tmp_path: Path, database_url: str) -> Callable[..., Settings]:
    """Settings on the migrated database and a temp data dir; keyword overrides use env names."""

    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "CHAT_APP_DATA_DIR": str(tmp_path / "data"),
            "DATABASE_URL": database_url,
            "CHAT_APP_SECRET_KEY": "test-secret-key",
            "REDIS_URL": None,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def services(make_settings) -> Services:
    """Services wired on the migrated database with default settings."""
    return build_services(make_settings())


# --- Object storage (appended): one real SeaweedFS for the whole run, a fresh bucket per test. ---
from tests.seaweed import S3StoreFactory, SeaweedServer  # noqa: E402


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory) -> Iterator[SeaweedServer]:
    """A SeaweedFS server (S3 API) started once for the run; it never skips."""
    server = SeaweedServer(tmp_path_factory.mktemp("seaweed"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def make_s3_store(seaweed: SeaweedServer) -> Iterator[S3StoreFactory]:
    """Makes S3Stores on unique buckets with test credentials; the buckets go at teardown."""
    factory = S3StoreFactory(seaweed)
    yield factory
    factory.cleanup()


# --- The LLM provider stand-in: tests/fake_openai.py, one server for the run. ---------------------
from tests.fake_openai import FakeOpenAI  # noqa: E402


@pytest.fixture(scope="session")
def fake_openai_server() -> Iterator[FakeOpenAI]:
    """A local server speaking OpenAI's chat-completions protocol (streaming included)."""
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def fake(fake_openai_server: FakeOpenAI) -> FakeOpenAI:
    """The fake provider with its defaults restored and its request log empty."""
    fake_openai_server.reset()
    return fake_openai_server


# --- SPEC 11.7 over the whole run: tests/leaks.py -------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def leak_watch() -> Iterator[LeakWatch]:
    """Records every issued id, audit row and log record; fails the run if an id leaked."""
    issue_id = sessions_module.new_session_id
    write_row = AuditWriter.record

    def issue_and_note() -> str:
        value = issue_id()
        WATCH.issued.add(value.lower())
        return value

    def record_and_note(self: AuditWriter, *args, **kwargs):
        row = write_row(self, *args, **kwargs)
        WATCH.note_audit_row(row)
        return row

    handler = RecordingHandler(WATCH)
    app_logger = logging.getLogger("chat_app")
    level = app_logger.level
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sessions_module, "new_session_id", issue_and_note)
        patch.setattr(AuditWriter, "record", record_and_note)
        app_logger.setLevel(logging.INFO)  # our INFO lines too, not only warnings
        logging.getLogger().addHandler(handler)
        try:
            yield WATCH
        finally:
            logging.getLogger().removeHandler(handler)
            app_logger.setLevel(level)
    leaks = WATCH.leaks()
    assert not leaks, "raw session ids leaked (SPEC 11.7):\n" + "\n".join(leaks[:20])
