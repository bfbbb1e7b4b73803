"""A conversation's generation settings and prompt presets, on SQLite and PostgreSQL, against the fake Groq server."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from chatbot_app.services.chat_service import ChatService, ConversationNotFound, Turn
from chatbot_app.services.chat_settings import BUILTIN_PRESETS, ChatSettings
from chatbot_app.services.reply_jobs import ReplyResult
from chatbot_app.storage.models import Conversation, Message, PromptPreset
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer
from tests.replies import frames, run_reply

OWNER = "owner-" + "a" * 20
STRANGER = "stranger-" + "b" * 20
CHOSEN = ChatSettings(model="fake-small", temperature=1.3, max_tokens=77, top_p=0.9, system_prompt="Be brief.")


def stored_settings(conversation: Conversation) -> ChatSettings:
    return ChatSettings(
        provider=conversation.provider,
        model=conversation.model,
        temperature=conversation.temperature,
        max_tokens=conversation.max_tokens,
        top_p=conversation.top_p,
        system_prompt=conversation.system_prompt,
    )


def conversation_row(engine: Engine, conversation_id: str) -> Conversation:
    """The row as the database holds it, read on a connection of its own."""
    with Session(engine) as session:
        conversation = session.get(Conversation, conversation_id)
        assert conversation is not None
        return conversation


async def reply_to(
    service: ChatService, conversation_id: str | None, text: str, chat: ChatSettings | None = None
) -> tuple[Turn, ReplyResult]:
    turn = await service.start_turn(OWNER, conversation_id, text, chat)
    reply, _ = await run_reply(service, turn)
    return turn, reply


async def reply_row(service: ChatService, turn: Turn) -> Message:
    _, messages = await service.load_conversation(OWNER, turn.conversation_id)
    [reply] = [m for m in messages if m.id == turn.reply_id]
    return reply


async def test_settings_chosen_with_a_message_are_stored_on_the_conversation(
    service: ChatService, engine: Engine
) -> None:
    turn = await service.start_turn(OWNER, None, "Hello.", CHOSEN)

    assert turn.settings == CHOSEN
    assert stored_settings(conversation_row(engine, turn.conversation_id)) == CHOSEN
    conversation, _ = await service.load_conversation(OWNER, turn.conversation_id)
    assert stored_settings(conversation) == CHOSEN


async def test_a_new_chat_starts_from_the_owners_latest_conversations_settings(
    service: ChatService, fake: FakeLLMServer
) -> None:
    earlier = ChatSettings(model="fake-large", temperature=0.2)
    first, _ = await reply_to(service, None, "First chat.", earlier)
    await reply_to(service, None, "Second chat.", CHOSEN)

    assert await service.settings_for_new_chat(OWNER) == CHOSEN
    assert await service.settings_for_new_chat(STRANGER) == ChatSettings()

    await reply_to(service, first.conversation_id, "Back to the first chat.")  # now the latest again

    assert await service.settings_for_new_chat(OWNER) == earlier


async def test_the_chosen_settings_reach_the_provider(service: ChatService, fake: FakeLLMServer) -> None:
    _, reply = await reply_to(service, None, "Hello.", CHOSEN)

    assert reply.finished is not None and reply.finished.status == "complete"
    [request] = fake.chat_requests()  # a chosen model needs no model list
    body = request.body
    assert (body["model"], body["temperature"], body["max_tokens"], body["top_p"]) == ("fake-small", 1.3, 77, 0.9)
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello."}]


async def test_unset_settings_send_the_app_defaults(service: ChatService, fake: FakeLLMServer) -> None:
    await reply_to(service, None, "Hello.")

    body = fake.chat_requests()[-1].body
    app = service.settings
    assert (body["model"], body["temperature"], body["max_tokens"], body["top_p"]) == (
        "fake-large",  # the first model the provider lists
        app.temperature,
        app.max_reply_tokens,
        app.top_p,
    )
    assert body["messages"][0] == {"role": "system", "content": app.system_prompt}


async def test_settings_saved_on_a_conversation_apply_to_its_next_turn(
    service: ChatService, engine: Engine, fake: FakeLLMServer
) -> None:
    first, _ = await reply_to(service, None, "Hello.")

    await service.save_settings(OWNER, first.conversation_id, CHOSEN)
    second, _ = await reply_to(service, first.conversation_id, "Again.")

    assert stored_settings(conversation_row(engine, first.conversation_id)) == CHOSEN
    assert second.settings == CHOSEN
    body = fake.chat_requests()[-1].body
    assert (body["model"], body["temperature"], body["max_tokens"], body["top_p"]) == ("fake-small", 1.3, 77, 0.9)


async def test_saving_settings_on_a_foreign_conversation_is_not_found_and_changes_nothing(
    service: ChatService, engine: Engine
) -> None:
    mine = await service.start_turn(OWNER, None, "Mine.", CHOSEN)

    with pytest.raises(ConversationNotFound):
        await service.save_settings(STRANGER, mine.conversation_id, ChatSettings(temperature=2.0))
    with pytest.raises(ConversationNotFound):
        await service.save_settings(OWNER, "f" * 32, ChatSettings(temperature=2.0))

    assert stored_settings(conversation_row(engine, mine.conversation_id)) == CHOSEN


async def test_the_built_in_presets_are_listed(service: ChatService) -> None:
    assert await service.presets(OWNER) == BUILTIN_PRESETS


async def test_a_saved_preset_is_listed_for_its_owner_only(service: ChatService) -> None:
    await service.save_preset(OWNER, "Pirate", "Talk like a pirate.")

    assert await service.presets(OWNER) == {**BUILTIN_PRESETS, "Pirate": "Talk like a pirate."}
    assert await service.presets(STRANGER) == BUILTIN_PRESETS


async def test_saving_a_preset_under_the_same_name_replaces_its_prompt(service: ChatService, engine: Engine) -> None:
    await service.save_preset(OWNER, "Pirate", "Talk like a pirate.")
    await service.save_preset(STRANGER, "Pirate", "Arr.")

    await service.save_preset(OWNER, "Pirate", "Talk like a polite pirate.")

    assert (await service.presets(OWNER))["Pirate"] == "Talk like a polite pirate."
    assert (await service.presets(STRANGER))["Pirate"] == "Arr."
    with Session(engine) as session:
        rows = session.exec(select(PromptPreset).where(PromptPreset.owner_id == OWNER)).all()
    assert [(p.name, p.prompt) for p in rows] == [("Pirate", "Talk like a polite pirate.")]


async def test_batch_mode_makes_one_non_streaming_request_and_shows_the_whole_reply_at_once(
    service: ChatService, fake: FakeLLMServer
) -> None:
    whole = "one two three four five six seven eight"
    fake.enqueue(Behaviour(text=whole))
    turn = await service.start_turn(OWNER, None, "Count.", CHOSEN)

    reply, events = await run_reply(service, turn, batch=True)

    [request] = fake.chat_requests()
    assert not request.body.get("stream")
    assert [f.text for f in frames(events)] == [whole]  # never a partial reply
    final = reply.finished
    assert final is not None and events[-1] is final
    assert (final.status, reply.text, final.completion_tokens) == ("complete", whole, 8)
    stored = await reply_row(service, turn)
    assert (stored.status, stored.content) == ("complete", whole)


async def test_an_unknown_model_gives_a_model_not_found_error(service: ChatService, fake: FakeLLMServer) -> None:
    turn, reply = await reply_to(service, None, "Hello?", ChatSettings(model="retired-model"))

    final = reply.finished
    assert final is not None
    assert (final.status, final.error_kind, final.model) == (
        "error",
        "model_not_found",
        "retired-model",
    )
    stored = await reply_row(service, turn)
    assert (stored.status, stored.error_kind) == ("error", "model_not_found")
    assert len(fake.chat_requests()) == 1


async def test_the_reply_row_stores_the_provider_and_model(service: ChatService, fake: FakeLLMServer) -> None:
    turn, reply = await reply_to(service, None, "Hello.", CHOSEN)

    stored = await reply_row(service, turn)
    assert (stored.status, stored.provider, stored.model) == ("complete", "groq", "fake-small")
    assert reply.finished is not None
    assert (reply.finished.provider, reply.finished.model) == ("groq", "fake-small")
