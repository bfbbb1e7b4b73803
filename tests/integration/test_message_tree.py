"""Messages as a tree (issue 20's storage): the migration that makes every conversation one path, its
downgrade that keeps the current path, and the path and sibling queries, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, event, text
from sqlmodel import Session, col, select

from alembic import command
from chatbot_app.storage import conversations as store
from chatbot_app.storage.database import IDS_PER_QUERY, make_engine, session_scope
from chatbot_app.storage.models import Conversation, Message
from chatbot_app.storage.transfer import ImportedConversation, ImportedMessage, ImportRejected, import_conversations
from tests.conftest import new_database
from tests.integration.test_migrations import alembic_config
from tests.integration.test_transfer import chatgpt_export, export_one, import_bytes

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
            assert [m.content for m in store.latest_messages(session, c1.id)] == ["message 1", "message 3", "message 4"]


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
        assert [m.content for m in store.latest_messages(session, conversation.id)] == ["question", "second answer"]


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
        path = store.latest_messages(session, conversation.id)
        assert len(statements) == 1
        assert [m.content for m in path] == [f"m{n}" for n in range(500)] + ["edited twice", "answer to the edit"]
        assert [m.parent_id for m in path[1:]] == [m.id for m in path[:-1]]

        statements.clear()
        positions = store.version_positions(session, conversation_id, [m.id for m in path if m.id is not None])
        assert len(statements) == 2 * math.ceil(len(path) / IDS_PER_QUERY)  # two per batch, not one per message
        assert positions == {edited_id: (3, 3)}  # m500 and its two edits; every other message has one version

        # Scrolling back from a message follows its own path, whichever branch is current.
        older = store.messages_before(session, conversation_id, messages[499].id or 0, 3)
        assert [m.content for m in older] == ["m496", "m497", "m498"]
        statements.clear()
        assert store.path_ids(session, conversation_id) == [m.id for m in path]
        assert len(statements) == 1


def test_clearing_empties_the_path(engine: Engine) -> None:
    with session_scope(engine) as session:
        conversation = store.create_conversation(session, OWNER)
        for n in range(3):
            store.add_message(session, conversation, "user", f"m{n}")
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
        path = store.latest_messages(session, conversation.id)
        assert [(m.content, m.parent_id) for m in path] == [("a", None), ("b", path[0].id)]
        assert conversation.current_leaf_id == path[-1].id


# What users do to a conversation: send (a message and its reply), regenerate (a new version of the last
# reply), edit the k-th user message of the path (a new version of it, and its reply), or show the previous
# or next version of the k-th message of the path. A plain model (parents in a dict) says what the path
# must be after each step.
steps = st.lists(
    st.one_of(
        st.just(("send", 0, 0)),
        st.just(("regenerate", 0, 0)),
        st.tuples(st.just("edit"), st.integers(0, 30), st.just(0)),
        st.tuples(st.just("switch"), st.integers(0, 60), st.sampled_from([-1, 1])),
    ),
    max_size=14,
)


def model_path(parents: dict[int, int | None], leaf: int | None) -> list[int]:
    path: list[int] = []
    while leaf is not None:
        path.append(leaf)
        leaf = parents[leaf]
    return path[::-1]


def model_newest_under(parents: dict[int, int | None], message: int) -> int:
    return max(m for m in parents if message in model_path(parents, m))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps)
def test_the_path_is_what_the_users_steps_made_it(engine: Engine, actions: list[tuple[str, int, int]]) -> None:
    with session_scope(engine) as session:
        conversation = store.create_conversation(session, OWNER)
        parents: dict[int, int | None] = {}
        leaf: int | None = None

        def add(role: str) -> None:
            nonlocal leaf
            message = store.add_message(session, conversation, role, role)
            assert message.id is not None
            parents[message.id], leaf = leaf, message.id

        for action, k, step in actions:
            path = model_path(parents, leaf)
            users = [m for m in path if session.get(Message, m).role == "user"]  # type: ignore[union-attr]
            if action == "send" or not users:
                add("user")
            elif action == "switch":
                message = path[k % len(path)]
                versions = sorted(m for m, p in parents.items() if p == parents[message])
                place = versions.index(message) + step
                if 0 <= place < len(versions):
                    leaf = model_newest_under(parents, versions[place])
                    newest = store.newest_leaf_under(
                        session, conversation.id, store.siblings_of(session, conversation.id, message)[place]
                    )
                    store.set_current_leaf(session, conversation, newest)
                continue
            else:
                edited = users[-1] if action == "regenerate" else users[k % len(users)]
                leaf = edited if action == "regenerate" else parents[edited]
                store.set_current_leaf(session, conversation, leaf)
                if action == "edit":
                    add("user")
            add("assistant")
            assert [m.id for m in store.latest_messages(session, conversation.id)] == model_path(parents, leaf)
        assert [m.id for m in store.latest_messages(session, conversation.id)] == model_path(parents, leaf)
        assert conversation.current_leaf_id == leaf


def test_an_export_keeps_every_version_and_the_choice_and_its_import_brings_them_back(engine: Engine) -> None:
    with session_scope(engine) as session:
        conversation = store.create_conversation(session, OWNER)
        question = store.add_message(session, conversation, "user", "question")
        first = store.add_message(session, conversation, "assistant", "first answer")
        store.set_current_leaf(session, conversation, question.id)
        store.add_message(session, conversation, "assistant", "second answer")
        store.set_current_leaf(session, conversation, first.id)  # the user went back to the first
        conversation_id = conversation.id

    exported = export_one(engine, conversation_id)
    [copy_id] = import_bytes(engine, json.dumps(exported).encode())

    with Session(engine) as session:
        copied = session.exec(select(Message).where(Message.conversation_id == copy_id).order_by(col(Message.id))).all()
        assert [(m.content, m.parent_id) for m in copied] == [
            ("question", None),
            ("first answer", copied[0].id),
            ("second answer", copied[0].id),
        ]
        assert [m.content for m in store.latest_messages(session, copy_id)] == ["question", "first answer"]


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        (lambda c: c.update(current=3), "'current' should be the place of one of its messages"),
        (lambda c: c["messages"][1].update(parent=1), "'parent' should be the place of an earlier message"),
        (lambda c: c["messages"][1].update(parent="0"), "parent"),
        (lambda c: c["messages"][1].update(parent=-1), "parent"),
    ],
)
def test_an_import_whose_tree_does_not_hold_is_refused_whole(
    engine: Engine, change: Callable[[dict[str, Any]], None], refusal: str
) -> None:
    with session_scope(engine) as session:
        conversation = store.create_conversation(session, OWNER)
        store.add_message(session, conversation, "user", "question")
        store.add_message(session, conversation, "assistant", "answer")
        conversation_id = conversation.id
    exported = export_one(engine, conversation_id)
    change(exported["conversations"][0])

    with pytest.raises(ImportRejected) as rejected:
        import_bytes(engine, json.dumps(exported).encode())
    assert refusal in str(rejected.value)


def test_a_chatgpt_export_keeps_its_other_branches_as_versions(engine: Engine) -> None:
    [rain_id, _] = import_bytes(engine, json.dumps(chatgpt_export()).encode())

    with Session(engine) as session:
        path = store.latest_messages(session, rain_id)
        every = session.exec(select(Message).where(Message.conversation_id == rain_id).order_by(col(Message.id))).all()
        positions = store.version_positions(session, rain_id, [m.id for m in path if m.id is not None])
    assert [m.content for m in path][2] == "Now one about snow"
    assert positions == {path[2].id: (2, 2)}  # the question as edited; the first wording is version 1
    abandoned = [m for m in every if m.content in ("Now one about snwo", "(abandoned branch)")]
    assert [m.parent_id for m in abandoned] == [path[1].id, abandoned[0].id]
