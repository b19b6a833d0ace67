"""chat_messages and file_chunks: the conversation and the retrieval passages.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STRING = sqlmodel.sql.sqltypes.AutoString
_TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "chat_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("role", _STRING(length=16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("status", _STRING(length=16), nullable=False),
        sa.Column("created_at", _TIMESTAMP, nullable=False),
        sa.Column("citations", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["session_id"], ["user_sessions.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("chat_messages") as batch_op:
        batch_op.create_index("ix_chat_messages_session_id_id", ["session_id", "id"], unique=False)
    op.create_table(
        "file_chunks",
        sa.Column("file_id", _STRING(length=36), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("page", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["file_id"], ["session_files.id"]),
        sa.PrimaryKeyConstraint("file_id", "ordinal"),
    )


def downgrade() -> None:
    op.drop_table("file_chunks")
    with op.batch_alter_table("chat_messages") as batch_op:
        batch_op.drop_index("ix_chat_messages_session_id_id")
    op.drop_table("chat_messages")
