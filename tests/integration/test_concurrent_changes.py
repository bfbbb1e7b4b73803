"""Changes to one conversation made at the same moment, on PostgreSQL: each waits for the one before, so none
acts on rows the other is removing (a message left pointing at a deleted one, a path that ends nowhere).

Only PostgreSQL: its transactions run side by side, each statement seeing what was committed when it began,
and the test can see one of them waiting on a lock. SQLite takes one writer at a time for the whole database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session, col, select

from chatbot_app.config import Settings
from chatbot_app.services.chat_service import MessageNotFound
from chatbot_app.services.wiring import Services
from chatbot_app.storage import conversations as store
from chatbot_app.storage.database import make_engine
from chatbot_app.storage.models import Conversation, Message, MessageStatus
from tests.conftest import empty_tables, make_services

pytestmark = pytest.mark.postgres

OWNER = "owner-of-the-race"
LOCK_WAIT_S = 10


@pytest.fixture
def database_url(postgres_url: str) -> str:
    engine = make_engine(postgres_url)
    empty_tables(engine)
    engine.dispose()
    return postgres_url


@pytest.fixture
def built(settings: Settings) -> Services:
    return make_services(settings)


def a_conversation_with_one_exchange(engine: Engine) -> tuple[str, int]:
    """A conversation holding a question and its finished reply: (its id, the reply's id)."""
    with Session(engine) as session:
        conversation = store.create_conversation(session, OWNER)
        store.add_message(session, conversation, "user", "first question")
        reply = store.add_message(session, conversation, "assistant", "first answer")
        session.commit()
        assert conversation.id is not None and reply.id is not None
        return conversation.id, reply.id


@contextmanager
def changing(engine: Engine, conversation_id: str) -> Iterator[tuple[Session, Conversation]]:
    """A change to the conversation, made as the services make theirs and committed when the block ends."""
    with Session(engine) as session:
        conversation = store.get_conversation(session, conversation_id, OWNER, to_change=True)
        assert conversation is not None
        yield session, conversation
        session.commit()


async def until_a_transaction_waits_on_a_lock(engine: Engine) -> None:
    """Poll PostgreSQL until another session is waiting on a lock (the change the test started, held)."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    async with asyncio.timeout(LOCK_WAIT_S):
        while True:
            with engine.connect() as connection:
                if connection.execute(query).scalar_one():
                    return
            await asyncio.sleep(0.01)


def stored(engine: Engine, conversation_id: str) -> tuple[list[tuple[int | None, int | None, str]], int | None]:
    """The conversation's messages as (id, parent id, role), and its current leaf."""
    with Session(engine) as session:
        rows = session.exec(
            select(Message.id, Message.parent_id, Message.role)
            .where(Message.conversation_id == conversation_id)
            .order_by(col(Message.id))
        ).all()
        conversation = session.get(Conversation, conversation_id)
        assert conversation is not None
        return [tuple(row) for row in rows], conversation.current_leaf_id


async def test_a_clear_made_while_a_message_is_being_sent_removes_that_message_too(
    built: Services, engine: Engine
) -> None:
    conversation_id, _ = a_conversation_with_one_exchange(engine)
    with changing(engine, conversation_id) as (session, conversation):
        # The send's transaction: its question after the current leaf, and the reply's row, not yet committed.
        store.add_message(session, conversation, "user", "second question")
        store.add_message(session, conversation, "assistant", "", status=MessageStatus.STREAMING)
        clearing = asyncio.create_task(built.library.clear(OWNER, conversation_id))
        await until_a_transaction_waits_on_a_lock(engine)
    await clearing

    assert stored(engine, conversation_id) == ([], None)


async def test_a_message_sent_from_a_reply_that_a_clear_is_removing_is_refused(built: Services, engine: Engine) -> None:
    conversation_id, reply_id = a_conversation_with_one_exchange(engine)
    with changing(engine, conversation_id) as (session, conversation):
        store.clear_messages(session, conversation)
        sending = asyncio.create_task(
            built.chat.start_turn(OWNER, conversation_id, "answer from here", parent_id=reply_id)
        )
        await until_a_transaction_waits_on_a_lock(engine)

    with pytest.raises(MessageNotFound):
        await sending
    assert stored(engine, conversation_id) == ([], None)


async def test_a_message_sent_while_a_reply_is_being_answered_again_follows_the_path_it_left(
    built: Services, engine: Engine
) -> None:
    conversation_id, reply_id = a_conversation_with_one_exchange(engine)
    with changing(engine, conversation_id) as (session, conversation):
        # A regeneration's transaction: a second version of the reply becomes the current leaf.
        store.set_current_leaf(session, conversation, reply_id - 1)
        again = store.add_message(session, conversation, "assistant", "second answer").id
        sending = asyncio.create_task(built.chat.start_turn(OWNER, conversation_id, "next question"))
        await until_a_transaction_waits_on_a_lock(engine)
    turn = await sending

    messages, leaf = stored(engine, conversation_id)
    parents = {message_id: parent for message_id, parent, _ in messages}
    assert parents[turn.user_message_id] == again
    assert leaf == turn.reply_id


async def test_a_branch_made_from_a_reply_that_a_clear_is_removing_is_refused(built: Services, engine: Engine) -> None:
    conversation_id, reply_id = a_conversation_with_one_exchange(engine)
    with changing(engine, conversation_id) as (session, conversation):
        store.clear_messages(session, conversation)
        forking = asyncio.create_task(built.chat.fork(OWNER, conversation_id, reply_id))
        await until_a_transaction_waits_on_a_lock(engine)

    with pytest.raises(MessageNotFound):
        await forking
    assert stored(engine, conversation_id) == ([], None)
