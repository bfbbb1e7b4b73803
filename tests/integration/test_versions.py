"""Versions instead of deletions (issue 20), through the actions every door calls, on both databases: Regenerate
and an edit add a version beside the old one, switching shows another branch and is stored, the model sees the
path only, and a hostile caller changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from chatbot_app.services.actions import CONVERSATION_NOT_FOUND, MESSAGE_NOT_FOUND, NO_OTHER_VERSION, Caller
from chatbot_app.services.attachments import AttachmentLimits, prepare_attachment
from chatbot_app.services.refusals import RefusalKind, Refused
from chatbot_app.services.wiring import Services
from chatbot_app.storage import attachments as attachment_store
from chatbot_app.storage import conversations as store
from chatbot_app.storage.models import Conversation, Message
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer
from tests.integration.test_actions import SLOW, a_user, built, streaming

__all__ = ["built"]  # the fixture, shared with test_actions


def path(engine: Engine, conversation_id: str) -> list[str]:
    with Session(engine) as session:
        return [m.content for m in store.latest_messages(session, conversation_id)]


def every_message(engine: Engine, conversation_id: str) -> list[str]:
    with Session(engine) as session:
        query = select(Message).where(Message.conversation_id == conversation_id).order_by(col(Message.id))
        return [m.content for m in session.exec(query)]


def prompt_of_last_request(fake: FakeLLMServer) -> str:
    return " | ".join(str(m.get("content")) for m in fake.streamed_requests()[-1].body["messages"])


async def owner_and_stranger(built: Services) -> tuple[Caller, Caller]:
    """Two users: the one whose conversation it is, and another who tries to reach it."""
    return (await a_user(built, "ada@example.com"))[1], (await a_user(built, "mallory@example.com"))[1]


async def answered(built: Services, caller: Caller, conversation_id: str | None, text: str) -> str:
    """Send `text` and wait for its reply; the conversation's id."""
    started = await built.actions.send(caller, conversation_id, text, title=False)
    await built.replies.join(started.turn.reply_id)
    return started.turn.conversation_id


async def test_regenerate_adds_a_version_of_the_reply_and_the_model_sees_only_the_path(
    built: Services, engine: Engine, fake: FakeLLMServer
) -> None:
    _, caller = await a_user(built, "ada@example.com")
    fake.enqueue_stream(Behaviour(text="First answer"), Behaviour(text="Second answer"), Behaviour(text="Next"))
    conversation_id = await answered(built, caller, None, "Question")

    again = await built.actions.regenerate(caller, conversation_id)
    await built.replies.join(again.turn.reply_id)

    assert every_message(engine, conversation_id) == ["Question", "First answer", "Second answer"]
    assert path(engine, conversation_id) == ["Question", "Second answer"]
    assert await built.chat.version_positions(caller.owner_id, conversation_id, [again.turn.reply_id]) == {
        again.turn.reply_id: (2, 2)
    }
    stats = await built.library.stats(caller.owner_id, conversation_id)
    assert stats.message_count == 2  # the path shown; the tokens count every version
    await answered(built, caller, conversation_id, "And then?")
    assert "Second answer" in prompt_of_last_request(fake)
    assert "First answer" not in prompt_of_last_request(fake)


async def test_an_edit_adds_a_version_and_switching_back_shows_the_old_branch_whole(
    built: Services, engine: Engine, fake: FakeLLMServer
) -> None:
    _, caller = await a_user(built, "ada@example.com")
    fake.enqueue_stream(*(Behaviour(text=f"Answer {n}") for n in range(1, 4)))
    conversation_id = await answered(built, caller, None, "Plan a trip to Oslo")
    await answered(built, caller, conversation_id, "In winter")
    with Session(engine) as session:
        [oslo] = session.exec(select(Message.id).where(Message.content == "Plan a trip to Oslo")).all()

    edited = await built.actions.edit(caller, conversation_id, oslo, "Plan a trip to Bergen")
    await built.replies.join(edited.turn.reply_id)

    assert path(engine, conversation_id) == ["Plan a trip to Bergen", "Answer 3"]
    assert "Oslo" not in prompt_of_last_request(fake)
    assert len(every_message(engine, conversation_id)) == 6  # nothing deleted

    await built.actions.switch_version(caller, conversation_id, edited.turn.user_message_id, -1)
    assert path(engine, conversation_id) == ["Plan a trip to Oslo", "Answer 1", "In winter", "Answer 2"]

    await built.actions.switch_version(caller, conversation_id, oslo, 1)
    assert path(engine, conversation_id) == ["Plan a trip to Bergen", "Answer 3"]
    with pytest.raises(Refused) as refused:
        await built.actions.switch_version(caller, conversation_id, edited.turn.user_message_id, 1)
    assert refused.value.message == NO_OTHER_VERSION
    assert path(engine, conversation_id) == ["Plan a trip to Bergen", "Answer 3"]

    # A search hit on the other branch opens that branch, at that message.
    opened = await built.chat.open_conversation(caller.owner_id, conversation_id, window=50, at_message=oslo)
    assert [m.content for m in opened.messages] == ["Plan a trip to Oslo", "Answer 1", "In winter", "Answer 2"]
    assert path(engine, conversation_id) == ["Plan a trip to Oslo", "Answer 1", "In winter", "Answer 2"]


