"""The in-process SQLite write gate (chat_app/sqlite_gate.py) on a real SQLite file."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from chat_app import sqlite_gate
from chat_app.db import unit_of_work
from chat_app.errors import DatabaseUnavailable

GATE_TIMEOUT_S = 0.5


@pytest.fixture
def engine_and_gate(tmp_path: Path) -> Iterator[tuple[Engine, threading.Lock]]:
    engine = sa.create_engine(
        f"sqlite:///{tmp_path / 'gate.db'}",
        connect_args={"check_same_thread": False, "timeout": 30},
        pool_size=4, max_overflow=0,
    )
    gate = sqlite_gate.install(engine, GATE_TIMEOUT_S)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    yield engine, gate
    engine.dispose()


def insert(db: Session, body: str) -> None:
    db.execute(sa.text("INSERT INTO notes (body) VALUES (:body)"), {"body": body})


def bodies(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [row[0] for row in conn.exec_driver_sql("SELECT body FROM notes ORDER BY id")]


def test_the_gate_opens_at_the_first_write_and_closes_at_commit(engine_and_gate) -> None:
    engine, gate = engine_and_gate
    with unit_of_work(engine) as db:
        db.execute(sa.text("SELECT count(*) FROM notes")).one()
        assert not gate.locked()  # a read takes nothing
        insert(db, "a")
        assert gate.locked()
        insert(db, "b")  # the same transaction passes again without waiting for itself
    assert not gate.locked()
    assert bodies(engine) == ["a", "b"]


def test_a_rollback_or_an_abandoned_transaction_opens_the_gate(engine_and_gate) -> None:
    engine, gate = engine_and_gate
    with pytest.raises(RuntimeError), unit_of_work(engine) as db:
        insert(db, "lost")
        raise RuntimeError("the use case failed")
    assert not gate.locked()
    # Closed without commit or rollback: the pool's reset on return must open it too.
    db = Session(engine)
    insert(db, "abandoned")
    db.close()
    assert not gate.locked()
    assert bodies(engine) == []


def test_a_second_writer_waits_for_the_first_and_then_goes(engine_and_gate) -> None:
    engine, _gate = engine_and_gate
    first_wrote, second_done = threading.Event(), threading.Event()

    def second() -> None:
        first_wrote.wait()
        with unit_of_work(engine) as db:
            insert(db, "second")
        second_done.set()

    worker = threading.Thread(target=second)
    worker.start()
    with unit_of_work(engine) as db:
        insert(db, "first")
        first_wrote.set()
        # The second writer is queued at the gate, not inside SQLite: it cannot finish first.
        assert not second_done.wait(0.2)
        assert bodies(engine) == []  # reads go on meanwhile (WAL is not even on here)
    worker.join(5)
    assert second_done.is_set()
    assert bodies(engine) == ["first", "second"]


def test_a_writer_that_waits_longer_than_the_timeout_gets_database_unavailable(
    engine_and_gate,
) -> None:
    engine, gate = engine_and_gate
    outcome: list[BaseException] = []

    def late_writer() -> None:
        try:
            with unit_of_work(engine) as db:
                insert(db, "late")
        except BaseException as error:  # the outcome is what is checked
            outcome.append(error)

    with unit_of_work(engine) as db:
        insert(db, "holder")
        worker = threading.Thread(target=late_writer)
        worker.start()
        worker.join(GATE_TIMEOUT_S * 10)
    # What SQLite raises after its busy timeout, which unit_of_work turns into a 503.
    assert len(outcome) == 1 and isinstance(outcome[0], DatabaseUnavailable)
    assert isinstance(outcome[0].__cause__, sa.exc.OperationalError)
    assert "database is locked" in str(outcome[0].__cause__)
    assert not gate.locked()
    assert bodies(engine) == ["holder"]
