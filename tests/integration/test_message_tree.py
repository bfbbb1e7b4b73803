"""Messages as a tree (issue 20's storage): the migration that makes every conversation one path, its
downgrade that keeps the current path, and the path and sibling queries, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, event, text
from sqlmodel import Session, col, select

from alembic import command
from chatbot_app.storage import conversations as store
from chatbot_app.storage.database import make_engine, session_scope
from chatbot_app.storage.models import Conversation, Message
from chatbot_app.storage.transfer import ImportedConversation, ImportedMessage, import_conversations
from tests.conftest import new_database
from tests.integration.test_migrations import alembic_config

OWNER = "owner-" + "a" * 20


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with new_database(request.param, tmp_path, "chatbot_tree") as url:
        yield url


@contextlib.contextmanager
def connected(url: str) -> Iterator[Engine]:
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def rows(engine: Engine, sql: str) -> list[tuple[object, ...]]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(sql))]


def test_the_migration_makes_every_conversation_one_path_losing_nothing(empty_database_url: str) -> None:
    config = alembic_config(empty_database_url)
    command.upgrade(config, "0014")
    with connected(empty_database_url) as engine, engine.begin() as connection:
        for conversation in ("c1", "c2", "empty"):
            connection.execute(
                text(
                    "INSERT INTO conversation (id, owner_id, title, created_at, updated_at, pinned) "
                    "VALUES (:id, :owner, 't', '2026-01-01', '2026-01-01', false)"
                ),
                {"id": conversation, "owner": OWNER},
            )
        # Interleaved: the two conversations' messages alternate in id order.
        for number, conversation in enumerate(["c1", "c2", "c1", "c1", "c2"], start=1):
            connection.execute(
                text(
                    "INSERT INTO message (id, conversation_id, role, content, status, created_at, updated_at, "
                    "stop_requested) VALUES (:id, :c, 'user', :content, 'complete', '2026-01-01', '2026-01-01', "
                    "false)"
                ),
                {"id": number, "c": conversation, "content": f"message {number}"},
            )

    command.upgrade(config, "head")

    with connected(empty_database_url) as engine:
        assert rows(engine, "SELECT id, parent_id FROM message ORDER BY id") == [
            (1, None),
            (2, None),
            (3, 1),
            (4, 3),
            (5, 2),
        ]
        assert rows(engine, "SELECT id, current_leaf_id FROM conversation ORDER BY id") == [
            ("c1", 4),
            ("c2", 5),
            ("empty", None),
        ]
        with Session(engine) as session:
            c1 = session.get(Conversation, "c1")
            assert c1 is not None
            assert [m.content for m in store.current_path(session, c1)] == ["message 1", "message 3", "message 4"]


def test_the_downgrade_keeps_each_current_path_and_drops_the_other_branches(empty_database_url: str) -> None:
    config = alembic_config(empty_database_url)
    command.upgrade(config, "head")
    with connected(empty_database_url) as engine, session_scope(engine) as session:
        conversation = store.create_conversation(session, OWNER)
        question = store.add_message(session, conversation, "user", "question")
        store.add_message(session, conversation, "assistant", "first answer")
        conversation.current_leaf_id = question.id  # Regenerate: a sibling of the first answer
        store.add_message(session, conversation, "assistant", "second answer")
        conversation_id = conversation.id

    command.downgrade(config, "0014")

    with connected(empty_database_url) as engine:
        assert rows(engine, "SELECT content FROM message ORDER BY id") == [("question",), ("second answer",)]
        assert rows(engine, f"SELECT count(*) FROM conversation WHERE id = '{conversation_id}'") == [(1,)]
    command.upgrade(config, "head")  # and back: the kept path is a path again
    with connected(empty_database_url) as engine, Session(engine) as session:
        conversation = session.get(Conversation, conversation_id)
        assert conversation is not None
        assert [m.content for m in store.current_path(session, conversation)] == ["question", "second answer"]


def count_statements(engine: Engine) -> list[str]:
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    return statements


def test_the_current_path_of_a_long_conversation_is_one_query_and_skips_other_branches(engine: Engine) -> None:
    with session_scope(engine) as session:
        conversation = store.create_conversation(session, OWNER)
        messages = [
            store.add_message(session, conversation, "user" if n % 2 == 0 else "assistant", f"m{n}")
            for n in range(1000)
        ]
        # Two other versions of message 500 (an edit): the path goes on from the newest of them.
        conversation.current_leaf_id = messages[499].id
        store.add_message(session, conversation, "user", "edited once")
        conversation.current_leaf_id = messages[499].id
        edited = store.add_message(session, conversation, "user", "edited twice")
        store.add_message(session, conversation, "assistant", "answer to the edit")
        conversation_id = conversation.id
        edited_id = edited.id

    with Session(engine) as session:
        conversation = session.get(Conversation, conversation_id)
        assert conversation is not None
        statements = count_statements(engine)
        path = store.current_path(session, conversation)
        assert len(statements) == 1
        assert [m.content for m in path] == [f"m{n}" for n in range(500)] + ["edited twice", "answer to the edit"]
        assert [m.parent_id for m in path[1:]] == [m.id for m in path[:-1]]

        parents = [m.parent_id for m in path]
        statements.clear()
        counts = store.sibling_counts(session, conversation_id, parents)
        assert len(statements) == 1
        assert counts[path[0].parent_id] == 1
        assert counts[messages[499].id] == 3  # m500 and its two edits
        assert counts[edited_id] == 1


def test_truncating_and_clearing_move_the_current_leaf(engine: Engine) -> None:
    with session_scope(engine) as session:
        conversation = store.create_conversation(session, OWNER)
        ids = [store.add_message(session, conversation, "user", f"m{n}").id for n in range(4)]
        assert ids[1] is not None
        store.delete_messages_after(session, conversation.id, ids[1])
        session.refresh(conversation)
        assert conversation.current_leaf_id == ids[1]
        reply = store.add_message(session, conversation, "assistant", "again")
        assert reply.parent_id == ids[1]
        assert store.clear_messages(session, conversation) == 3
        assert conversation.current_leaf_id is None
        assert store.add_message(session, conversation, "user", "fresh").parent_id is None


def test_an_import_is_stored_as_one_path(engine: Engine) -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    messages = [ImportedMessage(role=r, content=c, created_at=at) for r, c in [("user", "a"), ("assistant", "b")]]
    imported = ImportedConversation(title="Imported", created_at=at, updated_at=at, messages=messages)
    with session_scope(engine) as session:
        [conversation_id] = import_conversations(session, OWNER, [imported])
    with Session(engine) as session:
        conversation = session.get(Conversation, conversation_id)
        assert conversation is not None
        path = store.current_path(session, conversation)
        assert [(m.content, m.parent_id) for m in path] == [("a", None), ("b", path[0].id)]
        assert conversation.current_leaf_id == path[-1].id


# A turn as the chat service takes it today: send (user + reply), regenerate (truncate to the last user
# message, then a reply), or edit message k (truncate to it, then a reply). The path is the thread.
operations = st.lists(
    st.one_of(st.just(("send", 0)), st.just(("regenerate", 0)), st.tuples(st.just("edit"), st.integers(0, 30))),
    max_size=12,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations)
def test_without_branches_the_current_path_is_the_thread_in_id_order(
    engine: Engine, turns: list[tuple[str, int]]
) -> None:
    with session_scope(engine) as session:
        conversation = store.create_conversation(session, OWNER)
        for operation, k in turns:
            users = [m for m in store.latest_messages(session, conversation.id) if m.role == "user"]
            if operation == "send" or not users:
                store.add_message(session, conversation, "user", "question")
            else:
                kept = users[-1] if operation == "regenerate" else users[k % len(users)]
                assert kept.id is not None
                store.delete_messages_after(session, conversation.id, kept.id)
                session.refresh(conversation)
            store.add_message(session, conversation, "assistant", "answer")
        session.flush()
        thread = session.exec(
            select(Message).where(Message.conversation_id == conversation.id).order_by(col(Message.id))
        ).all()
        assert [m.id for m in store.current_path(session, conversation)] == [m.id for m in thread]