async def answered_twice(
    built: Services, caller: Caller, fake: FakeLLMServer, first: str, second: str
) -> tuple[str, int]:
    """A new conversation whose question was answered (`first`), then regenerated (`second`, shown now); its id
    and the second reply's."""
    fake.enqueue_stream(Behaviour(text=first), Behaviour(text=second))
    conversation_id = await answered(built, caller, None, "Question")
    again = await built.actions.regenerate(caller, conversation_id)
    await built.replies.join(again.turn.reply_id)
    return conversation_id, again.turn.reply_id


async def test_hostile_arguments_to_a_switch_change_nothing(
    built: Services, engine: Engine, fake: FakeLLMServer
) -> None:
    caller, mallory = await owner_and_stranger(built)
    conversation_id, reply = await answered_twice(built, caller, fake, "One", "Two")

    hostile: list[tuple[Caller, Any, Any, Any]] = [
        (mallory, conversation_id, reply, -1),  # another user's
        (caller, conversation_id, True, -1),
        (caller, conversation_id, "1", -1),
        (caller, conversation_id, 2**70, -1),
        (caller, conversation_id, -5, -1),
        (caller, conversation_id, reply, 0),
        (caller, conversation_id, reply, -2),
        (caller, conversation_id, reply, True),
        (caller, conversation_id, reply, "-1"),
        (caller, "not-an-id", reply, -1),
        (caller, None, reply, -1),
    ]
    kinds, messages = [], []
    for who, conversation, message, step in hostile:
        with pytest.raises(Refused) as refused:
            await built.actions.switch_version(who, conversation, message, step)
        kinds.append(refused.value.kind)
        messages.append(refused.value.message)

    assert kinds == [RefusalKind.NOT_FOUND] * 5 + [RefusalKind.INVALID] * 4 + [RefusalKind.NOT_FOUND] * 2
    # Another user's conversation is not found as a conversation (as in a tab, which cannot open it).
    assert messages[:5] == [CONVERSATION_NOT_FOUND] + [MESSAGE_NOT_FOUND] * 4
    assert path(engine, conversation_id) == ["Question", "Two"]


async def test_a_reply_on_the_branch_left_goes_on_and_only_the_reply_replaced_is_stopped(
    built: Services, engine: Engine, fake: FakeLLMServer
) -> None:
    _, caller = await a_user(built, "ada@example.com")
    fake.enqueue_stream(Behaviour(text="One"), Behaviour(text="Two"), SLOW, Behaviour(text="Three"))
    conversation_id = await answered(built, caller, None, "Question")
    two = await built.actions.regenerate(caller, conversation_id)
    await built.replies.join(two.turn.reply_id)
    running = await built.actions.send(caller, conversation_id, "Tell me more", title=False)
    await streaming(built, running.turn.reply_id)

    await built.actions.switch_version(caller, conversation_id, two.turn.reply_id, -1)
    assert path(engine, conversation_id) == ["Question", "One"]
    three = await built.actions.regenerate(caller, conversation_id)  # replaces "One": nothing to stop on this path
    await built.replies.join(three.turn.reply_id)

    assert not three.stopped_first
    assert built.replies.is_running_here(running.turn.reply_id)
    assert path(engine, conversation_id) == ["Question", "Three"]
    await built.actions.switch_version(caller, conversation_id, three.turn.reply_id, -1)
    assert path(engine, conversation_id)[:3] == ["Question", "Two", "Tell me more"]  # and the reply, still written

    again = await built.actions.regenerate(caller, conversation_id)  # replaces the running reply: stopped first
    assert again.stopped_first
    await built.replies.join(again.turn.reply_id)
    with Session(engine) as session:
        stopped = session.get(Message, running.turn.reply_id)
        assert stopped is not None and stopped.status == "stopped"


