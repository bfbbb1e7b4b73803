"""Full-text search of messages and titles, SQLite (FTS5) and PostgreSQL (tsvector), kept current by the database."""

from __future__ import annotations

import contextlib
import runpy
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.config import Config
from sqlalchemy import Engine, text

from alembic import command
from chatbot_app.config import PROJECT_ROOT
from chatbot_app.storage import conversations as store
from chatbot_app.storage.database import make_engine, session_scope
from chatbot_app.storage.documents import search_documents
from chatbot_app.storage.models import Conversation, MessageStatus
from chatbot_app.storage.search import MARK_END, MARK_START, SearchHit, search, search_terms
from tests.conftest import new_database

CHUNKED_PER_BATCH = runpy.run_path(str(PROJECT_ROOT / "alembic/versions/0016_tools.py"))["CHUNKED_PER_BATCH"]

OWNER = "owner-" + "a" * 20
STRANGER = "stranger-" + "b" * 20


def new_conversation(engine: Engine, title: str = "New chat", owner: str = OWNER) -> str:
    with session_scope(engine) as session:
        return store.create_conversation(session, owner, title=title).id


def add(
    engine: Engine,
    conversation_id: str,
    content: str,
    role: str = "user",
    status: MessageStatus = MessageStatus.COMPLETE,
) -> int:
    with session_scope(engine) as session:
        conversation = session.get(Conversation, conversation_id)
        assert conversation is not None
        message_id = store.add_message(session, conversation, role, content, status=status).id
        assert message_id is not None
        return message_id


def find(engine: Engine, query: str, owner: str = OWNER, limit: int = 20) -> list[SearchHit]:
    with session_scope(engine) as session:
        return search(session, owner, query, limit=limit)


def marked(snippet: str) -> list[str]:
    """The highlighted words of a snippet."""
    return [part.split(MARK_END)[0] for part in snippet.split(MARK_START)[1:]]


@pytest.fixture
def library(engine: Engine) -> dict[str, str]:
    """A few conversations of OWNER and one of STRANGER; returns their ids by name."""
    ids = {
        "python": new_conversation(engine, "Python packaging questions"),
        "trip": new_conversation(engine, "Weekend in Lisbon"),
        "foreign": new_conversation(engine, "Stranger's python notes", owner=STRANGER),
    }
    add(engine, ids["python"], "How do I publish a package with pyproject.toml?")
    add(
        engine,
        ids["python"],
        "Build it with `python -m build`, then upload the wheel with twine. " * 3
        + "Remember to bump the version number before every release.",
        role="assistant",
    )
    add(engine, ids["trip"], "Which neighbourhoods should we visit? We like tiles and pastries.")
    add(engine, ids["trip"], "Alfama for the views; Belém for the pastéis de nata.", role="assistant")
    add(engine, ids["foreign"], "Secret python tricks and a banana bread recipe")
    return ids


def test_a_message_match_names_its_conversation_message_and_role(engine: Engine, library: dict[str, str]) -> None:
    hits = find(engine, "twine")

    assert len(hits) == 1
    hit = hits[0]
    assert (hit.conversation_id, hit.title, hit.role) == (library["python"], "Python packaging questions", "assistant")
    assert hit.message_id is not None
    assert marked(hit.snippet) == ["twine"]


def test_a_title_match_has_no_message(engine: Engine, library: dict[str, str]) -> None:
    hits = find(engine, "lisbon")

    assert hits == [
        SearchHit(library["trip"], "Weekend in Lisbon", None, None, f"Weekend in {MARK_START}Lisbon{MARK_END}")
    ]


def test_title_matches_come_before_message_matches(engine: Engine, library: dict[str, str]) -> None:
    hits = find(engine, "python")

    assert [(h.conversation_id, h.message_id is None) for h in hits] == [
        (library["python"], True),
        (library["python"], False),
    ]
    assert [marked(h.snippet)[0].lower() for h in hits] == ["python", "python"]


