"""unit_of_work: a saturated connection pool is a 503 (DatabaseUnavailable), not a 500."""

from __future__ import annotations

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
