"""the voice a conversation's replies are read aloud in

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05

Read aloud (issue 22) has a voice setting in the settings panel, kept on the conversation beside
the other settings (a new chat takes the latest conversation's). A nullable ADD COLUMN: existing
rows read NULL, the speech service's default voice.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("conversation", sa.Column("voice", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("conversation", "voice")  # SQLite >= 3.35 drops columns in place
