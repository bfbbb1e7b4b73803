"""Every operation on a conversation checks its owner: a foreign id behaves exactly like an unknown one."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from chatbot_app.api.auth import owner_id_for_key
from chatbot_app.services.accounts import owner_id_of
from chatbot_app.services.chat_service import ChatService, ConversationNotFound
from chatbot_app.services.chat_settings import ChatSettings
from chatbot_app.services.export_links import ExportLinks
from chatbot_app.services.library import ConversationLibrary
from chatbot_app.storage.models import Conversation, Message
from tests.fakes.fake_llm_server import FakeLLMServer
from tests.replies import run_reply

ALICE = "alice-" + "a" * 20
MALLORY = "mallory-" + "m" * 20
UNKNOWN = "0" * 32
#: Every kind of owner id: anonymous browsers, signed-in users ("user:<id>", also what their personal
#: API keys act as), and operator keys from CHATBOT_API_KEYS.
OWNER_PAIRS = {
    "anonymous": (ALICE, MALLORY),
    "accounts": (owner_id_of(1), owner_id_of(2)),
    "operator keys": (owner_id_for_key("alice-key-" + "a" * 16), owner_id_for_key("mallory-key-" + "m" * 16)),
}

Operation = Callable[[ChatService, ConversationLibrary, str, str, int], Awaitable[Any]]

OPERATIONS: dict[str, Operation] = {
    "load": lambda chat, lib, owner, cid, mid: chat.load_conversation(owner, cid, 50),
    "send": lambda chat, lib, owner, cid, mid: chat.start_turn(owner, cid, "hi"),
    "regenerate": lambda chat, lib, owner, cid, mid: chat.start_regeneration(owner, cid),
    "edit": lambda chat, lib, owner, cid, mid: chat.start_edit(owner, cid, mid, "edited"),
    "settings": lambda chat, lib, owner, cid, mid: chat.conversation_settings(owner, cid),
    "save settings": lambda chat, lib, owner, cid, mid: chat.save_settings(owner, cid, ChatSettings(temperature=2)),
    "summarize": lambda chat, lib, owner, cid, mid: chat.summarize(owner, cid),
    "title": lambda chat, lib, owner, cid, mid: chat.suggest_title(owner, cid),
    "message": lambda chat, lib, owner, cid, mid: chat.load_message(owner, cid, mid),
    "rename": lambda chat, lib, owner, cid, mid: lib.rename(owner, cid, "pwned"),
    "pin": lambda chat, lib, owner, cid, mid: lib.set_pinned(owner, cid, True),
    "delete": lambda chat, lib, owner, cid, mid: lib.delete(owner, cid),
    "clear": lambda chat, lib, owner, cid, mid: lib.clear(owner, cid),
    "older": lambda chat, lib, owner, cid, mid: lib.older_messages(owner, cid, mid + 1, 10),
    "stats": lambda chat, lib, owner, cid, mid: lib.stats(owner, cid),
    "export json": lambda chat, lib, owner, cid, mid: lib.export(owner, cid, "json"),
    "export md": lambda chat, lib, owner, cid, mid: lib.export(owner, cid, "md"),
    "export link": lambda chat, lib, owner, cid, mid: lib.export_link(owner, cid, "json"),
}


def snapshot(engine: Engine) -> list[tuple[Any, ...]]:
    with Session(engine) as session:
        conversations = [tuple(c.model_dump().values()) for c in session.exec(select(Conversation)).all()]
        messages = [tuple(m.model_dump().values()) for m in session.exec(select(Message).order_by(Message.id)).all()]
    return sorted(map(str, conversations)) + sorted(map(str, messages))


@pytest.mark.parametrize("owners", list(OWNER_PAIRS))
@pytest.mark.parametrize("name", list(OPERATIONS))
async def test_a_foreign_or_unknown_conversation_is_not_found_and_nothing_changes(
    name: str, owners: str, service: ChatService, engine: Engine, fake: FakeLLMServer
) -> None:
    alice, mallory = OWNER_PAIRS[owners]
    library = ConversationLibrary(engine, export_links=ExportLinks(service.settings))
    turn = await service.start_turn(alice, None, "Alice's private message")
    await run_reply(service, turn)
    before = snapshot(engine)
    requests_before = len(fake.chat_requests())

    for conversation_id in (turn.conversation_id, UNKNOWN):
        with pytest.raises(ConversationNotFound):
            await OPERATIONS[name](service, library, mallory, conversation_id, turn.user_message_id)

    assert snapshot(engine) == before
    assert len(fake.chat_requests()) == requests_before  # and no provider call was made for Mallory


async def test_search_and_lists_show_only_the_callers_conversations(service: ChatService, engine: Engine) -> None:
    library = ConversationLibrary(engine)
    turn = await service.start_turn(ALICE, None, "pelican secrets")
    await run_reply(service, turn)

    assert (await library.page(MALLORY, 0)).conversations == []
    assert await library.search(MALLORY, "pelican") == []
    everything = await library.export(MALLORY, None)
    assert json.loads(b"".join([chunk async for chunk in everything.chunks]))["conversations"] == []
    assert [c.id for c in (await library.page(ALICE, 0)).conversations] == [turn.conversation_id]
