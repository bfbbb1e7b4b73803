"""full-text index of ended replies only, and an index for the stale-reply sweep

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

A reply being written is checkpointed every 2 s (issue 2). Each checkpoint rewrote its whole
full-text entry: SQLite's FTS5 trigger deleted and re-inserted the text so far, and PostgreSQL
recomputed the stored tsvector (on every UPDATE of the row, heartbeats included) and its GIN
entries. Now a row is indexed once its status is no longer `streaming`: its final save (or the
sweep marking it `interrupted`) indexes it, and search finds a reply once it has ended. On SQLite
the view the index reads its text through leaves those rows out too, so that index and view agree
(FTS5's integrity check compares them).

On PostgreSQL the generated column is dropped and added again with the new expression, which
recomputes it for every row (as 0003's backfill did).

The sweep (`status = 'streaming' AND updated_at < ...`, every few seconds per process) and the
lookup of a conversation's running replies read a partial index of the rows still being written.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STREAMING = "'streaming'"
STREAMING_INDEX = "ix_message_streaming_updated_at"

# 0005's trigger bodies, each row filtered by `keep` (a condition on `old` or `new`, or "1" for every row).
_DELETE_OLD = """INSERT INTO message_fts(message_fts, rowid, content, owner)
            SELECT 'delete', old.id, old.content, hex(c.owner_id)
            FROM conversation AS c WHERE c.id = old.conversation_id AND {keep}"""
_INSERT_NEW = """INSERT INTO message_fts(rowid, content, owner)
            SELECT new.id, new.content, hex(c.owner_id) FROM conversation AS c
            WHERE c.id = new.conversation_id AND {keep}"""


def _sqlite_triggers(indexed: str) -> list[str]:
    """The message triggers of the full-text index, for rows where `indexed` (over alias m, old or new) holds."""
    old, new, m = (indexed.format(row=row) for row in ("old", "new", "m"))
    return [
        f"""CREATE TRIGGER message_fts_insert AFTER INSERT ON message BEGIN
        {_INSERT_NEW.format(keep=new)};
    END""",
        f"""CREATE TRIGGER message_fts_delete AFTER DELETE ON message BEGIN
        {_DELETE_OLD.format(keep=old)};
    END""",
        # On `status` too: the end of a reply is what indexes it.
        f"""CREATE TRIGGER message_fts_update AFTER UPDATE OF content, conversation_id, status ON message BEGIN
        {_DELETE_OLD.format(keep=old)};
        {_INSERT_NEW.format(keep=new)};
    END""",
        f"""CREATE TRIGGER conversation_fts_delete BEFORE DELETE ON conversation BEGIN
        INSERT INTO message_fts(message_fts, rowid, content, owner)
            SELECT 'delete', m.id, m.content, hex(old.owner_id) FROM message AS m
            WHERE m.conversation_id = old.id AND {m};
        INSERT INTO conversation_fts(conversation_fts, rowid, title, owner)
            VALUES ('delete', old.rowid, old.title, hex(old.owner_id));
    END""",
        f"""CREATE TRIGGER conversation_fts_owner AFTER UPDATE OF owner_id ON conversation
        WHEN old.owner_id IS NOT new.owner_id BEGIN
        INSERT INTO message_fts(message_fts, rowid, content, owner)
            SELECT 'delete', m.id, m.content, hex(old.owner_id) FROM message AS m
            WHERE m.conversation_id = new.id AND {m};
        INSERT INTO message_fts(rowid, content, owner)
            SELECT m.id, m.content, hex(new.owner_id) FROM message AS m WHERE m.conversation_id = new.id AND {m};
    END""",
    ]


_TRIGGERS = ["message_fts_insert", "message_fts_delete", "message_fts_update"]
_TRIGGERS += ["conversation_fts_delete", "conversation_fts_owner"]
_STREAMING_ROWS = f"""SELECT m.id, m.content, hex(c.owner_id) FROM message AS m
    JOIN conversation AS c ON c.id = m.conversation_id WHERE m.status = {STREAMING}"""


def _search_view(where: str) -> list[str]:
    """0005's view of the messages' text and owner (the index's external content), of the rows where `where`."""
    return [
        "DROP VIEW IF EXISTS message_search",
        f"""CREATE VIEW message_search AS
        SELECT m.id AS id, m.content AS content, hex(c.owner_id) AS owner
        FROM message AS m JOIN conversation AS c ON c.id = m.conversation_id WHERE {where}""",
    ]


SQLITE_UPGRADE = [
    *(f"DROP TRIGGER IF EXISTS {name}" for name in _TRIGGERS),
    # Replies being written now leave the index; they come back when they end.
    f"INSERT INTO message_fts(message_fts, rowid, content, owner) SELECT 'delete', * FROM ({_STREAMING_ROWS})",
    *_search_view(f"m.status IS NOT {STREAMING}"),
    *_sqlite_triggers(f"{{row}}.status IS NOT {STREAMING}"),
]
SQLITE_DOWNGRADE = [
    *(f"DROP TRIGGER IF EXISTS {name}" for name in _TRIGGERS),
    f"INSERT INTO message_fts(rowid, content, owner) {_STREAMING_ROWS}",
    *_search_view("1"),
    *_sqlite_triggers("1"),
]

# 0003's expression, and the same for rows that are not being written.
MESSAGE_TSV = "to_tsvector('simple'::regconfig, left(content, 200000))"
ENDED_MESSAGE_TSV = f"CASE WHEN status = {STREAMING} THEN NULL ELSE {MESSAGE_TSV} END"


def _postgres_tsv(expression: str) -> None:
    op.drop_index("ix_message_content_tsv", table_name="message")
    op.drop_column("message", "content_tsv")
    op.add_column("message", sa.Column("content_tsv", postgresql.TSVECTOR(), sa.Computed(expression, persisted=True)))
    op.create_index("ix_message_content_tsv", "message", ["content_tsv"], postgresql_using="gin")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_UPGRADE:
            op.execute(statement)
    else:
        _postgres_tsv(ENDED_MESSAGE_TSV)
    where = sa.text(f"status = {STREAMING}")
    op.create_index(STREAMING_INDEX, "message", ["updated_at"], sqlite_where=where, postgresql_where=where)


def downgrade() -> None:
    op.drop_index(STREAMING_INDEX, table_name="message")
    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_DOWNGRADE:
            op.execute(statement)
    else:
        _postgres_tsv(MESSAGE_TSV)
