"""the daily quota's ledger: tokens used and reserved per user and day, and open reservations

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05

The quota was checked against daily_usage before a call and counted after it, so calls that ran at
once, or ended without a usage report, escaped it. Now each provider call reserves its largest
possible cost in token_ledger first (one conditional UPDATE) and settles to what it used.

The upgrade fills the ledger from daily_usage, so today's spending still counts. The downgrade
drops both tables; daily_usage, which the usage pages read, is untouched either way.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTCDateTime = sqlmodel.sql.sqltypes.UTCDateTime


def _user_fk(primary_key: bool = False) -> sa.Column:
    return sa.Column(
        "user_id",
        sa.Integer(),
        sa.ForeignKey("app_user.id", ondelete="CASCADE"),
        nullable=False,
        primary_key=primary_key,
    )


def upgrade() -> None:
    op.create_table(
        "token_ledger",
        _user_fk(primary_key=True),
        sa.Column("day", sa.Date(), nullable=False, primary_key=True),
        sa.Column("used_tokens", sa.Integer(), nullable=False),
        sa.Column("reserved_tokens", sa.Integer(), nullable=False),
    )
    op.create_table(
        "token_reservation",
        sa.Column("id", sa.Integer(), nullable=False),
        _user_fk(),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        # A released reservation's id is never handed out again (SQLite would reuse it).
        sqlite_autoincrement=True,
    )
    op.create_index("ix_token_reservation_user_id", "token_reservation", ["user_id"])
    op.create_index("ix_token_reservation_expires_at", "token_reservation", ["expires_at"])
    op.execute(
        "INSERT INTO token_ledger (user_id, day, used_tokens, reserved_tokens) "
        "SELECT user_id, day, SUM(prompt_tokens + completion_tokens), 0 FROM daily_usage GROUP BY user_id, day"
    )


def downgrade() -> None:
    op.drop_index("ix_token_reservation_expires_at", table_name="token_reservation")
    op.drop_index("ix_token_reservation_user_id", table_name="token_reservation")
    op.drop_table("token_reservation")
    op.drop_table("token_ledger")
