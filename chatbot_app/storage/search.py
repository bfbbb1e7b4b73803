"""Full-text search over an owner's message contents and conversation titles.

The indexes live in the database and are kept current by it (migrations 0003 and 0005): FTS5
tables with triggers on SQLite, generated tsvector columns with GIN indexes on PostgreSQL.
User text never becomes query syntax: it is cut into plain words, each quoted and
prefix-matched (from two letters on), so any input is a valid query.

A search costs what the owner's own data costs, not everyone's: on SQLite the owner is part of
the full-text match (the FTS5 tables index each row's owner as one token), on PostgreSQL the
query starts from the owner's conversations and tests only their messages.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, TextClause, bindparam, text
from sqlmodel import Session

MARK_START = "\x02"
MARK_END = "\x03"
MAX_TERMS = 16
MAX_TERM_CHARS = 64
MIN_PREFIX_CHARS = 2
# Only the newest CANDIDATES matches (per kind) are ranked: ranking every match of a common
# word costs time in proportion to the whole history. Rarer queries are ranked in full.
CANDIDATES = 500
# Kept inside a term (between word characters) so that "example.com" or "foo-bar" stays one
# term: PostgreSQL's parser indexes hosts, emails and hyphenated words as single lexemes.
TERM_JOINERS = frozenset(".-_@/")

# Full-text objects built by migrations 0003 and 0016 that the SQLModel tables do not describe.
SEARCH_TABLES = frozenset({"message_fts", "conversation_fts", "document_chunk_fts"})
FTS5_SHADOW_SUFFIXES = ("_data", "_idx", "_docsize", "_config", "_content")
SEARCH_COLUMNS = frozenset({("message", "content_tsv"), ("conversation", "title_tsv"), ("document_chunk", "text_tsv")})
SEARCH_INDEXES = frozenset({"ix_message_content_tsv", "ix_conversation_title_tsv", "ix_document_chunk_text_tsv"})


def include_name(name: str | None, type_: str, parent_names: dict[str, str | None]) -> bool:
    """Alembic hook: leave the full-text search objects out of schema comparison."""
    if type_ == "table" and name is not None:
        base = next((name.removesuffix(s) for s in FTS5_SHADOW_SUFFIXES if name.endswith(s)), name)
        return base not in SEARCH_TABLES
    if type_ == "column":
        return (parent_names.get("table_name"), name) not in SEARCH_COLUMNS
    if type_ == "index":
        return name not in SEARCH_INDEXES
    return True


@dataclass(frozen=True)
class SearchHit:
    """A matching message (message_id set) or conversation title (message_id None)."""

    conversation_id: str
    title: str
    message_id: int | None
    role: str | None
    snippet: str  # matched words are wrapped in MARK_START ... MARK_END


def _is_word_char(char: str) -> bool:
    # Letters, digits and combining marks (so scripts such as Devanagari keep words whole).
    return unicodedata.category(char)[0] in "LNM"


def search_terms(query: str) -> list[str]:
    """The words of `query` as safe terms: only letters, digits, marks and inner joiners.

    No term contains a quote, backslash, operator or whitespace, so each can be quoted
    verbatim in an FTS5 or tsquery expression.
    """
    query = unicodedata.normalize("NFKC", query)
    kept = "".join(c if _is_word_char(c) or c in TERM_JOINERS else " " for c in query)
    terms: list[str] = []
    seen: set[str] = set()
    for raw in kept.split():
        # A term starts with a letter or digit and ends with a word character.
        start = next((i for i, c in enumerate(raw) if unicodedata.category(c)[0] in "LN"), len(raw))
        term = raw[start : MAX_TERM_CHARS + start].rstrip("".join(TERM_JOINERS))
        if term and term.casefold() not in seen:
            seen.add(term.casefold())
            terms.append(term)
        if len(terms) == MAX_TERMS:
            break
    return terms


def _prefix(term: str) -> bool:
    # A one-letter prefix matches nearly every row and is useless for finding anything; it would
    # also be the slowest query there is. Longer terms match as prefixes ("pyth" finds "python").
    return len(term) >= MIN_PREFIX_CHARS


def fts5_query(terms: list[str]) -> str:
    """All terms must match; each is a quoted phrase, its last token matched as a prefix."""
    return " ".join(f'"{term}"*' if _prefix(term) else f'"{term}"' for term in terms)


def owner_token(owner_id: str) -> str:
    """The owner as the FTS5 tables index it: SQLite's hex() of the id, one token whatever the id holds."""
    return owner_id.encode("utf-8").hex().upper()


def fts5_owned_query(owner_id: str, column: str, terms: list[str]) -> str:
    """The terms in `column`, among the owner's rows only (FTS5 intersects the two, row lists first)."""
    return f'owner : "{owner_token(owner_id)}" AND {column} : ({fts5_query(terms)})'


def tsquery(terms: list[str]) -> str:
    """The same for to_tsquery: quoted lexemes (re-parsed by the 'simple' config), prefixes with :*."""
    return " & ".join(f"'{term}':*" if _prefix(term) else f"'{term}'" for term in terms)


