"""a Stop written on the reply's row

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05

A Stop for a job on another backend process travels over Redis Pub/Sub, which loses it when Redis
blips. It is now also written on the reply's row, where the job's process reads it in its next
checkpoint round (issue 19). A plain ADD COLUMN with a server default: existing rows read false,
and SQLite needs no table rebuild.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("message", sa.Column("stop_requested", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    op.drop_column("message", "stop_requested")