def test_another_owner_finds_nothing_of_mine(engine: Engine, library: dict[str, str]) -> None:
    assert find(engine, "twine", owner=STRANGER) == []
    assert find(engine, "lisbon", owner=STRANGER) == []
    assert find(engine, "banana") == []
    assert {h.conversation_id for h in find(engine, "python", owner=STRANGER)} == {library["foreign"]}
    assert find(engine, "python", owner="nobody") == []


def test_a_prefix_finds_the_whole_word(engine: Engine, library: dict[str, str]) -> None:
    assert {h.conversation_id for h in find(engine, "pyth")} == {library["python"]}
    assert [marked(h.snippet) for h in find(engine, "neighbourh")] == [["neighbourhoods"]]


def test_every_term_must_match_and_each_may_be_a_prefix(engine: Engine, library: dict[str, str]) -> None:
    hits = find(engine, "upl whe")

    assert len(hits) == 1
    assert sorted(set(marked(hits[0].snippet))) == ["upload", "wheel"]
    assert find(engine, "twine lisbon") == []


def test_search_ignores_case(engine: Engine, library: dict[str, str]) -> None:
    assert [h.role for h in find(engine, "TWINE")] == ["assistant"]


def test_the_message_that_matches_best_comes_first(engine: Engine) -> None:
    conversation_id = new_conversation(engine)
    once = add(engine, conversation_id, "Some words about gardening, and one mention of kombucha among many others.")
    often = add(engine, conversation_id, "kombucha kombucha kombucha")

    assert [h.message_id for h in find(engine, "kombucha")] == [often, once]


def test_a_long_message_gives_a_short_snippet_around_the_match(engine: Engine) -> None:
    conversation_id = new_conversation(engine)
    filler = " ".join(f"word{n}" for n in range(400))
    add(engine, conversation_id, f"{filler} the zeppelin landed {filler}")

    [hit] = find(engine, "zeppelin")

    assert MARK_START + "zeppelin" + MARK_END in hit.snippet
    assert len(hit.snippet) < 400


def test_a_huge_message_is_stored_and_found(engine: Engine) -> None:
    # 1.3 MB of distinct words: PostgreSQL's tsvector of all of it would exceed its 1 MB limit
    # and fail the INSERT; the index covers the first 200,000 characters instead.
    conversation_id = new_conversation(engine)
    content = "okapi " + " ".join(f"u{n:07x}" for n in range(130_000))

    message_id = add(engine, conversation_id, content)

    assert [h.message_id for h in find(engine, "okapi")] == [message_id]


def test_the_limit_caps_the_hits(engine: Engine) -> None:
    conversation_id = new_conversation(engine, "quokka facts")
    for n in range(30):
        add(engine, conversation_id, f"quokka fact number {n}")

    assert len(find(engine, "quokka", limit=7)) == 7
    assert len(find(engine, "quokka")) == 20
    assert find(engine, "quokka", limit=0) == []


NASTY_QUERIES = [
    '"',
    '"""',
    "'",
    "''",
    '"unbalanced',
    "it's",
    "*",
    "pyth*",
    "**",
    ":",
    ":*",
    "python:*",
    "a:b",
    "&",
    "|",
    "!",
    "!python",
    "(",
    ")",
    "()",
    "(python",
    "python & | ! ( )",
    "<->",
    "a <-> b",
    "<2>",
    "NEAR",
    "NEAR(python twine)",
    "NEAR(python twine, 2)",
    "AND",
    "OR",
    "NOT",
    "python AND",
    "AND python",
    "python OR twine NOT lisbon",
    "-",
    "-python",
    "--",
    "+python",
    "^python",
    "{python twine}",
    "content:python",
    "message_fts:python",
    "rank:python",
    "\\",
    "\\'",
    "python\\",
    "%",
    "_",
    "__init__",
    "100%",
    "; DROP TABLE message; --",
    "' OR '1'='1",
    "\x00",
    "python\x00twine",
    "\x02\x03",
    "\t\n\r",
    "   ",
    "😀",
    "🐍 python 🐍",
    "👨‍👩‍👧‍👦",
    "東京",
    "нейронная сеть",
    "مرحبا",
    "नमस्ते",
    "\u0301",
    "e\u0301",
    "ﬁle",
    "\uff30\uff59\uff54\uff48\uff4f\uff4e",  # fullwidth "Python"
    "\ufeff",
    "\ud800",
    "example.com",
    "foo-bar",
    "foo--bar",
    "-.-",
    "a" * 5000,
    "python " * 2000,
    " ".join(f"w{n}" for n in range(3000)),
    "x" * 10_000,
]


