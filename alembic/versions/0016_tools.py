"""tools: each call of a tool stored with its reply, MCP servers added by admins, a conversation's tool
switches, and attached documents cut into indexed chunks for `search_files`

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06

Issue 21. New tables and nullable (or server-defaulted) ADD COLUMNs only: no rebuild on SQLite.

`document_chunk` is searched like messages (storage/search.py): on SQLite through an FTS5 table that
indexes each chunk's owner as one token (hex of the id), kept current by triggers; on PostgreSQL through a
generated tsvector column with a GIN index. Chunks are written with their attachment from now on;
documents attached before this revision are chunked here, from their stored text.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTCDateTime = sqlmodel.sql.sqltypes.UTCDateTime

FTS_OPTIONS = "tokenize='unicode61 remove_diacritics 2', prefix='2 3'"
CHUNK_TSV = "to_tsvector('simple'::regconfig, text)"

SQLITE_INDEX = [
    # The index reads its text through a view that adds the owner token (as 0005's message_search does).
    "CREATE VIEW document_chunk_search AS SELECT id, text, hex(owner_id) AS owner FROM document_chunk",
    f"""CREATE VIRTUAL TABLE document_chunk_fts USING fts5(
        text, owner, content='document_chunk_search', content_rowid='id', {FTS_OPTIONS}
    )""",
    """CREATE TRIGGER document_chunk_fts_insert AFTER INSERT ON document_chunk BEGIN
        INSERT INTO document_chunk_fts(rowid, text, owner) VALUES (new.id, new.text, hex(new.owner_id));
    END""",
    """CREATE TRIGGER document_chunk_fts_delete AFTER DELETE ON document_chunk BEGIN
        INSERT INTO document_chunk_fts(document_chunk_fts, rowid, text, owner)
        VALUES ('delete', old.id, old.text, hex(old.owner_id));
    END""",
    """CREATE TRIGGER document_chunk_fts_update AFTER UPDATE OF text, owner_id ON document_chunk BEGIN
        INSERT INTO document_chunk_fts(document_chunk_fts, rowid, text, owner)
        VALUES ('delete', old.id, old.text, hex(old.owner_id));
        INSERT INTO document_chunk_fts(rowid, text, owner) VALUES (new.id, new.text, hex(new.owner_id));
    END""",
]


#: Documents chunked per query at upgrade: each may hold megabytes of text.
CHUNKED_PER_BATCH = 20


def upgrade() -> None:
    op.add_column("conversation", sa.Column("web_search", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column("conversation", sa.Column("mcp_servers", sa.Text(), nullable=True))
    op.create_table(
        "tool_call",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("reply_id", sa.Integer(), sa.ForeignKey("message.id", ondelete="CASCADE"), nullable=False),
        sa.Column("call_id", sa.String(length=128), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("server", sa.String(length=64), nullable=False),
        sa.Column("arguments", sa.Text(), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("sources", sa.Text(), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
    )
    op.create_index("ix_tool_call_reply_id", "tool_call", ["reply_id"])
    op.create_table(
        "mcp_server",
        sa.Column("name", sa.String(length=32), primary_key=True),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("default_on", sa.Boolean(), nullable=False),
        sa.Column("trusted", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "document_chunk",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("attachment_id", sa.Integer(), sa.ForeignKey("attachment.id", ondelete="CASCADE"), nullable=False),
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
    )
    op.create_index("ix_document_chunk_attachment_id", "document_chunk", ["attachment_id"])
    op.create_index("ix_document_chunk_owner_id", "document_chunk", ["owner_id"])
    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_INDEX:
            op.execute(statement)
    else:
        op.add_column(
            "document_chunk", sa.Column("text_tsv", postgresql.TSVECTOR(), sa.Computed(CHUNK_TSV, persisted=True))
        )
        op.create_index("ix_document_chunk_text_tsv", "document_chunk", ["text_tsv"], postgresql_using="gin")
    _chunk_stored_documents()


def _chunk_stored_documents() -> None:
    from chatbot_app.storage.documents import chunks  # the same cutting as new attachments get

    bind = op.get_bind()
    select_batch = sa.text(
        "SELECT a.id, c.owner_id, a.text FROM attachment AS a JOIN message AS m ON m.id = a.message_id "
        "JOIN conversation AS c ON c.id = m.conversation_id WHERE a.text IS NOT NULL AND a.id > :after "
        "ORDER BY a.id LIMIT :n"
    )
    insert = sa.text("INSERT INTO document_chunk (attachment_id, owner_id, seq, text) VALUES (:a, :o, :s, :t)")
    after = 0
    while rows := bind.execute(select_batch, {"after": after, "n": CHUNKED_PER_BATCH}).all():
        for attachment_id, owner_id, text in rows:
            pieces = [{"a": attachment_id, "o": owner_id, "s": n, "t": piece} for n, piece in enumerate(chunks(text))]
            if pieces:
                bind.execute(insert, pieces)
        after = rows[-1][0]


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS document_chunk_fts_{name}")
        op.execute("DROP TABLE IF EXISTS document_chunk_fts")
        op.execute("DROP VIEW IF EXISTS document_chunk_search")
    op.drop_table("document_chunk")
    op.drop_table("mcp_server")
    op.drop_table("tool_call")
    op.drop_column("conversation", "mcp_servers")
    op.drop_column("conversation", "web_search")
