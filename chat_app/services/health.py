"""Dependency checks for the health endpoint."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from chat_app.errors import DatabaseUnavailable


def check_database(*, engine: Engine) -> None:
    """Run `SELECT 1`; raise DatabaseUnavailable when the database does not answer."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable() from exc