@pytest.mark.parametrize("query", NASTY_QUERIES, ids=range(len(NASTY_QUERIES)))
def test_any_input_is_a_safe_query(engine: Engine, library: dict[str, str], query: str) -> None:
    hits = find(engine, query)

    assert isinstance(hits, list)
    assert all(h.conversation_id in (library["python"], library["trip"]) for h in hits)


@pytest.mark.parametrize(
    "query",
    ['"twine', "twine*", "twine:*", "!twine", "(twine)", "{twine}", "-twine", "twine;", "'twine'", "^twine$"],
)
def test_syntax_around_a_word_is_ignored(engine: Engine, library: dict[str, str], query: str) -> None:
    assert [marked(h.snippet) for h in find(engine, query)] == [["twine"]]


@pytest.mark.parametrize("query", ["", "   ", '"', "*", "&|!()", ":*", "<->", "-", "😀🎉", "\x00\x02", "__"])
def test_a_query_with_no_words_finds_nothing(engine: Engine, library: dict[str, str], query: str) -> None:
    assert search_terms(query) == []
    assert find(engine, query) == []


def test_an_edited_message_is_found_by_its_new_text_only(engine: Engine) -> None:
    conversation_id = new_conversation(engine)
    message_id = add(engine, conversation_id, "", role="assistant", status=MessageStatus.STREAMING)
    with session_scope(engine) as session:
        store.checkpoint_reply(session, message_id, "The capybara is the largest rodent")
    with session_scope(engine) as session:
        store.save_reply(session, message_id, "The axolotl is an amphibian", MessageStatus.COMPLETE)

    assert find(engine, "capybara") == []
    assert [h.message_id for h in find(engine, "axolotl")] == [message_id]


def checkpoint(engine: Engine, message_id: int, content: str) -> None:
    with session_scope(engine) as session:
        store.checkpoint_reply(session, message_id, content)


def assert_index_agrees_with_its_content(engine: Engine) -> None:
    """SQLite: FTS5's own check that the index holds exactly what its content view holds."""
    if engine.dialect.name == "sqlite":
        with session_scope(engine) as session:
            session.exec(text("INSERT INTO message_fts(message_fts, rank) VALUES ('integrity-check', 1)"))  # type: ignore[call-overload]


def test_a_reply_being_written_is_found_only_once_it_has_ended(engine: Engine) -> None:
    # Checkpoints of a reply in progress do not re-index its growing text (migration 0008).
    conversation_id = new_conversation(engine)
    message_id = add(engine, conversation_id, "", role="assistant", status=MessageStatus.STREAMING)
    checkpoint(engine, message_id, "The quagga")
    checkpoint(engine, message_id, "The quagga was a zebra")
    assert find(engine, "quagga") == []
    assert_index_agrees_with_its_content(engine)

    with session_scope(engine) as session:
        store.save_reply(session, message_id, "The quagga was a zebra of South Africa", MessageStatus.COMPLETE)

    assert [h.message_id for h in find(engine, "quagga")] == [message_id]
    assert marked(find(engine, "africa")[0].snippet) == ["Africa"]
    assert_index_agrees_with_its_content(engine)


def test_a_reply_the_sweep_marks_interrupted_is_found_by_the_text_it_had(engine: Engine) -> None:
    conversation_id = new_conversation(engine)
    message_id = add(engine, conversation_id, "", role="assistant", status=MessageStatus.STREAMING)
    checkpoint(engine, message_id, "half an answer about okapis")

    with session_scope(engine) as session:
        assert store.interrupt_reply(session, message_id)

    assert [h.message_id for h in find(engine, "okapis")] == [message_id]
    assert_index_agrees_with_its_content(engine)


