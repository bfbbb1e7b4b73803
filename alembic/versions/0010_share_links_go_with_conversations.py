"""share links go with their conversation: remove those whose conversation is already gone

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05

Deleting a conversation now deletes its share links (storage.conversations.delete_conversation).
Links whose conversation was deleted before could no longer be listed or revoked from the UI, yet
still answered: they are removed here. The downgrade has nothing to restore.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("DELETE FROM share_link WHERE conversation_id NOT IN (SELECT id FROM conversation)")


def downgrade() -> None:
    pass
