"""A reasoning model's thinking is stored with its reply and shown in frames, but never sent back to the model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from sqlalchemy import Engine
from sqlmodel import Session

from chatbot_app.config import Settings
from chatbot_app.providers import ProviderRegistry
from chatbot_app.providers.base import (
    ChatMessage,
    ChatProvider,
    GenerationOptions,
    ProviderEvent,
    ReasoningDelta,
    TextDelta,
    Usage,
)
from chatbot_app.services.chat_service import ChatService
from chatbot_app.storage.models import Message
from tests.replies import frames, run_reply

OWNER = "reasoner-" + "r" * 20


class ThinkingProvider(ChatProvider):
    """A real provider (the interface, not a patch): it thinks aloud, then answers, and records what it was sent."""

    name = "thinker"
    label = "Thinker"

    def __init__(self) -> None:
        self.received: list[list[ChatMessage]] = []

    async def list_models(self) -> list[str]:
        return ["think-1"]

    async def stream(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> AsyncIterator[ProviderEvent]:
        self.received.append(list(messages))
        for piece in ("Let me ", "count: ", "2 and 2 make 4."):
            yield ReasoningDelta(piece)
        await asyncio.sleep(0.1)  # thinking takes a while (longer than a frame) before the answer starts
        yield TextDelta("It is ")
        yield TextDelta("4.")
        yield Usage(prompt_tokens=10, completion_tokens=12)


async def test_reasoning_is_stored_with_the_reply_and_not_sent_back(settings: Settings, engine: Engine) -> None:
    provider = ThinkingProvider()
    service = ChatService(settings, engine, ProviderRegistry([provider], "thinker"))

    turn = await service.start_turn(OWNER, None, "What is 2 + 2?")
    reply, events = await run_reply(service, turn)

    assert reply.finished is not None
    assert (reply.text, reply.reasoning, reply.finished.status) == (
        "It is 4.",
        "Let me count: 2 and 2 make 4.",
        "complete",
    )
    assert any(f.reasoning and not f.text for f in frames(events))  # thinking is shown before the answer starts
    with Session(engine) as session:
        reply = session.get(Message, turn.reply_id)
        assert reply is not None and (reply.content, reply.reasoning) == ("It is 4.", "Let me count: 2 and 2 make 4.")
        assert reply.thinking_ms is not None and reply.thinking_ms >= 0  # shown as "Thought for …" after a reload

    turn = await service.start_turn(OWNER, turn.conversation_id, "And 3 + 3?")
    await run_reply(service, turn)

    sent = provider.received[-1]
    assert [(m.role, m.content) for m in sent[1:]] == [
        ("user", "What is 2 + 2?"),
        ("assistant", "It is 4."),
        ("user", "And 3 + 3?"),
    ]
    assert all("count" not in m.content for m in sent)


async def test_a_reply_without_reasoning_stores_none(service: ChatService, engine: Engine) -> None:
    turn = await service.start_turn(OWNER, None, "hello")
    reply, _ = await run_reply(service, turn)

    assert reply.reasoning == ""
    with Session(engine) as session:
        reply = session.get(Message, turn.reply_id)
        assert reply is not None and reply.reasoning is None