def test_deleting_a_conversation_with_a_reply_being_written_leaves_the_index_whole(engine: Engine) -> None:
    conversation_id = new_conversation(engine)
    add(engine, conversation_id, "tell me about tapirs")
    reply = add(engine, conversation_id, "", role="assistant", status=MessageStatus.STREAMING)
    checkpoint(engine, reply, "tapirs are")
    kept = new_conversation(engine)
    add(engine, kept, "tapirs again")

    with session_scope(engine) as session:
        conversation = store.get_conversation(session, conversation_id, OWNER)
        assert conversation is not None
        store.delete_conversation(session, conversation)

    assert [h.conversation_id for h in find(engine, "tapirs")] == [kept]
    assert_index_agrees_with_its_content(engine)


def test_deleted_and_cleared_messages_are_no_longer_found(engine: Engine) -> None:
    deleted = new_conversation(engine, "ocelot chat")
    cleared = new_conversation(engine)
    add(engine, deleted, "ocelot spotted")
    add(engine, cleared, "ocelot again")
    assert len(find(engine, "ocelot")) == 3

    with session_scope(engine) as session:
        conversation = store.get_conversation(session, deleted, OWNER)
        assert conversation is not None
        store.delete_conversation(session, conversation)
    after_delete = find(engine, "ocelot")
    with session_scope(engine) as session:
        conversation = store.get_conversation(session, cleared, OWNER)
        assert conversation is not None
        store.clear_messages(session, conversation)

    assert [(h.conversation_id, h.message_id is None) for h in after_delete] == [(cleared, False)]
    assert find(engine, "ocelot") == []


def test_a_renamed_conversation_is_found_by_its_new_title_only(engine: Engine) -> None:
    conversation_id = new_conversation(engine, "Walrus facts")
    with session_scope(engine) as session:
        conversation = store.get_conversation(session, conversation_id, OWNER)
        assert conversation is not None
        store.rename_conversation(session, conversation, "Narwhal facts")

    assert find(engine, "walrus") == []
    assert [h.title for h in find(engine, "narwhal")] == ["Narwhal facts"]


def test_pinning_does_not_disturb_the_title_index(engine: Engine) -> None:
    conversation_id = new_conversation(engine, "Pangolin notes")
    with session_scope(engine) as session:
        conversation = store.get_conversation(session, conversation_id, OWNER)
        assert conversation is not None
        store.set_pinned(session, conversation, True)
        store.set_summary(session, conversation, "about pangolins")

    assert [h.conversation_id for h in find(engine, "pangolin")] == [conversation_id]


@contextlib.contextmanager
def migrated_to(dialect: str, tmp_path: Path, revision: str) -> Iterator[tuple[str, Config]]:
    """A new database migrated to `revision` only, with its alembic config."""
    with new_database(dialect, tmp_path, "chatbot_search") as url:
        config = Config(str(PROJECT_ROOT / "alembic.ini"))
        config.attributes["database_url"] = url
        config.attributes["configure_logger"] = False
        command.upgrade(config, revision)
        yield url, config


def database_at(revision: str) -> Any:
    """A fixture: a new database of each kind migrated to `revision` only, with its alembic config."""

    @pytest.fixture(
        name=f"database_at_{revision}", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
    )
    def migrated(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Config]]:
        with migrated_to(request.param, tmp_path, revision) as at_revision:
            yield at_revision

    return migrated


database_at_0002 = database_at("0002")


def test_upgrading_keeps_existing_rows_and_makes_them_searchable(database_at_0002: tuple[str, Config]) -> None:
    url, config = database_at_0002
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO conversation (id, owner_id, title, created_at, updated_at) "
                    "VALUES ('c1', :owner, 'Old flamingo chat', :at, :at)"
                ),
                {"owner": OWNER, "at": "2025-01-01 00:00:00+00:00"},
            )
            connection.execute(
                text(
                    "INSERT INTO message (conversation_id, role, content, status, created_at, updated_at) "
                    "VALUES ('c1', 'user', 'flamingos stand on one leg', 'complete', :at, :at)"
                ),
                {"at": "2025-01-01 00:00:00+00:00"},
            )

        command.upgrade(config, "head")

        hits = find(engine, "flamingo")
        with session_scope(engine) as session:
            conversation = session.get(Conversation, "c1")
            assert conversation is not None
            assert (conversation.pinned, conversation.summary) == (False, None)
            assert len(store.latest_messages(session, "c1")) == 1
        assert [(h.conversation_id, h.message_id is None) for h in hits] == [("c1", True), ("c1", False)]

        command.downgrade(config, "0002")
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM message")).scalar_one() == 1
    finally:
        engine.dispose()


