"""Initial schema: user_sessions and the append-only audit_log.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STRING = sqlmodel.sql.sqltypes.AutoString
_TIMESTAMP = sa.DateTime(timezone=True)

# The database itself refuses to rewrite history: application bugs and ad-hoc SQL alike.
_SQLITE_TRIGGERS = [
    """CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
       BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END""",
    """CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
       BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END""",
]
_POSTGRES_TRIGGERS = [
    """CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$""",
    """CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
       FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change()""",
    """CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
       FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change()""",
]


def upgrade() -> None:
    op.create_table(
        "user_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uuid", _STRING(length=36), nullable=False),
        sa.Column("status", _STRING(length=16), nullable=False),
        sa.Column("created_at", _TIMESTAMP, nullable=False),
        sa.Column("last_seen_at", _TIMESTAMP, nullable=False),
        sa.Column("ended_at", _TIMESTAMP, nullable=True),
        sa.Column("end_reason", _STRING(length=32), nullable=True),
        sa.Column("predecessor_id", sa.Integer(), nullable=True),
        sa.Column("user_agent", _STRING(length=256), nullable=True),
        sa.ForeignKeyConstraint(["predecessor_id"], ["user_sessions.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("uuid"),
    )
    with op.batch_alter_table("user_sessions") as batch_op:
        batch_op.create_index(
            batch_op.f("ix_user_sessions_predecessor_id"), ["predecessor_id"], unique=False
        )
        batch_op.create_index(
            "ix_user_sessions_status_last_seen_at", ["status", "last_seen_at"], unique=False
        )

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", _TIMESTAMP, nullable=False),
        sa.Column("event", _STRING(length=32), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=True),
        sa.Column("session_ref", _STRING(length=16), nullable=True),
        sa.Column("actor", _STRING(length=16), nullable=False),
        sa.Column("ip_hash", _STRING(length=16), nullable=True),
        sa.Column("request_id", _STRING(length=64), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["user_sessions.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_log") as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_event"), ["event"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_log_session_id"), ["session_id"], unique=False)

    dialect = op.get_bind().dialect.name
    for statement in _SQLITE_TRIGGERS if dialect == "sqlite" else _POSTGRES_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_refuse_change()")
    with op.batch_alter_table("audit_log") as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_session_id"))
        batch_op.drop_index(batch_op.f("ix_audit_log_event"))
    op.drop_table("audit_log")
    with op.batch_alter_table("user_sessions") as batch_op:
        batch_op.drop_index("ix_user_sessions_status_last_seen_at")
        batch_op.drop_index(batch_op.f("ix_user_sessions_predecessor_id"))
    op.drop_table("user_sessions")
