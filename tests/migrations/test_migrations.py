"""The alembic migrations on fresh SQLite and PostgreSQL databases (SPEC section 3)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

import chat_app.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from chat_app import migrations
from chat_app.db import get_engine

MIGRATED_TABLES = {
    "user_sessions", "audit_log", "session_files", "chat_messages", "file_chunks", "alembic_version"
}
#: What revision 0001 alone creates; 0002 adds session_files; 0003 the chat tables.
FIRST_REVISION_TABLES = {"user_sessions", "audit_log", "alembic_version"}
SECOND_REVISION_TABLES = FIRST_REVISION_TABLES | {"session_files"}


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, empty_database_factory: Callable[[str], str]) -> str:
    """A fresh, empty database of each kind, made for this test alone."""
    return empty_database_factory(request.param)


@pytest.fixture
def migrated(empty_url: str) -> Engine:
    """The engine of a fresh database upgraded to head."""
    migrations.upgrade(empty_url)
    return get_engine(empty_url)


def table_names(url: str) -> set[str]:
    engine = get_engine(url)
    with engine.connect() as conn:
        return set(sa.inspect(conn).get_table_names())


def insert_audit_row(engine: Engine, event: str = "sweep.completed") -> int:
    with engine.begin() as conn:
        return conn.execute(
            sa.text(
                "INSERT INTO audit_log (at, event, actor, details) "
                "VALUES (CURRENT_TIMESTAMP, :event, 'cli', '{}') RETURNING id"
            ),
            {"event": event},
        ).scalar_one()


def audit_event(engine: Engine, row_id: int) -> str | None:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT event FROM audit_log WHERE id = :id"), {"id": row_id}
        ).scalar_one_or_none()


def test_upgrade_creates_the_tables(empty_url: str) -> None:
    assert table_names(empty_url) == set()
    migrations.upgrade(empty_url)
    assert table_names(empty_url) == MIGRATED_TABLES


def test_downgrade_to_base_removes_every_table(empty_url: str) -> None:
    migrations.upgrade(empty_url)
    migrations.downgrade(empty_url, "base")
    assert table_names(empty_url) <= {"alembic_version"}


def test_upgrade_after_downgrade_recreates_the_schema(empty_url: str) -> None:
    migrations.upgrade(empty_url)
    migrations.downgrade(empty_url, "base")
    migrations.upgrade(empty_url)
    assert table_names(empty_url) == MIGRATED_TABLES
    engine = get_engine(empty_url)
    row_id = insert_audit_row(engine)
    with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_log WHERE id = :id"), {"id": row_id})
    assert audit_event(engine, row_id) == "sweep.completed"


def test_each_revision_steps_down_and_up(empty_url: str) -> None:
    migrations.upgrade(empty_url, "0001")
    assert table_names(empty_url) == FIRST_REVISION_TABLES
    migrations.upgrade(empty_url, "0002")
    assert table_names(empty_url) == SECOND_REVISION_TABLES
    migrations.upgrade(empty_url, "0003")
    assert table_names(empty_url) == MIGRATED_TABLES
    migrations.downgrade(empty_url, "0002")
    assert table_names(empty_url) == SECOND_REVISION_TABLES
    migrations.downgrade(empty_url, "0001")
    assert table_names(empty_url) == FIRST_REVISION_TABLES
    migrations.upgrade(empty_url)
    assert table_names(empty_url) == MIGRATED_TABLES


def test_models_and_migrations_do_not_drift(migrated: Engine) -> None:
    with migrated.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, SQLModel.metadata) == []


def test_audit_log_refuses_update(migrated: Engine) -> None:
    row_id = insert_audit_row(migrated)
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), migrated.begin() as conn:
        conn.execute(
            sa.text("UPDATE audit_log SET event = 'session.created' WHERE id = :id"),
            {"id": row_id},
        )
    assert audit_event(migrated, row_id) == "sweep.completed"


def test_audit_log_refuses_delete(migrated: Engine) -> None:
    row_id = insert_audit_row(migrated)
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), migrated.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_log WHERE id = :id"), {"id": row_id})
    assert audit_event(migrated, row_id) == "sweep.completed"


def test_audit_log_refuses_unfiltered_delete(migrated: Engine) -> None:
    row_id = insert_audit_row(migrated)
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), migrated.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_log"))
    assert audit_event(migrated, row_id) == "sweep.completed"


def test_audit_log_accepts_inserts(migrated: Engine) -> None:
    first = insert_audit_row(migrated, "sweep.completed")
    second = insert_audit_row(migrated, "session.created")
    assert (audit_event(migrated, first), audit_event(migrated, second)) == (
        "sweep.completed",
        "session.created",
    )


@pytest.mark.parametrize("empty_url", ["postgresql"], indirect=True)
def test_audit_log_refuses_truncate_on_postgresql(migrated: Engine) -> None:
    row_id = insert_audit_row(migrated)
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), migrated.begin() as conn:
        conn.execute(sa.text("TRUNCATE audit_log"))
    assert audit_event(migrated, row_id) == "sweep.completed"
