"""Any sequence of send, edit, regenerate, switch, fork and delete keeps the message tree whole (issue 20), on both
databases, through the actions every door calls and the real reply jobs, with the fake provider answering:

- every message stays reachable: its parent is a message of the same conversation, or none;
- the current path is a path: each message's parent is the one before it, from a root to the current leaf;
- the context sent to the provider is the path from the root to the message answered, nothing else;
- no message is ever lost, except by deleting its conversation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from chatbot_app.config import Settings
from chatbot_app.services.actions import Caller
from chatbot_app.services.refusals import Refused
from chatbot_app.services.wiring import Services
from chatbot_app.storage import conversations as store
from chatbot_app.storage.models import Conversation, Message
from tests.conftest import make_services
from tests.fakes.fake_llm_server import FakeLLMServer

T = TypeVar("T")
OWNER = Caller("tree-owner-identity-0123456789ab", "192.0.2.60")


class MessageTree(RuleBasedStateMachine):
    """Actions on a few conversations of one owner; the database is read back after each."""

    app_settings: Settings
    engine: Engine
    fake: FakeLLMServer

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.built: Services = make_services(self.app_settings)  # its locks and clients belong to this loop
        self.kept: set[int] = set()  # every message made and not deleted since
        self.made: list[str] = []  # the conversations, in the order made (their ids are random)
        self.said = 0
        with Session(self.engine) as session:  # each example starts with no conversations
            for conversation in session.exec(select(Conversation).where(Conversation.owner_id == OWNER.owner_id)):
                self.run(self.built.actions.delete(OWNER, conversation.id))

    def teardown(self) -> None:
        self.loop.run_until_complete(self.built.aclose())
        asyncio.set_event_loop(None)
        self.loop.close()

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(work)

    # -- reading back -------------------------------------------------------------------------

    def conversations(self) -> list[str]:
        return list(self.made)

    def messages(self, conversation_id: str | None = None) -> list[Message]:
        with Session(self.engine) as session:
            query = select(Message).join(Conversation).where(Conversation.owner_id == OWNER.owner_id)
            if conversation_id is not None:
                query = query.where(Message.conversation_id == conversation_id)
            return list(session.exec(query.order_by(col(Message.id))))

    def path(self, conversation_id: str) -> list[Message]:
        with Session(self.engine) as session:
            return store.latest_messages(session, conversation_id)

    def text(self) -> str:
        self.said += 1
        return f"message {self.said}"

    def answered(self, reply_id: int) -> None:
        """Wait for the reply, then check what the provider was sent: the path up to the message answered."""
        self.run(self.built.replies.join(reply_id))
        with Session(self.engine) as session:
            reply = session.get(Message, reply_id)
            assert reply is not None
            path = [m for m in store.latest_messages(session, reply.conversation_id) if m.id != reply_id]
        sent = [m for m in self.fake.streamed_requests()[-1].body["messages"] if m["role"] != "system"]
        assert [(m["role"], m["content"]) for m in sent] == [(m.role, m.content) for m in path]

    # -- actions ------------------------------------------------------------------------------

    @rule(data=st.data())
    def send(self, data: st.DataObject) -> None:
        conversation = data.draw(st.sampled_from([None, *self.conversations()]), label="conversation")
        started = self.run(self.built.actions.send(OWNER, conversation, self.text(), title=False))
        if conversation is None:
            self.made.append(started.turn.conversation_id)
        self.answered(started.turn.reply_id)

    @precondition(lambda self: bool(self.conversations()))
    @rule(data=st.data())
    def edit(self, data: st.DataObject) -> None:
        conversation = data.draw(st.sampled_from(self.conversations()), label="conversation")
        questions = [m.id for m in self.path(conversation) if m.role == "user"]
        if not questions:
            return
        message = data.draw(st.sampled_from(questions), label="message")
        started = self.run(self.built.actions.edit(OWNER, conversation, message, self.text()))
        self.answered(started.turn.reply_id)

    @precondition(lambda self: bool(self.conversations()))
    @rule(data=st.data())
    def regenerate(self, data: st.DataObject) -> None:
        conversation = data.draw(st.sampled_from(self.conversations()), label="conversation")
        if not any(m.role == "user" for m in self.path(conversation)):
            return
        started = self.run(self.built.actions.regenerate(OWNER, conversation))
        self.answered(started.turn.reply_id)

    @precondition(lambda self: bool(self.conversations()))
    @rule(data=st.data(), step=st.sampled_from([-1, 1]))
    def switch(self, data: st.DataObject, step: int) -> None:
        conversation = data.draw(st.sampled_from(self.conversations()), label="conversation")
        path = self.path(conversation)
        if not path:
            return
        message = data.draw(st.sampled_from([m.id for m in path]), label="message")
        before = [m.id for m in path]
        try:
            self.run(self.built.actions.switch_version(OWNER, conversation, message, step))
        except Refused:  # no version that way: nothing changes
            assert [m.id for m in self.path(conversation)] == before
            return
        after = [m.id for m in self.path(conversation)]
        cut = before.index(message)
        assert after[:cut] == before[:cut] and after[cut] != message  # the path above it stays

    @precondition(lambda self: bool(self.conversations()))
    @rule(data=st.data())
    def fork(self, data: st.DataObject) -> None:
        conversation = data.draw(st.sampled_from(self.conversations()), label="conversation")
        path = self.path(conversation)
        if not path:
            return
        at = data.draw(st.integers(0, len(path) - 1), label="at")
        copy = self.run(self.built.actions.fork(OWNER, conversation, path[at].id))
        self.made.append(copy)
        copied = self.path(copy)
        if path[at].role == "user":  # answered in the copy
            self.answered(copied[-1].id or 0)
            copied = self.path(copy)[:-1]
        assert [(m.role, m.content) for m in copied] == [(m.role, m.content) for m in path[: at + 1]]

    @precondition(lambda self: bool(self.conversations()))
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        conversation = data.draw(st.sampled_from(self.conversations()), label="conversation")
        gone = {m.id for m in self.messages(conversation)}
        self.run(self.built.actions.delete(OWNER, conversation))
        self.made.remove(conversation)
        self.kept -= gone

    # -- invariants ---------------------------------------------------------------------------

    @invariant()
    def the_tree_is_whole_and_nothing_is_lost(self) -> None:
        messages = self.messages()
        by_id = {m.id: m for m in messages}
        assert self.kept <= set(by_id)  # nothing lost but by a delete
        self.kept = set(by_id)  # type: ignore[arg-type]
        for message in messages:  # every message hangs from a root of its own conversation
            if message.parent_id is not None:
                parent = by_id[message.parent_id]
                assert parent.conversation_id == message.conversation_id and parent.id < (message.id or 0)
        with Session(self.engine) as session:
            owned = session.exec(select(Conversation.id).where(Conversation.owner_id == OWNER.owner_id)).all()
            assert sorted(owned) == sorted(self.made)
            for conversation_id in self.made:
                conversation = session.get(Conversation, conversation_id)
                assert conversation is not None
                path = store.latest_messages(session, conversation_id)
                assert [m.parent_id for m in path] == [None, *(m.id for m in path[:-1])]  # a path, from a root
                assert (path[-1].id if path else None) == conversation.current_leaf_id


def test_any_sequence_of_actions_keeps_the_tree_whole(settings: Settings, engine: Engine, fake: FakeLLMServer) -> None:
    limits = {"rate_limit_per_minute": 100_000, "address_rate_limit_per_minute": 100_000}
    MessageTree.app_settings = settings.model_copy(update=limits)
    MessageTree.engine, MessageTree.fake = engine, fake
    run_state_machine_as_test(
        MessageTree,
        settings=settings_for_machine(),
    )


def settings_for_machine() -> Any:
    return settings(max_examples=10, stateful_step_count=15, deadline=None, suppress_health_check=list(HealthCheck))


pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