async def test_branch_in_new_chat_copies_the_path_up_to_the_message_with_its_files(
    built: Services, engine: Engine, fake: FakeLLMServer
) -> None:
    caller, mallory = await owner_and_stranger(built)
    fake.enqueue_stream(Behaviour(text="Otters hold hands."), Behaviour(text="Later answer"))
    notes = prepare_attachment("otters.txt", b"Otters sleep holding hands.", AttachmentLimits())
    first = await built.actions.send(caller, None, "Read this", attachments=[notes], title=False)
    await built.replies.join(first.turn.reply_id)
    conversation_id = first.turn.conversation_id
    await answered(built, caller, conversation_id, "Something later")

    fork_id = await built.actions.fork(caller, conversation_id, first.turn.reply_id)

    assert path(engine, fork_id) == ["Read this", "Otters hold hands."]
    assert path(engine, conversation_id) == ["Read this", "Otters hold hands.", "Something later", "Later answer"]
    with Session(engine) as session:
        copied = store.latest_messages(session, fork_id)[0]
        assert copied.id is not None
        [file] = attachment_store.attachments_of(session, [copied.id])[copied.id]
        assert (file.filename, file.data) == ("otters.txt", b"Otters sleep holding hands.")
        forked = session.get(Conversation, fork_id)
        assert forked is not None and forked.owner_id == caller.owner_id
    for who, conversation, message in [
        (mallory, conversation_id, first.turn.reply_id),
        (caller, conversation_id, "1"),
        (caller, conversation_id, True),
        (caller, "nope", first.turn.reply_id),
        (caller, fork_id, first.turn.reply_id),  # a message of another conversation
    ]:
        with pytest.raises(Refused) as refused:
            await built.actions.fork(who, conversation, message)
        assert refused.value.kind == RefusalKind.NOT_FOUND

    fake.enqueue_stream(Behaviour(text="Answered in the copy."))
    question_fork = await built.actions.fork(caller, conversation_id, path_ids(engine, conversation_id)[2])
    await built.replies.join(path_ids(engine, question_fork)[-1])
    # A copy that ends on a question is answered there, with the path up to it as the context.
    assert path(engine, question_fork) == [
        "Read this",
        "Otters hold hands.",
        "Something later",
        "Answered in the copy.",
    ]
    assert [m["content"] for m in fake.streamed_requests()[-1].body["messages"]][-1] == "Something later"
    assert path(engine, conversation_id) == ["Read this", "Otters hold hands.", "Something later", "Later answer"]


async def test_a_page_showing_another_branch_sends_on_it_and_a_page_only_behind_sends_at_the_end(
    built: Services, engine: Engine, fake: FakeLLMServer
) -> None:
    caller, _ = await owner_and_stranger(built)
    fake.enqueue_stream(*(Behaviour(text=f"Answer {n}") for n in range(1, 6)))
    conversation_id = await answered(built, caller, None, "Question")
    first = path_ids(engine, conversation_id)[-1]
    again = await built.actions.regenerate(caller, conversation_id)
    await built.replies.join(again.turn.reply_id)

    # A tab still showing the first answer (another device switched since) sends on the branch it shows.
    sent = await built.actions.send(caller, conversation_id, "Go on", title=False, shown_id=first)
    await built.replies.join(sent.turn.reply_id)
    assert path(engine, conversation_id) == ["Question", "Answer 1", "Go on", "Answer 3"]

    # A tab that is only behind (it shows a message of the current path, not its end) sends at the end.
    behind = await built.actions.send(caller, conversation_id, "And then?", title=False, shown_id=first)
    await built.replies.join(behind.turn.reply_id)
    assert path(engine, conversation_id) == ["Question", "Answer 1", "Go on", "Answer 3", "And then?", "Answer 4"]

    # A hint that names nothing of this page's is no hint.
    for hint in (True, "1", -1, 2**70, again.turn.user_message_id):
        started = await built.actions.regenerate(caller, conversation_id, shown_id=hint)
        await built.replies.join(started.turn.reply_id)
        assert path(engine, conversation_id)[:5] == ["Question", "Answer 1", "Go on", "Answer 3", "And then?"]
        fake.enqueue_stream(Behaviour(text="Again"))


def path_ids(engine: Engine, conversation_id: str) -> list[int]:
    with Session(engine) as session:
        return store.path_ids(session, conversation_id)


async def test_a_share_link_shows_the_path_as_it_was_when_shared(
    built: Services, engine: Engine, fake: FakeLLMServer
) -> None:
    caller, _ = await owner_and_stranger(built)
    conversation_id, second = await answered_twice(built, caller, fake, "First answer", "Second answer")
    token = await built.shares.create(caller.owner_id, conversation_id)

    await built.actions.switch_version(caller, conversation_id, second, -1)

    assert path(engine, conversation_id) == ["Question", "First answer"]
    snapshot = await built.shares.snapshot(token)
    assert snapshot is not None
    assert [m["content"] for m in snapshot["messages"]] == ["Question", "Second answer"]