def new_conversation_at_0007(engine: Engine) -> str:
    """A conversation inserted as revision 0007's table has it (the models have later columns)."""
    table = sa.Table("conversation", sa.MetaData(), autoload_with=engine)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    row = {"id": uuid.uuid4().hex, "owner_id": OWNER, "title": "New chat", "created_at": at, "updated_at": at}
    with engine.begin() as connection:
        connection.execute(table.insert().values({**row, **({"pinned": False} if "pinned" in table.c else {})}))
    return row["id"]


def add_at_0007(engine: Engine, conversation_id: str, content: str, status: MessageStatus) -> int:
    """A reply inserted as revision 0007's table has it (the models have later columns)."""
    with engine.begin() as connection:
        return connection.execute(
            text(
                "INSERT INTO message (conversation_id, role, content, status, created_at, updated_at) "
                "VALUES (:conversation, 'assistant', :content, :status, :at, :at) RETURNING id"
            ),
            {"conversation": conversation_id, "content": content, "status": str(status), "at": "2026-01-01 00:00:00"},
        ).scalar_one()


database_at_0007 = database_at("0007")  # where replies being written were still indexed


def test_upgrading_to_0008_drops_replies_being_written_from_the_index_and_back(
    database_at_0007: tuple[str, Config],
) -> None:
    url, config = database_at_0007
    engine = make_engine(url)
    try:
        conversation_id = new_conversation_at_0007(engine)
        ended = add_at_0007(engine, conversation_id, "the ended dugong reply", MessageStatus.COMPLETE)
        running = add_at_0007(engine, conversation_id, "the dugong so far", MessageStatus.STREAMING)
        assert {h.message_id for h in find(engine, "dugong")} == {ended, running}

        command.upgrade(config, "0008")
        assert [h.message_id for h in find(engine, "dugong")] == [ended]
        assert_index_agrees_with_its_content(engine)

        command.downgrade(config, "0007")
        assert {h.message_id for h in find(engine, "dugong")} == {ended, running}
        assert_index_agrees_with_its_content(engine)
    finally:
        engine.dispose()


database_at_0015 = database_at("0015")  # where attached files were not yet indexed for search_files


def test_upgrading_to_0016_indexes_every_file_already_stored(
    database_at_0015: tuple[str, Config],
) -> None:
    url, config = database_at_0015
    engine = make_engine(url)
    files = CHUNKED_PER_BATCH * 2 + 1  # read in three batches, the last of one file
    try:
        conversation_id = new_conversation_at_0007(engine)
        message_id = add_at_0007(engine, conversation_id, "answered", MessageStatus.COMPLETE)
        table = sa.Table("attachment", sa.MetaData(), autoload_with=engine)
        at = datetime(2026, 1, 1, tzinfo=UTC)
        with engine.begin() as connection:
            connection.execute(
                table.insert(),
                [
                    {
                        "message_id": message_id,
                        "token": f"t{n}",
                        "filename": f"notes{n}.txt",
                        "media_type": "text/plain",
                        "size": 1,
                        "data": b"x",
                        "text": f"okapi number{n}",
                        "created_at": at,
                    }
                    for n in range(files)
                ],
            )

        command.upgrade(config, "0016")

        with session_scope(engine) as session:
            found = {hit.filename for hit in search_documents(session, OWNER, "okapi", limit=files)}
            assert found == {f"notes{n}.txt" for n in range(files)}
            assert [h.filename for h in search_documents(session, OWNER, f"number{files - 1}")] == [
                f"notes{files - 1}.txt"
            ]
    finally:
        engine.dispose()