def search(session: Session, owner_id: str, query: str, limit: int = 20) -> list[SearchHit]:
    """The owner's conversations whose title matches, then messages that match, best first."""
    terms = search_terms(query)
    if not terms or limit <= 0:
        return []
    if session.get_bind().dialect.name == "sqlite":
        hits = _search_sqlite(session, owner_id, terms, limit)
    else:
        hits = _search_postgresql(session, owner_id, tsquery(terms), limit)
    return [
        SearchHit(
            conversation_id=row.conversation_id,
            title=row.title,
            message_id=row.message_id,
            role=row.role,
            # One line for a result list; \x02 and \x03 are not whitespace, so marks survive.
            snippet=" ".join(row.snippet.split()),
        )
        for row in hits
    ]


# Title matches come first: a conversation named after the query is the likeliest target.
# Each kind takes two statements: rank the newest candidates and keep the best `limit`, then
# build snippets for those only (snippet functions read the whole text; one MATCH evaluation
# over the rowid range of the survivors, rather than one per row, as FTS5 prefix queries set
# up their doclists on every evaluation).

_SQLITE_TITLES_TOP = text(
    """
    WITH candidates AS (
        SELECT conversation_fts.rowid AS rid, conversation_fts.rank AS rank
        FROM conversation_fts JOIN conversation AS c ON c.rowid = conversation_fts.rowid
        WHERE conversation_fts MATCH :query AND c.owner_id = :owner
        ORDER BY conversation_fts.rowid DESC
        LIMIT :candidates
    )
    SELECT rid FROM candidates ORDER BY rank, rid DESC LIMIT :limit
    """
)

_SQLITE_TITLES_SNIPPETS = text(
    """
    SELECT conversation_fts.rowid AS rid, c.id AS conversation_id, c.title AS title,
           NULL AS message_id, NULL AS role, highlight(conversation_fts, 0, :start, :stop) AS snippet
    FROM conversation_fts JOIN conversation AS c ON c.rowid = conversation_fts.rowid
    WHERE conversation_fts MATCH :query AND conversation_fts.rowid BETWEEN :low AND :high
      AND +conversation_fts.rowid IN :rids
    """
).bindparams(bindparam("rids", expanding=True))

_SQLITE_MESSAGES_TOP = text(
    """
    WITH candidates AS (
        SELECT message_fts.rowid AS rid, message_fts.rank AS rank
        FROM message_fts
        JOIN message AS m ON m.id = message_fts.rowid
        JOIN conversation AS c ON c.id = m.conversation_id
        WHERE message_fts MATCH :query AND c.owner_id = :owner
        ORDER BY message_fts.rowid DESC
        LIMIT :candidates
    )
    SELECT rid FROM candidates ORDER BY rank, rid DESC LIMIT :limit
    """
)

# The unary + on rowid keeps the IN list a plain filter: as an index constraint, SQLite would
# run the full-text query once per listed rowid.
_SQLITE_MESSAGES_SNIPPETS = text(
    """
    SELECT message_fts.rowid AS rid, m.conversation_id AS conversation_id, c.title AS title,
           m.id AS message_id, m.role AS role, snippet(message_fts, 0, :start, :stop, '…', 16) AS snippet
    FROM message_fts
    JOIN message AS m ON m.id = message_fts.rowid
    JOIN conversation AS c ON c.id = m.conversation_id
    WHERE message_fts MATCH :query AND message_fts.rowid BETWEEN :low AND :high
      AND +message_fts.rowid IN :rids
    """
).bindparams(bindparam("rids", expanding=True))


def _sqlite_kind(
    connection: Connection, top: TextClause, snippets: TextClause, params: dict[str, object]
) -> list[Row[Any]]:
    rids = list(connection.execute(top, params).scalars())
    if not rids:
        return []
    rows = connection.execute(snippets, {**params, "rids": rids, "low": min(rids), "high": max(rids)}).all()
    order = {rid: n for n, rid in enumerate(rids)}
    return sorted(rows, key=lambda row: order[row.rid])


def _search_sqlite(session: Session, owner_id: str, terms: list[str], limit: int) -> list[Row[Any]]:
    connection = session.connection()
    params: dict[str, object] = {
        "query": fts5_owned_query(owner_id, "title", terms),
        "owner": owner_id,
        "limit": limit,
        "candidates": CANDIDATES,
        "start": MARK_START,
        "stop": MARK_END,
    }
    titles = _sqlite_kind(connection, _SQLITE_TITLES_TOP, _SQLITE_TITLES_SNIPPETS, params)
    if len(titles) == limit:
        return titles
    params.update(limit=limit - len(titles), query=fts5_owned_query(owner_id, "content", terms))
    return titles + _sqlite_kind(connection, _SQLITE_MESSAGES_TOP, _SQLITE_MESSAGES_SNIPPETS, params)


