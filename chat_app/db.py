"""Engine and unit-of-work helpers shared by services, the API and the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import lru_cache
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg import errors as psycopg_errors
from psycopg.abc import RV, PQGen
from sqlalchemy.engine import Engine
from sqlmodel import Session

from chat_app import sqlite_gate
from chat_app.errors import DatabaseUnavailable

SQLITE_BUSY_TIMEOUT_S = 30
CONNECT_TIMEOUT_S = 5
#: anyio's default worker thread count, where the services' blocking calls run.
SQLITE_POOL_SIZE = 40
#: PostgreSQL cancels any statement that runs longer, lock waits included: a slow or contended
#: server answers a request with an error (503) in bounded time and the connection stays usable.
#: The app's statements are indexed single-row or 1,000-row batches that take milliseconds.
STATEMENT_TIMEOUT_S = 3
#: The client closes a connection whose server has been silent this long in one round trip. A link
#: that stops forwarding mid-query while something on the way still ACKs (a proxy, a NAT, a
#: firewall that dropped its state) defeats TCP keepalives and `tcp_user_timeout`, so only a
#: deadline of our own ends the wait. One second above STATEMENT_TIMEOUT_S: a slow server's own
#: cancellation arrives first and keeps the connection. A failing step costs at most this plus
#: CONNECT_TIMEOUT_S (a pooled connection's ping, then one reconnect), 9 s: within the 10 s of
#: Reflex's Redis state lock, which a page-load or reset handler holds while it waits.
NETWORK_TIMEOUT_S = STATEMENT_TIMEOUT_S + 1
#: PostgreSQL ends a session left idle inside a transaction this long. A client whose link died
#: mid-transaction otherwise keeps its row locks (a session being reset) until the server's TCP
#: keepalive notices, two hours by default, and every later reset of that session would time out.
#: No transaction of the app waits on anything but its own statements.
IDLE_IN_TRANSACTION_TIMEOUT_S = 10


@lru_cache(maxsize=8)
def get_engine(url: str, *, bounded: bool = True) -> Engine:
    """One pooled engine per database URL.

    `bounded=False` is for migrations only: no statement or silence timeouts, since a schema
    change on a large table may rightly take minutes.
    """
    # hide_parameters: bound values (session ids) stay out of error messages and echoed SQL.
    if url.startswith("sqlite"):
        database = sa.engine.make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S},
            hide_parameters=True,
            # A connection for each of anyio's worker threads, so that none waits in the pool
            # (15 connections for 40 threads saving chat turns: p99 10 s); writers wait at
            # sqlite_gate instead, woken as soon as the database is free.
            pool_size=SQLITE_POOL_SIZE,
            max_overflow=0,
            pool_timeout=SQLITE_BUSY_TIMEOUT_S,
        )
        sa.event.listen(engine, "connect", _configure_sqlite)
        sqlite_gate.install(engine, SQLITE_BUSY_TIMEOUT_S)
        return engine
    engine = sa.create_engine(
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
    if bounded and engine.dialect.name == "postgresql":
        sa.event.listen(engine, "do_connect", _bounded_postgres_connect)
    return engine


def _bounded_postgres_connect(
    dialect: sa.engine.Dialect, _record: Any, cargs: tuple, cparams: dict[str, Any]
) -> psycopg.Connection | None:
    """Open PostgreSQL connections with server-side timeouts and, for psycopg, a client deadline."""
    # Appended to the URL's own `options`, if any, rather than replacing them.
    server_timeouts = (
        f"-c statement_timeout={int(STATEMENT_TIMEOUT_S * 1000)}"
        f" -c idle_in_transaction_session_timeout={int(IDLE_IN_TRANSACTION_TIMEOUT_S * 1000)}"
    )
    cparams["options"] = f"{cparams.get('options', '')} {server_timeouts}".strip()
    if dialect.driver != "psycopg":
        return None  # another driver (psycopg2): the server-side bounds only
    return DeadlineConnection.connect(*cargs, **cparams)


class DeadlineConnection(psycopg.Connection):
    """A psycopg connection that gives up on a server silent for NETWORK_TIMEOUT_S.

    Every round trip after connecting (statements, fetches, commit, rollback, the pool's ping)
    goes through `wait`, so this one override bounds them all, with no watchdog thread.
    Connecting itself is bounded by `connect_timeout`.
    """

    def wait(self, gen: PQGen[RV], interval: float = 0.1, timeout: float | None = None) -> RV:
        """psycopg's wait with a deadline; when it expires the connection is closed."""
        try:
            return super().wait(gen, interval=interval,
                                timeout=NETWORK_TIMEOUT_S if timeout is None else timeout)
        except psycopg_errors._WaitTimeout:  # what psycopg's wait raises on its timeout
            # Mid-protocol, the connection cannot be reused: closed, SQLAlchemy sees a
            # disconnect and drops it from the pool instead of handing it out again.
            self.pgconn.finish()
            raise psycopg.OperationalError(
                f"the database did not answer within {NETWORK_TIMEOUT_S} s"
            ) from None


def _configure_sqlite(dbapi_connection, _record) -> None:
    # WAL lets readers run beside the single writer; foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL stays consistent after a crash and skips an fsync per commit (0.3-4 ms
    # each here, bench.events); only the last commits can be lost on power failure.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
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
        except sa.exc.OperationalError as exc:
            # Lost, silent, locked or timed out: a dependency failure (503), for every caller,
            # not only those that remembered to translate it (dev controls, retrieval).
            with suppress(sa.exc.SQLAlchemyError):  # the link is usually gone: keep the 503
                db.rollback()
            raise DatabaseUnavailable() from exc
        except BaseException:
            db.rollback()
            raise


def is_postgres(engine: Engine) -> bool:
    """True for a PostgreSQL engine."""
    return engine.dialect.name == "postgresql"
