"""conversation settings and prompt presets

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AutoString = sqlmodel.sql.sqltypes.AutoString
UTCDateTime = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    # Nullable: existing conversations keep following the app's defaults. Plain ALTER TABLE, not
    # batch mode: a SQLite batch rebuild would drop `conversation` and cascade-delete its messages.
    op.add_column("conversation", sa.Column("provider", AutoString(length=32), nullable=True))
    op.add_column("conversation", sa.Column("model", AutoString(length=128), nullable=True))
    op.add_column("conversation", sa.Column("temperature", sa.Float(), nullable=True))
    op.add_column("conversation", sa.Column("max_tokens", sa.Integer(), nullable=True))
    op.add_column("conversation", sa.Column("top_p", sa.Float(), nullable=True))
    op.add_column("conversation", sa.Column("system_prompt", sa.Text(), nullable=True))

    op.create_table(
        "prompt_preset",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", AutoString(length=64), nullable=False),
        sa.Column("name", AutoString(length=80), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("owner_id", "name", name="uq_prompt_preset_owner_id_name"),
    )
    op.create_index("ix_prompt_preset_owner_id", "prompt_preset", ["owner_id"])


def downgrade() -> None:
    op.drop_index("ix_prompt_preset_owner_id", table_name="prompt_preset")
    op.drop_table("prompt_preset")
    for column in ("system_prompt", "top_p", "max_tokens", "temperature", "model", "provider"):
        op.drop_column("conversation", column)  # SQLite >= 3.35 drops columns in place
