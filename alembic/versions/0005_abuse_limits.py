"""abuse limits: search restricted to the owner inside the full-text index (SQLite)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25

A search used to match every user's rows and drop the other owners' afterwards, so its cost grew
with everyone's data (issue 11). On SQLite the FTS5 indexes now also index each row's owner, as one
token (the owner id in hex, so that ids with "-" or "_" stay one token), and a search matches
`owner : "<hex>" AND content : (...)`: FTS5 intersects the owner's short list with the terms' lists,
never visiting other owners' rows. The indexes read their text through views that add the owner.

PostgreSQL needs no schema change: its query now starts from the owner's rows (storage/search.py).

Triggers keep the owner token current when a conversation changes owner (an import being published,
an account taking over a browser identity). An external-content FTS5 row must be deleted with the
values it was indexed with, so a conversation's message entries are removed before the conversation
is deleted (its messages' own triggers then find no conversation and do nothing).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FTS_OPTIONS = "tokenize='unicode61 remove_diacritics 2', prefix='2 3'"

OLD_TRIGGERS = [
    f"{table}_fts_{event}" for table in ("message", "conversation") for event in ("insert", "delete", "update")
]

SQLITE_UPGRADE = [
    *(f"DROP TRIGGER IF EXISTS {name}" for name in OLD_TRIGGERS),
    "DROP TABLE IF EXISTS message_fts",
    "DROP TABLE IF EXISTS conversation_fts",
    """CREATE VIEW message_search AS
        SELECT m.id AS id, m.content AS content, hex(c.owner_id) AS owner
        FROM message AS m JOIN conversation AS c ON c.id = m.conversation_id""",
    """CREATE VIEW conversation_search AS
        SELECT c.rowid AS rid, c.title AS title, hex(c.owner_id) AS owner FROM conversation AS c""",
    f"""CREATE VIRTUAL TABLE message_fts USING fts5(
        content, owner, content='message_search', content_rowid='id', {FTS_OPTIONS}
    )""",
    f"""CREATE VIRTUAL TABLE conversation_fts USING fts5(
        title, owner, content='conversation_search', content_rowid='rid', {FTS_OPTIONS}
    )""",
    """CREATE TRIGGER message_fts_insert AFTER INSERT ON message BEGIN
        INSERT INTO message_fts(rowid, content, owner)
            SELECT new.id, new.content, hex(c.owner_id) FROM conversation AS c WHERE c.id = new.conversation_id;
    END""",
    """CREATE TRIGGER message_fts_delete AFTER DELETE ON message BEGIN
        INSERT INTO message_fts(message_fts, rowid, content, owner)
            SELECT 'delete', old.id, old.content, hex(c.owner_id)
            FROM conversation AS c WHERE c.id = old.conversation_id;
    END""",
    """CREATE TRIGGER message_fts_update AFTER UPDATE OF content, conversation_id ON message BEGIN
        INSERT INTO message_fts(message_fts, rowid, content, owner)
            SELECT 'delete', old.id, old.content, hex(c.owner_id)
            FROM conversation AS c WHERE c.id = old.conversation_id;
        INSERT INTO message_fts(rowid, content, owner)
            SELECT new.id, new.content, hex(c.owner_id) FROM conversation AS c WHERE c.id = new.conversation_id;
    END""",
    """CREATE TRIGGER conversation_fts_insert AFTER INSERT ON conversation BEGIN
        INSERT INTO conversation_fts(rowid, title, owner) VALUES (new.rowid, new.title, hex(new.owner_id));
    END""",
    # BEFORE: the messages' entries must go while their conversation (and so their owner) still exists.
    """CREATE TRIGGER conversation_fts_delete BEFORE DELETE ON conversation BEGIN
        INSERT INTO message_fts(message_fts, rowid, content, owner)
            SELECT 'delete', m.id, m.content, hex(old.owner_id) FROM message AS m WHERE m.conversation_id = old.id;
        INSERT INTO conversation_fts(conversation_fts, rowid, title, owner)
            VALUES ('delete', old.rowid, old.title, hex(old.owner_id));
    END""",
    """CREATE TRIGGER conversation_fts_update AFTER UPDATE OF title, owner_id ON conversation BEGIN
        INSERT INTO conversation_fts(conversation_fts, rowid, title, owner)
            VALUES ('delete', old.rowid, old.title, hex(old.owner_id));
        INSERT INTO conversation_fts(rowid, title, owner) VALUES (new.rowid, new.title, hex(new.owner_id));
    END""",
    """CREATE TRIGGER conversation_fts_owner AFTER UPDATE OF owner_id ON conversation
        WHEN old.owner_id IS NOT new.owner_id BEGIN
        INSERT INTO message_fts(message_fts, rowid, content, owner)
            SELECT 'delete', m.id, m.content, hex(old.owner_id) FROM message AS m WHERE m.conversation_id = new.id;
        INSERT INTO message_fts(rowid, content, owner)
            SELECT m.id, m.content, hex(new.owner_id) FROM message AS m WHERE m.conversation_id = new.id;
    END""",
    # Backfill with a plain INSERT ... SELECT: FTS5's 'rebuild' reads a view row by row and is far slower.
    "INSERT INTO message_fts(rowid, content, owner) SELECT id, content, owner FROM message_search",
    "INSERT INTO conversation_fts(rowid, title, owner) SELECT rid, title, owner FROM conversation_search",
]

# Back to 0003's indexes (text only) and triggers.
SQLITE_DOWNGRADE = [
    *(f"DROP TRIGGER IF EXISTS {name}" for name in [*OLD_TRIGGERS, "conversation_fts_owner"]),
    "DROP TABLE IF EXISTS message_fts",
    "DROP TABLE IF EXISTS conversation_fts",
    "DROP VIEW IF EXISTS message_search",
    "DROP VIEW IF EXISTS conversation_search",
    f"CREATE VIRTUAL TABLE message_fts USING fts5(content, content='message', content_rowid='id', {FTS_OPTIONS})",
    f"""CREATE VIRTUAL TABLE conversation_fts USING fts5(
        title, content='conversation', content_rowid='rowid', {FTS_OPTIONS}
    )""",
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
    "INSERT INTO message_fts(message_fts) VALUES ('rebuild')",
    "INSERT INTO conversation_fts(conversation_fts) VALUES ('rebuild')",
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_UPGRADE:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_DOWNGRADE:
            op.execute(statement)
