"""The chat flow against real databases and the fake Groq server, through the real groq SDK."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from functools import partial

import pytest
from sqlalchemy import Engine, event
from sqlmodel import Session, col, select

from chatbot_app.config import Settings
from chatbot_app.services.chat_service import ChatService, ConversationNotFound, Turn
from chatbot_app.services.reply_jobs import ReplyJobs, ReplyResult
from chatbot_app.services.reply_log import Finished, MemoryReplyLog
from chatbot_app.storage import conversations
from chatbot_app.storage.models import Message
from tests.conftest import make_service
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer
from tests.replies import frames, run_reply

OWNER = "owner-" + "a" * 20
STRANGER = "stranger-" + "b" * 20


async def collect(service: ChatService, conversation_id: str | None, text: str) -> tuple[Turn, ReplyResult]:
    turn = await service.start_turn(OWNER, conversation_id, text)
    result, _ = await run_reply(service, turn)
    return turn, result


async def reply_row(service: ChatService, turn: Turn) -> Message:
    _, messages = await service.load_conversation(OWNER, turn.conversation_id)
    [reply] = [m for m in messages if m.id == turn.reply_id]
    return reply


async def test_remembers_earlier_turns(service: ChatService, fake: FakeLLMServer) -> None:
    first, _ = await collect(service, None, "My name is Alice.")
    _, reply = await collect(service, first.conversation_id, "What is my name?")

    assert reply.finished is not None and reply.finished.status == "complete"
    assert "Alice" in reply.text
    sent = fake.chat_requests()[-1].body["messages"]
    assert sent[0]["role"] == "system"
    assert [m["content"] for m in sent if m["role"] == "user"] == ["My name is Alice.", "What is my name?"]


async def test_without_an_api_key_the_reply_says_not_configured_and_the_message_is_kept(
    engine: Engine, database_url: str, fake: FakeLLMServer
) -> None:
    service = make_service(Settings(groq_api_key=None, database_url=database_url, local_model="off"), engine)

    turn, reply = await collect(service, None, "Hello?")

    assert reply.frames == 0 and reply.finished is not None
    assert (reply.finished.status, reply.finished.error_kind) == ("error", "not_configured")
    _, stored = await service.load_conversation(OWNER, turn.conversation_id)
    assert [(m.role, m.content, m.status) for m in stored] == [
        ("user", "Hello?", "complete"),
        ("assistant", "", "error"),
    ]
    assert stored[-1].error_kind == "not_configured"
    assert fake.requests == []


async def test_the_users_message_is_committed_before_the_provider_is_called(
    service: ChatService, engine: Engine, fake: FakeLLMServer
) -> None:
    seen: list[list[tuple[str, str, str]]] = []

    def look_at_the_database(body: dict[str, object]) -> None:
        # Runs in the fake server's thread, on its own connection: it sees only committed rows.
        with Session(engine) as session:
            rows = session.exec(select(Message).order_by(col(Message.id))).all()
            seen.append([(m.role, m.content, m.status) for m in rows])

    fake.enqueue(Behaviour(on_request=look_at_the_database))

    await collect(service, None, "Is this saved yet?")

    assert seen == [[("user", "Is this saved yet?", "complete"), ("assistant", "", "streaming")]]


async def test_a_connection_cut_mid_stream_keeps_the_partial_text_as_an_error(
    service: ChatService, fake: FakeLLMServer
) -> None:
    fake.enqueue(Behaviour(text="one two three four five", cut_after_tokens=2))

    turn, reply = await collect(service, None, "Count to five.")

    assert reply.finished is not None
    assert (reply.finished.status, reply.finished.error_kind, reply.text) == ("error", "connection", "one two")
    stored = await reply_row(service, turn)
    assert (stored.status, stored.error_kind, stored.content) == ("error", "connection", "one two")


async def test_stopping_the_job_stores_the_reply_as_stopped_and_closes_the_upstream(
    service: ChatService, fake: FakeLLMServer
) -> None:
    fake.enqueue(Behaviour(tokens=400, tokens_per_s=40))
    turn = await service.start_turn(OWNER, None, "Tell me a long story.")
    jobs = ReplyJobs(service, MemoryReplyLog())
    await jobs.start(turn)

    shown = ""
    async for _, events in jobs.follow(turn.reply_id):
        shown += "".join(f.text for f in frames(events))
        if shown:
            await jobs.stop(turn.reply_id)  # the user pressed stop
        ends = [e for e in events if isinstance(e, Finished)]
        if ends:
            assert ends[0].status == "stopped"

    stored = await reply_row(service, turn)
    assert (stored.status, stored.content, stored.error_kind) == ("stopped", shown, None)
    assert stored.model == "fake-large"
    # The server runs in its own thread: wait (bounded) for it to see the client go.
    assert await asyncio.to_thread(fake.abort_seen.wait, 10)
    assert fake.aborted == [len(fake.requests)]


async def test_many_fast_tokens_arrive_in_far_fewer_frames(
    settings: Settings, engine: Engine, fake: FakeLLMServer
) -> None:
    service = make_service(settings.model_copy(update=dict(frame_interval_ms=200)), engine)
    words = [f"w{i}" for i in range(300)]
    fake.enqueue(Behaviour(text=" ".join(words)))

    turn = await service.start_turn(OWNER, None, "Go fast.")
    reply, events = await run_reply(service, turn)

    progress = frames(events)
    # One frame per 200 ms: thirty frames would take the fake six seconds to stream 300 tokens.
    assert 1 <= len(progress) <= 30
    assert progress[0].text.startswith("w0")
    assert "".join(f.text for f in progress) == reply.text == " ".join(words)  # each frame carries only new text
    assert reply.finished is not None and reply.finished.status == "complete"


async def test_the_reply_row_is_not_written_per_token(
    service: ChatService, engine: Engine, fake: FakeLLMServer
) -> None:
    fake.enqueue(Behaviour(tokens=300))
    turn = await service.start_turn(OWNER, None, "Three hundred tokens, please.")
    message_updates: list[str] = []

    def count_message_updates(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if re.match(r"\s*UPDATE\s+message\b", statement, re.IGNORECASE):
            message_updates.append(statement)

    event.listen(engine, "before_cursor_execute", count_message_updates)
    try:
        reply, _ = await run_reply(service, turn)
    finally:
        event.remove(engine, "before_cursor_execute", count_message_updates)

    assert reply.finished is not None and reply.finished.status == "complete"
    assert reply.finished.completion_tokens == 300
    # The final save, plus at most a checkpoint or two on a very slow machine.
    assert 1 <= len(message_updates) <= 3


async def test_an_unknown_or_foreign_conversation_is_not_found(service: ChatService, fake: FakeLLMServer) -> None:
    mine, _ = await collect(service, None, "Private thoughts.")

    with pytest.raises(ConversationNotFound):
        await service.start_turn(OWNER, "f" * 32, "Hello?")
    with pytest.raises(ConversationNotFound):
        await service.start_turn(STRANGER, mine.conversation_id, "Let me in.")
    with pytest.raises(ConversationNotFound):
        await service.load_conversation(STRANGER, mine.conversation_id)

    _, stored = await service.load_conversation(OWNER, mine.conversation_id)
    assert [m.content for m in stored if m.role == "user"] == ["Private thoughts."]


async def test_usage_and_model_are_stored_on_the_reply(service: ChatService, fake: FakeLLMServer) -> None:
    fake.enqueue(Behaviour(text="Four words right here."))

    turn, reply = await collect(service, None, "Answer in four words.")

    sent = fake.chat_requests()[-1].body["messages"]
    prompt_tokens = sum(len(m["content"]) // 4 + 4 for m in sent)
    stored = await reply_row(service, turn)
    assert (stored.status, stored.content, stored.model) == ("complete", "Four words right here.", "fake-large")
    assert (stored.prompt_tokens, stored.completion_tokens) == (prompt_tokens, 4)
    assert stored.first_token_ms is not None and stored.duration_ms is not None
    assert stored.duration_ms >= stored.first_token_ms
    final = reply.finished
    assert final is not None
    assert (final.model, final.prompt_tokens, final.completion_tokens) == ("fake-large", prompt_tokens, 4)
    assert (final.first_token_ms, final.duration_ms) == (stored.first_token_ms, stored.duration_ms)


async def test_a_configured_model_is_used_without_listing_models(
    settings: Settings, engine: Engine, fake: FakeLLMServer
) -> None:
    service = make_service(settings.model_copy(update=dict(model="fake-small")), engine)

    turn, _ = await collect(service, None, "Hi.")

    assert [r.path for r in fake.requests] == ["/openai/v1/chat/completions"]
    assert fake.requests[0].body["model"] == "fake-small"
    assert (await reply_row(service, turn)).model == "fake-small"


def changing_the_conversation(engine: Engine, conversation_id: str, change: Callable[..., object]) -> Behaviour:
    """The fake's answer to the model call the service makes, with `change` made to the conversation (and
    committed) while that call runs: the user acting meanwhile in another tab."""

    def made(_body: dict[str, object]) -> None:
        with Session(engine) as session:
            conversation = conversations.get_conversation(session, conversation_id, OWNER)
            assert conversation is not None
            change(session, conversation)
            session.commit()

    return Behaviour(text="Otter facts", on_request=made)


async def test_a_title_that_comes_after_the_user_renamed_the_chat_leaves_their_title(
    service: ChatService, fake: FakeLLMServer, engine: Engine
) -> None:
    turn, _ = await collect(service, None, "Tell me about otters.")
    rename = partial(conversations.rename_conversation, title="My otters")
    fake.default = changing_the_conversation(engine, turn.conversation_id, rename)

    assert await service.suggest_title(OWNER, turn.conversation_id) is None
    conversation, _ = await service.load_conversation(OWNER, turn.conversation_id)
    assert conversation.title == "My otters"


async def test_a_summary_that_comes_after_a_clear_is_not_stored(
    service: ChatService, fake: FakeLLMServer, engine: Engine
) -> None:
    turn, _ = await collect(service, None, "Tell me about otters.")
    fake.default = changing_the_conversation(engine, turn.conversation_id, conversations.clear_messages)

    await service.summarize(OWNER, turn.conversation_id)

    conversation, messages = await service.load_conversation(OWNER, turn.conversation_id)
    assert (conversation.summary, messages) == (None, [])
