"""session_files: uploaded files and their lifecycle.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STRING = sqlmodel.sql.sqltypes.AutoString
_TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "session_files",
        sa.Column("id", _STRING(length=36), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("object_key", _STRING(length=128), nullable=False),
        sa.Column("filename", _STRING(length=255), nullable=False),
        sa.Column("content_type", _STRING(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", _STRING(length=64), nullable=True),
        sa.Column("status", _STRING(length=16), nullable=False),
        sa.Column("created_at", _TIMESTAMP, nullable=False),
        sa.Column("deleted_at", _TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(["session_id"], ["user_sessions.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("object_key"),
    )
    with op.batch_alter_table("session_files") as batch_op:
        batch_op.create_index(
            "ix_session_files_session_id_status", ["session_id", "status"], unique=False
        )
        batch_op.create_index(
            "ix_session_files_status_created_at", ["status", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("session_files") as batch_op:
        batch_op.drop_index("ix_session_files_status_created_at")
        batch_op.drop_index("ix_session_files_session_id_status")
    op.drop_table("session_files")