# ShortWord=0 keeps short words at fragment edges; HighlightAll shows a whole title.
_PG_TITLE_OPTIONS = f"StartSel={MARK_START}, StopSel={MARK_END}, HighlightAll=true"
_PG_MESSAGE_OPTIONS = f"StartSel={MARK_START}, StopSel={MARK_END}, MaxWords=24, MinWords=10, ShortWord=0"

# Two plans. For an owner with up to OWNER_FIRST_MAX_ROWS messages: their rows first (the owner_id
# index, then the match tested on those rows only), written so that no index can serve the match
# ("|| ''::tsvector"); otherwise the planner reads the GIN index, whose cost is every owner's
# matches (350 ms for "the" beside 100,000 others' messages). For a larger owner, testing every own
# row costs more than the GIN index (1.5 s at 80,000 messages), and their own matches are a large
# share of what the index returns: the match comes first there.
OWNER_FIRST_MAX_ROWS = 20_000

_PG_OWN_SIZE = text(
    """
    SELECT count(*) FROM (
        SELECT 1 FROM conversation AS c JOIN message AS m ON m.conversation_id = c.id
        WHERE c.owner_id = :owner LIMIT :cap
    ) AS own
    """
)

_PG_TITLE_MATCH = {
    True: "c.owner_id = :owner AND (c.title_tsv || ''::tsvector) @@ to_tsquery('simple', :query)",
    False: "c.title_tsv @@ to_tsquery('simple', :query) AND c.owner_id = :owner",
}
_PG_MESSAGE_CANDIDATES = {
    True: """
        SELECT m.id, m.content_tsv
        FROM (SELECT c.id FROM conversation AS c WHERE c.owner_id = :owner) AS own CROSS JOIN LATERAL (
            SELECT m.id, m.content_tsv FROM message AS m
            WHERE m.conversation_id = own.id AND (m.content_tsv || ''::tsvector) @@ to_tsquery('simple', :query)
            ORDER BY m.id DESC
            LIMIT :candidates
        ) AS m
        ORDER BY m.id DESC
        LIMIT :candidates""",
    False: """
        SELECT m.id, m.content_tsv
        FROM message AS m JOIN conversation AS c ON c.id = m.conversation_id
        WHERE m.content_tsv @@ to_tsquery('simple', :query) AND c.owner_id = :owner
        ORDER BY m.id DESC
        LIMIT :candidates""",
}

_PG_TITLES = {
    owner_first: text(
        f"""
    WITH candidates AS (
        SELECT c.id, c.updated_at, c.title_tsv
        FROM conversation AS c
        WHERE {match}
        ORDER BY c.updated_at DESC
        LIMIT :candidates
    ), top AS (
        SELECT id, updated_at, ts_rank(title_tsv, to_tsquery('simple', :query)) AS rank
        FROM candidates
        ORDER BY rank DESC, updated_at DESC
        LIMIT :limit
    )
    SELECT c.id AS conversation_id, c.title AS title, NULL::integer AS message_id, NULL::text AS role,
           ts_headline('simple', c.title, to_tsquery('simple', :query), :options) AS snippet
    FROM top JOIN conversation AS c ON c.id = top.id
    ORDER BY top.rank DESC, top.updated_at DESC
    """
    )
    for owner_first, match in _PG_TITLE_MATCH.items()
}

_PG_MESSAGES = {
    owner_first: text(
        f"""
    WITH candidates AS ({candidates}
    ), top AS (
        SELECT id, ts_rank(content_tsv, to_tsquery('simple', :query)) AS rank
        FROM candidates
        ORDER BY rank DESC, id DESC
        LIMIT :limit
    )
    SELECT m.conversation_id AS conversation_id, c.title AS title, m.id AS message_id, m.role AS role,
           ts_headline('simple', m.content, to_tsquery('simple', :query), :options) AS snippet
    FROM top
    JOIN message AS m ON m.id = top.id
    JOIN conversation AS c ON c.id = m.conversation_id
    ORDER BY top.rank DESC, top.id DESC
    """
    )
    for owner_first, candidates in _PG_MESSAGE_CANDIDATES.items()
}


def _search_postgresql(session: Session, owner_id: str, query: str, limit: int) -> list[Row[Any]]:
    connection = session.connection()
    own_rows = connection.execute(_PG_OWN_SIZE, {"owner": owner_id, "cap": OWNER_FIRST_MAX_ROWS + 1}).scalar_one()
    owner_first = own_rows <= OWNER_FIRST_MAX_ROWS
    params: dict[str, object] = {
        "query": query,
        "owner": owner_id,
        "limit": limit,
        "candidates": CANDIDATES,
        "options": _PG_TITLE_OPTIONS,
    }
    titles = list(connection.execute(_PG_TITLES[owner_first], params).all())
    if len(titles) == limit:
        return titles
    params.update(limit=limit - len(titles), options=_PG_MESSAGE_OPTIONS)
    return titles + list(connection.execute(_PG_MESSAGES[owner_first], params).all())
