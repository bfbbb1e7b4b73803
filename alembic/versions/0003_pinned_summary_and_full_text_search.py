"""pinned conversations, summaries, and full-text search

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

Search is kept current by the database itself, so no write path can forget it:
SQLite gets FTS5 external-content tables maintained by triggers, PostgreSQL gets stored
generated tsvector columns with GIN indexes. Neither is part of the SQLModel tables;
alembic/env.py hides them from autogenerate (see chatbot_app/storage/search.py).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# prefix='2 3' adds indexes of 2- and 3-letter prefixes: without them a short prefix such as
# "th" must merge the entries of every word starting with it, on every query.
# Both FTS5 tables read their text from the real tables (external content), so the text is
# stored once. conversation has a string primary key, so its FTS rows are keyed by the
# implicit rowid. Caution for later migrations: rebuilding `conversation` (batch mode on
# SQLite copies it into a new table) drops these triggers and may renumber rowids, so such a
# migration must recreate the triggers and run the 'rebuild' command below.
SQLITE_UPGRADE = [
    """CREATE VIRTUAL TABLE message_fts USING fts5(
        content, content='message', content_rowid='id', tokenize='unicode61 remove_diacritics 2', prefix='2 3'
    )""",
    """CREATE VIRTUAL TABLE conversation_fts USING fts5(
        title, content='conversation', content_rowid='rowid', tokenize='unicode61 remove_diacritics 2', prefix='2 3'
    )""",
    # An external-content index must be told the old text to remove it, hence 'delete' with old values.
    """CREATE TRIGGER message_fts_insert AFTER INSERT ON message BEGIN
        INSERT INTO message_fts(rowid, content) VALUES (new.id, new.content);
    END""",
    """CREATE TRIGGER message_fts_delete AFTER DELETE ON message BEGIN
        INSERT INTO message_fts(message_fts, rowid, content) VALUES ('delete', old.id, old.content);
    END""",
    """CREATE TRIGGER message_fts_update AFTER UPDATE OF content ON message BEGIN
        INSERT INTO message_fts(message_fts, rowid, content) VALUES ('delete', old.id, old.content);
        INSERT INTO message_fts(rowid, content) VALUES (new.id, new.content);
    END""",
    """CREATE TRIGGER conversation_fts_insert AFTER INSERT ON conversation BEGIN
        INSERT INTO conversation_fts(rowid, title) VALUES (new.rowid, new.title);
    END""",
    """CREATE TRIGGER conversation_fts_delete AFTER DELETE ON conversation BEGIN
        INSERT INTO conversation_fts(conversation_fts, rowid, title) VALUES ('delete', old.rowid, old.title);
    END""",
    """CREATE TRIGGER conversation_fts_update AFTER UPDATE OF title ON conversation BEGIN
        INSERT INTO conversation_fts(conversation_fts, rowid, title) VALUES ('delete', old.rowid, old.title);
        INSERT INTO conversation_fts(rowid, title) VALUES (new.rowid, new.title);
    END""",
    # Backfill: index the rows written before this migration.
    "INSERT INTO message_fts(message_fts) VALUES ('rebuild')",
    "INSERT INTO conversation_fts(conversation_fts) VALUES ('rebuild')",
]

SQLITE_DOWNGRADE = [
    *(
        f"DROP TRIGGER IF EXISTS {table}_fts_{event}"
        for table in ("message", "conversation")
        for event in ("insert", "delete", "update")
    ),
    "DROP TABLE IF EXISTS message_fts",
    "DROP TABLE IF EXISTS conversation_fts",
]

# 'simple': no stemming and no stop words, so any word (and any prefix of it) can be found in
# any language. Only the first 200,000 characters are indexed: a tsvector is limited to 1 MB,
# and an over-long one would make the INSERT of the whole message fail.
MESSAGE_TSV = "to_tsvector('simple'::regconfig, left(content, 200000))"
TITLE_TSV = "to_tsvector('simple'::regconfig, title)"


def upgrade() -> None:
    # Plain ALTER TABLE ... ADD COLUMN, not batch mode: for a column with a server default,
    # batch mode copies `conversation` into a new table and drops the old one, and on SQLite with
    # foreign keys enforced that DROP TABLE cascades to (deletes) every message.
    # Existing conversations become unpinned via the server default.
    op.add_column("conversation", sa.Column("pinned", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column("conversation", sa.Column("summary", sa.Text(), nullable=True))
    op.create_index("ix_conversation_owner_id_pinned_updated_at", "conversation", ["owner_id", "pinned", "updated_at"])

    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_UPGRADE:
            op.execute(statement)
    else:
        # A stored generated column is computed for existing rows as it is added: that is the backfill.
        op.add_column(
            "message", sa.Column("content_tsv", postgresql.TSVECTOR(), sa.Computed(MESSAGE_TSV, persisted=True))
        )
        op.add_column(
            "conversation", sa.Column("title_tsv", postgresql.TSVECTOR(), sa.Computed(TITLE_TSV, persisted=True))
        )
        op.create_index("ix_message_content_tsv", "message", ["content_tsv"], postgresql_using="gin")
        op.create_index("ix_conversation_title_tsv", "conversation", ["title_tsv"], postgresql_using="gin")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_DOWNGRADE:
            op.execute(statement)
    else:
        op.drop_index("ix_conversation_title_tsv", table_name="conversation")
        op.drop_index("ix_message_content_tsv", table_name="message")
        op.drop_column("conversation", "title_tsv")
        op.drop_column("message", "content_tsv")

    op.drop_index("ix_conversation_owner_id_pinned_updated_at", table_name="conversation")
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+), not batch mode, for the same reason.
    op.drop_column("conversation", "summary")
    op.drop_column("conversation", "pinned")
