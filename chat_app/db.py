"""Engine and unit-of-work helpers shared by services, the API and the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from chat_app import sqlite_gate
from chat_app.errors import DatabaseUnavailable

SQLITE_BUSY_TIMEOUT_S = 30
CONNECT_TIMEOUT_S = 5
#: anyio's default worker thread count, where the services' blocking calls run.
SQLITE_POOL_SIZE = 40


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    """One pooled engine per database URL."""
    # hide_parameters: bound values (session ids) stay out of error messages and echoed SQL.
    if url.startswith("sqlite"):
        database = sa.engine.make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S},
            hide_parameters=True,
            # A connection for each of anyio's worker threads, so that none waits in the pool,
            # whose wake-ups are not in order: writers queue in sqlite_gate, in order, instead.
            # With 15 connections and 40 threads saving chat turns, p99 was 10 s.
            pool_size=SQLITE_POOL_SIZE,
            max_overflow=0,
            pool_timeout=SQLITE_BUSY_TIMEOUT_S,
        )
        sa.event.listen(engine, "connect", _configure_sqlite)
        sqlite_gate.install(engine, SQLITE_BUSY_TIMEOUT_S)
        return engine
    return sa.create_engine(
        url,
        pool_pre_ping=True,
        # Up to 30 connections, all kept once opened. Sync routes run on anyio's 40 worker
        # threads, so demand hovers around the ceiling; with 10 + 20 overflow, QueuePool closed
        # every overflow connection returned while 10 sat idle and opened a new one moments
        # later: 556-754 PostgreSQL connections in 60 s of `bench.soak`, 30 with this setting.
        pool_size=30,
        max_overflow=0,
        pool_timeout=CONNECT_TIMEOUT_S,
        hide_parameters=True,
        # A silent database host must fail a request in seconds (503), not hang it.
        connect_args={"connect_timeout": CONNECT_TIMEOUT_S} if url.startswith("postgresql") else {},
    )


def _configure_sqlite(dbapi_connection, _record) -> None:
    # WAL lets readers run beside the single writer; foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL stays consistent after a crash and skips an fsync per commit (0.3-4 ms
    # each here, bench.events); only the last commits can be lost on power failure.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
    cursor.close()


@contextmanager
def unit_of_work(engine: Engine) -> Iterator[Session]:
    """One transaction per use case: commit at the end, roll back on any error."""
    with Session(engine, expire_on_commit=False) as db:
        try:
            yield db
            db.commit()
        except sa.exc.TimeoutError as exc:
            # Every pooled connection busy for pool_timeout: the database is saturated (503),
            # not a defect (SQLAlchemy's TimeoutError is no OperationalError).
            db.rollback()
            raise DatabaseUnavailable() from exc
        except BaseException:
            db.rollback()
            raise


def is_postgres(engine: Engine) -> bool:
    """True for a PostgreSQL engine."""
    return engine.dialect.name == "postgresql"
