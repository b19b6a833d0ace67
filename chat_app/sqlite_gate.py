"""One SQLite writer at a time per process, woken as soon as the database is free.

SQLite allows one writer per database file. A blocked writer waits in SQLite's busy handler,
which does not queue: it sleeps (1, 2, 5 ... up to 100 ms) and retries, so under load the
newcomers keep winning while some writers lose for seconds. Measured with 40 threads saving
chat turns (begin_turn + save_reply): p99 10-12 s, worst 12-24 s; `bench.events` (b) timed out
at 200 clients on exactly these. Behind this gate (a threading.Lock: a waiter is woken at each
release), the worst was 0.4-1.6 s. A lock granted strictly in order (tried) bounded the tail as
well but halved the turns/s: every hand-over then waits for the next thread to get the GIL.
SQLite's busy timeout still covers writers in other processes (the CLI).

A transaction passes the gate at its first write statement (pysqlite only opens a transaction
there, so reads before it never wait) and leaves at its commit or rollback.
"""

from __future__ import annotations

import sqlite3
import threading

import sqlalchemy as sa
from sqlalchemy.engine import Engine

_HELD = "chat_app.sqlite_gate.held"
_READS = ("SELECT", "PRAGMA", "WITH")  # WITH ... SELECT; our code writes no CTE DML


def install(engine: Engine, timeout_s: float) -> threading.Lock:
    """Gate the write transactions of `engine` (a SQLite engine) in this process."""
    gate = threading.Lock()

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _enter(conn, _cursor, statement: str, _params, _context, _many) -> None:
        if conn.info.get(_HELD) or statement.lstrip()[:6].upper().startswith(_READS):
            return
        if not gate.acquire(timeout=timeout_s):
            # What SQLite itself raises after its busy timeout: a 503 at the edges.
            raise sa.exc.OperationalError(
                statement, None, sqlite3.OperationalError("database is locked")
            )
        conn.info[_HELD] = True

    def _leave(info: dict) -> None:
        if info.pop(_HELD, False):
            gate.release()

    @sa.event.listens_for(engine, "commit")
    def _committed(conn) -> None:
        _leave(conn.info)

    @sa.event.listens_for(engine, "rollback")
    def _rolled_back(conn) -> None:
        _leave(conn.info)

    # A connection returned to the pool mid-transaction is rolled back by the pool itself,
    # without the engine's rollback event: the gate must open then too.
    @sa.event.listens_for(engine.pool, "reset")
    def _reset(_dbapi_connection, record, _state=None) -> None:
        _leave(record.info)

    @sa.event.listens_for(engine.pool, "invalidate")
    def _invalidated(_dbapi_connection, record, _exception) -> None:
        _leave(record.info)

    return gate
