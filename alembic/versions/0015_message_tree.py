"""messages form a tree: each has a parent, and a conversation has a current leaf

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06

Issue 20: an edit or a new reply becomes a sibling instead of deleting what followed. Every existing
conversation becomes a single path, losing nothing: each message's parent is the one before it (by id),
and the current leaf is the newest. Nullable ADD COLUMNs and UPDATEs only, so SQLite changes the tables
in place (never a rebuild) and PostgreSQL takes no long lock beyond the UPDATEs.

The downgrade keeps each conversation's current path and DROPS EVERY OTHER BRANCH: the schema before
this revision can hold one thread only.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("message", sa.Column("parent_id", sa.Integer(), nullable=True))
    op.add_column("conversation", sa.Column("current_leaf_id", sa.Integer(), nullable=True))
    # Correlated subqueries that ix_message_conversation_id_id answers with one index probe per row.
    op.execute(
        "UPDATE message SET parent_id = (SELECT MAX(older.id) FROM message AS older "
        "WHERE older.conversation_id = message.conversation_id AND older.id < message.id)"
    )
    op.execute(
        "UPDATE conversation SET current_leaf_id = "
        "(SELECT MAX(message.id) FROM message WHERE message.conversation_id = conversation.id)"
    )
    op.create_index("ix_message_conversation_id_parent_id", "message", ["conversation_id", "parent_id"])


def downgrade() -> None:
    # Keep each conversation's current path: walk up from its leaf, and delete every message not reached.
    op.execute(
        "WITH RECURSIVE kept(id, parent_id) AS ("
        " SELECT message.id, message.parent_id FROM message"
        " JOIN conversation ON conversation.current_leaf_id = message.id"
        " UNION ALL"
        " SELECT message.id, message.parent_id FROM message JOIN kept ON message.id = kept.parent_id"
        ") DELETE FROM message WHERE NOT EXISTS (SELECT 1 FROM kept WHERE kept.id = message.id)"
    )
    op.drop_index("ix_message_conversation_id_parent_id", table_name="message")
    op.drop_column("conversation", "current_leaf_id")  # SQLite >= 3.35 drops columns in place
    op.drop_column("message", "parent_id")
