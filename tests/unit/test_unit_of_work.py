"""unit_of_work: a saturated pool or a lost or locked database is a 503 (DatabaseUnavailable),
not a 500."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import QueuePool

from chat_app.db import unit_of_work
from chat_app.errors import DatabaseUnavailable


def test_pool_timeout_becomes_database_unavailable(tmp_path: Path) -> None:
    engine = sa.create_engine(
        f"sqlite:///{tmp_path / 'pool.db'}", poolclass=QueuePool, pool_size=1, max_overflow=0,
        pool_timeout=0.1,
    )
    held = engine.connect()  # the only connection
    try:
        with pytest.raises(DatabaseUnavailable), unit_of_work(engine) as db:
            db.execute(sa.text("SELECT 1"))
    finally:
        held.close()
    with unit_of_work(engine) as db:  # and it works again once a connection is free
        assert db.execute(sa.text("SELECT 1")).scalar_one() == 1


def test_a_locked_database_becomes_database_unavailable(tmp_path: Path) -> None:
    # Regression: only pool timeouts were translated here, so callers without a translation of
    # their own (the dev controls, the retriever) let a lost or locked database out as a 500.
    path = tmp_path / "locked.db"
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.1})
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # a writer of our own keeps the lock
    try:
        with pytest.raises(DatabaseUnavailable), unit_of_work(engine) as db:
            db.execute(sa.text("CREATE TABLE t (x INTEGER)"))
    finally:
        holder.rollback()
        holder.close()
    with unit_of_work(engine) as db:  # the lock released, the same work goes through
        db.execute(sa.text("CREATE TABLE t (x INTEGER)"))
