"""Attached documents cut into chunks and searched by their owner: what the `search_files` tool reads.

The index is the one messages use (storage/search.py, migration 0016): FTS5 on SQLite with the owner
matched inside the index, a generated tsvector on PostgreSQL read from the owner's rows. Queries are
made of plain quoted words, so any text the model sends is a valid query.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import insert, literal, text, update
from sqlmodel import Session, col, select

from chatbot_app.storage.models import DocumentChunk
from chatbot_app.storage.search import MARK_END, MARK_START, fts5_owned_query, search_terms, tsquery

#: A chunk is about this long: a page of a PDF, a screen of code; enough context around a match.
CHUNK_CHARS = 1_500
#: Consecutive chunks share this much, so a sentence cut at a boundary is still found whole in one.
OVERLAP_CHARS = 200
#: A document gives at most this many chunks (3 MB of text): larger uploads are refused long before.
MAX_CHUNKS = 2_000


def chunks(document: str) -> list[str]:
    """The document's text in overlapping pieces, each cut at whitespace where there is some."""
    pieces: list[str] = []
    start = 0
    while start < len(document) and len(pieces) < MAX_CHUNKS:
        end = min(start + CHUNK_CHARS, len(document))
        if end < len(document):
            space = document.rfind(" ", start + CHUNK_CHARS // 2, end)
            end = space if space > 0 else end
        if piece := document[start:end].strip():
            pieces.append(piece)
        if end >= len(document):
            break
        start = max(end - OVERLAP_CHARS, start + 1)
    return pieces


def index_document(session: Session, attachment_id: int, owner_id: str, document: str) -> None:
    """Add a document's chunks to its owner's index (in the caller's transaction)."""
    session.add_all(
        DocumentChunk(attachment_id=attachment_id, owner_id=owner_id, seq=n, text=piece)
        for n, piece in enumerate(chunks(document))
    )


def copy_chunks(session: Session, copies: Mapping[int, int]) -> None:
    """Index each copy of an attachment as its original is (`copies` maps attachment ids), inside the database."""
    columns = ("owner_id", "seq", "text")
    for original, copy in copies.items():
        source = select(literal(copy), *(getattr(DocumentChunk, name) for name in columns)).where(
            DocumentChunk.attachment_id == original
        )
        session.exec(insert(DocumentChunk).from_select(["attachment_id", *columns], source))


def move_documents(session: Session, from_owner: str, to_owner: str) -> None:
    """Hand an owner's indexed documents to another (an account claiming a browser's conversations)."""
    session.exec(  # type: ignore[call-overload]
        update(DocumentChunk).where(col(DocumentChunk.owner_id) == from_owner).values(owner_id=to_owner)
    )


@dataclass(frozen=True, slots=True)
class DocumentHit:
    filename: str
    attachment_token: str
    #: Which chunk of the document (0 is its start), and the chunk's text with matches between marks.
    seq: int
    text: str


_SQLITE = text(
    """
    SELECT a.filename AS filename, a.token AS token, d.seq AS seq,
           highlight(document_chunk_fts, 0, :start, :stop) AS text
    FROM document_chunk_fts
    JOIN document_chunk AS d ON d.id = document_chunk_fts.rowid
    JOIN attachment AS a ON a.id = d.attachment_id
    WHERE document_chunk_fts MATCH :query AND d.owner_id = :owner
    ORDER BY document_chunk_fts.rank
    LIMIT :limit
    """
)

_POSTGRESQL = text(
    """
    SELECT a.filename AS filename, a.token AS token, d.seq AS seq,
           ts_headline('simple', d.text, to_tsquery('simple', :query), :options) AS text
    FROM document_chunk AS d JOIN attachment AS a ON a.id = d.attachment_id
    WHERE d.owner_id = :owner AND (d.text_tsv || ''::tsvector) @@ to_tsquery('simple', :query)
    ORDER BY ts_rank(d.text_tsv, to_tsquery('simple', :query)) DESC, d.id
    LIMIT :limit
    """
)
# The whole chunk, matches marked: the model wants the passage, not a snippet of it.
_PG_OPTIONS = f"StartSel={MARK_START}, StopSel={MARK_END}, HighlightAll=true"


def search_documents(session: Session, owner_id: str, query: str, limit: int = 5) -> list[DocumentHit]:
    """The owner's chunks that hold every word of `query`, best first; a copy of a file (an edited
    question keeps its files) is one document, so the same text is given once."""
    terms = search_terms(query)
    if not terms or limit <= 0:
        return []
    if session.get_bind().dialect.name == "sqlite":
        params = {"query": fts5_owned_query(owner_id, "text", terms), "start": MARK_START, "stop": MARK_END}
        rows = session.connection().execute(_SQLITE, {**params, "owner": owner_id, "limit": limit * 4}).all()
    else:
        params = {"query": tsquery(terms), "options": _PG_OPTIONS}
        rows = session.connection().execute(_POSTGRESQL, {**params, "owner": owner_id, "limit": limit * 4}).all()
    hits: list[DocumentHit] = []
    seen: set[str] = set()
    for row in rows:
        if row.text not in seen and len(hits) < limit:
            seen.add(row.text)
            hits.append(DocumentHit(row.filename, row.token, row.seq, row.text))
    return hits
