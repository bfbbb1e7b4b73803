"""a share link keeps its token, for /account to list

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05

/account lists the user's share links with the link itself, to copy again or revoke (issue 19). The
token was kept only as its SHA-256 digest, which protected nothing the row's own snapshot does not
already give away. A plain nullable ADD COLUMN: links made before it read NULL and can only be revoked.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("share_link", sa.Column("token", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("share_link", "token")
