"""attachments and reasoning

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25

Files sent with a message are stored in the database (bytea on PostgreSQL, blob on SQLite) so
that every backend process sees them; a reply's reasoning gets its own column.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AutoString = sqlmodel.sql.sqltypes.AutoString
UTCDateTime = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    # Plain ALTER TABLE, not batch mode: a SQLite batch rebuild of `message` would drop its
    # full-text triggers (0003) and cascade-delete through foreign keys.
    op.add_column("message", sa.Column("reasoning", sa.Text(), nullable=True))
    op.add_column("message", sa.Column("thinking_ms", sa.Integer(), nullable=True))
    op.create_table(
        "attachment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("token", AutoString(length=64), nullable=False),
        sa.Column("filename", AutoString(length=255), nullable=False),
        sa.Column("media_type", AutoString(length=100), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["message_id"], ["message.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token"),
    )
    op.create_index("ix_attachment_message_id", "attachment", ["message_id"])


def downgrade() -> None:
    op.drop_index("ix_attachment_message_id", table_name="attachment")
    op.drop_table("attachment")
    op.drop_column("message", "thinking_ms")
    op.drop_column("message", "reasoning")  # SQLite >= 3.35 drops columns in place
