"""accounts hardening: temporary passwords, and server-wide settings (sign-up open, the first admin)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04

`app_user.must_change_password` marks a password an admin knew (a reset, or an account an admin
made): its user must choose their own at the next sign-in. Existing users keep theirs (false).

`server_setting` holds what every backend must agree on at run time: whether an admin opened
sign-up, and the first account. The first admin is claimed by inserting the row `first_admin` in
the sign-up's own transaction, so of concurrent first sign-ups one and only one wins (the primary
key refuses the others, on SQLite and PostgreSQL alike).
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("app_user", sa.Column("must_change_password", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_table(
        "server_setting",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("value", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("server_setting")
    op.drop_column("app_user", "must_change_password")  # SQLite >= 3.35 drops columns in place
