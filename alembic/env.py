"""Alembic environment: the URL comes from chat_app.settings, or a connection passed in."""

from __future__ import annotations

from logging.config import fileConfig

from sqlmodel import SQLModel

from alembic import context
from chat_app import models  # noqa: F401  (registers the tables on SQLModel.metadata)
from chat_app.db import get_engine
from chat_app.settings import get_settings

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = SQLModel.metadata


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run against `config.attributes["connection"]` (tests) or the configured database."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or get_settings().database_url
    # Unbounded: a schema change on a large table may rightly outlast the app's statement timeout.
    engine = get_engine(url, bounded=False)
    with engine.connect() as conn:
        _run(conn)
        conn.commit()
    engine.dispose()  # a one-off: keep no idle connection beside the app's own pool


if context.is_offline_mode():
    context.configure(url=get_settings().database_url, target_metadata=target_metadata,
                      literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
