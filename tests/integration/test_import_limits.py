"""Imports that cannot hurt others (issue 11): checked settings, clear refusals, a per-identity limit,
short batches that leave nothing behind on failure, and chats that keep working during a 20 MB import.
Also: a reply whose final save meets a busy database is retried, not lost.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from chatbot_app.config import Settings
from chatbot_app.services import library as library_module
from chatbot_app.services.actions import Caller
from chatbot_app.services.chat_service import ChatService
from chatbot_app.services.library import ConversationLibrary
from chatbot_app.services.refusals import Refused
from chatbot_app.storage.database import make_engine
from chatbot_app.storage.models import Conversation, Message, MessageStatus
from chatbot_app.storage.transfer import (
    FORMAT_NAME,
    STAGING_PREFIX,
    ImportedConversation,
    ImportedMessage,
    ImportRejected,
)
from tests.conftest import TEST_API_KEY, make_service, make_services, migrate
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer
from tests.replies import run_reply

T0 = "2026-03-14T15:09:26+00:00"


def export(conversations: list[dict[str, Any]]) -> bytes:
    return json.dumps({"format": FORMAT_NAME, "version": 1, "conversations": conversations}).encode()


def conversation(settings: dict[str, Any] | None = None, messages: int = 2, **fields: Any) -> dict[str, Any]:
    return {
        "title": "Imported",
        "created_at": T0,
        "settings": settings or {},
        "messages": [
            {"role": "user" if n % 2 == 0 else "assistant", "content": f"message {n}", "created_at": T0}
            for n in range(messages)
        ],
        **fields,
    }


def library_for(service: ChatService, engine: Engine) -> ConversationLibrary:
    return ConversationLibrary(
        engine,
        model_menu=service.model_menu,
        max_import_bytes=service.settings.max_import_bytes,
    )


def rows(engine: Engine, owner_prefix: str) -> tuple[int, int]:
    with Session(engine) as session:
        owned = col(Conversation.owner_id).startswith(owner_prefix)
        conversations = session.exec(select(func.count()).select_from(Conversation).where(owned)).one()
        messages = session.exec(
            select(func.count()).select_from(Message).join(Conversation).where(owned)  # type: ignore[arg-type]
        ).one()
    return conversations, messages


def owner() -> str:
    return secrets.token_urlsafe(24)


# --- refusals ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        # astimezone() overflowed here: an uncaught OverflowError before.
        (conversation(created_at="0001-01-01T00:30:00+01:00"), "between the years 1 and 9999"),
        (conversation(created_at=12), "an ISO 8601 date"),
        (conversation({"temperature": 7}), "Temperature must be between 0 and 2"),
        (conversation({"max_tokens": 2**31 - 1}), "Max tokens must be a whole number from 1 to 32,768"),
        (conversation({"top_p": 0}), "Top P must be above 0"),
        (conversation({"system_prompt": "x" * 9_000}), "The system prompt is limited to 8,000 characters"),
        (conversation({"temperature": "hot"}), "'temperature' should be a number"),
        (conversation(summary="s" * 30_000), "'summary' should be at most 20000 characters"),
        (conversation(messages=0) | {"messages": [{"role": "user", "content": "x" * 1_000_001}]}, "at most 1000000"),
    ],
)
async def test_malformed_imports_get_a_clear_refusal_and_store_nothing(
    service: ChatService, engine: Engine, item: dict[str, Any], expected: str
) -> None:
    library, who = library_for(service, engine), owner()

    with pytest.raises(ImportRejected) as refused:
        await library.import_file(who, export([item]))

    assert expected in str(refused.value)
    assert str(refused.value).startswith("Conversation 1")
    assert rows(engine, who) == (0, 0)


async def test_unknown_provider_or_model_falls_back_to_the_default_and_the_summary_says_so(
    service: ChatService, engine: Engine
) -> None:
    library, who = library_for(service, engine), owner()
    items = [
        conversation({"provider": "groq", "model": "fake-large", "temperature": 0.5}),
        conversation({"provider": "groq", "model": "no-such-model"}),
        conversation({"provider": "someone-elses", "model": "secret-model"}),
    ]

    summary = await library.import_file(who, export(items))

    with Session(engine) as session:
        stored = [session.get(Conversation, cid) for cid in summary.ids]
    assert [(c.provider, c.model) for c in stored if c] == [("groq", "fake-large"), ("groq", None), (None, None)]
    assert stored[0] is not None and stored[0].temperature == 0.5
    assert "2 conversations asked for a model this server does not offer" in summary.message
    assert summary.message.startswith("Imported 3 conversations.")


async def test_imports_count_against_a_per_identity_limit(settings: Settings) -> None:
    actions = make_services(settings.model_copy(update=dict(imports_per_hour=2))).actions
    who = Caller(owner(), "192.0.2.10")

    await actions.import_file(who, export([conversation()]))
    await actions.import_file(who, export([conversation()]))
    with pytest.raises(Refused, match="Too many imports: the limit is 2 an hour"):
        await actions.import_file(who, export([conversation()]))
    assert len((await actions.import_file(Caller(owner(), "192.0.2.11"), export([conversation()]))).ids) == 1


async def test_fresh_identities_cannot_escape_the_import_limits_of_their_address(settings: Settings) -> None:
    """The review's finding: 40 fresh identities imported 40 times. Per address, and as new identities, they
    count as any other call does."""
    limited = settings.model_copy(update=dict(address_imports_per_hour=3, new_identities_per_hour=100))
    actions = make_services(limited).actions
    outcomes = []
    for _ in range(6):
        try:
            await actions.import_file(Caller(owner(), "198.51.100.7"), export([conversation()]))
            outcomes.append("imported")
        except Refused as refusal:
            outcomes.append(refusal.code)
    few_new = make_services(settings.model_copy(update=dict(new_identities_per_hour=2))).actions
    fresh = []
    for _ in range(3):
        try:
            await few_new.import_file(Caller(owner(), "198.51.100.8"), export([conversation()]))
            fresh.append("imported")
        except Refused as refusal:
            fresh.append(refusal.code)

    assert outcomes == ["imported"] * 3 + ["address_imports"] * 3
    assert fresh == ["imported", "imported", "new_identities"]


async def test_an_import_over_the_configured_size_is_refused(settings: Settings, engine: Engine) -> None:
    service = make_service(settings.model_copy(update=dict(max_import_bytes=1024)), engine)

    with pytest.raises(ImportRejected, match="imports are limited to"):  # the library's own check
        await library_for(service, engine).import_file(owner(), export([conversation(messages=100)]))


# --- batches, all or nothing ------------------------------------------------------------------------


async def test_a_batched_import_that_fails_part_way_leaves_nothing_behind(
    service: ChatService, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(library_module, "IMPORT_BATCH_ROWS", 5)  # many small batches
    library, who = library_for(service, engine), owner()
    moment = datetime(2026, 3, 14, tzinfo=UTC)
    good = [ImportedConversation("good", moment, moment, [ImportedMessage("user", "hi", moment)]) for _ in range(10)]
    # content is NOT NULL: this INSERT fails in the last batch, after earlier batches committed.
    broken = ImportedConversation("broken", moment, moment, [ImportedMessage("user", None, moment)])  # type: ignore[arg-type]

    with pytest.raises(Exception) as failure:
        await library._store_staged(who, [*good, broken])

    assert not isinstance(failure.value, ImportRejected)
    assert rows(engine, who) == (0, 0)
    assert rows(engine, STAGING_PREFIX) == (0, 0)


async def test_a_batched_import_is_stored_in_order_and_in_full(
    service: ChatService, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(library_module, "IMPORT_BATCH_ROWS", 7)
    library, who = library_for(service, engine), owner()
    items = [conversation(messages=3, title=f"chat {n}") for n in range(12)]

    summary = await library.import_file(who, export(items))

    assert rows(engine, who) == (12, 36)
    with Session(engine) as session:
        assert [session.get(Conversation, cid).title for cid in summary.ids] == [f"chat {n}" for n in range(12)]  # type: ignore[union-attr]
    assert rows(engine, STAGING_PREFIX) == (0, 0)


# --- a 20 MB import while someone else chats --------------------------------------------------------


def twenty_megabytes() -> bytes:
    """An export of just under 20 MiB: 2,000 conversations of 10 messages of about 1 KB."""
    text = "lorem ipsum dolor sit amet " * 37
    items = [
        {
            "title": f"imported {n}",
            "created_at": T0,
            "messages": [
                {"role": "user" if m % 2 == 0 else "assistant", "content": f"{n}.{m} {text}", "created_at": T0}
                for m in range(10)
            ],
        }
        for n in range(1_900)
    ]
    data = export(items)
    assert 18 * 2**20 < len(data) <= 20 * 2**20
    return data


async def test_a_20_mb_import_and_another_users_chat_both_succeed(
    service: ChatService, engine: Engine, fake: FakeLLMServer
) -> None:
    library, importer, chatter = library_for(service, engine), owner(), owner()
    data = twenty_megabytes()
    fake.default = Behaviour(tokens=6)

    async def chat_while(importing: asyncio.Task[Any]) -> list[str]:
        statuses: list[str] = []
        conversation_id = None
        while not importing.done() or not statuses:
            turn = await service.start_turn(chatter, conversation_id, f"message {len(statuses)}")
            conversation_id = turn.conversation_id
            reply, _ = await run_reply(service, turn)
            assert reply.finished is not None
            statuses.append(reply.finished.status)
        return statuses

    importing = asyncio.create_task(library.import_file(importer, data))
    statuses = await chat_while(importing)
    summary = await importing

    assert len(summary.ids) == 1_900
    assert rows(engine, importer) == (1_900, 19_000)
    assert set(statuses) == {MessageStatus.COMPLETE}
    # The chat went on during the import (one transaction for the whole import allowed one turn at most).
    assert len(statuses) >= 2
    assert rows(engine, chatter) == (1, 2 * len(statuses))  # every message and reply stored


# --- a busy database at the end of a reply ------------------------------------------------------------


async def test_a_reply_whose_final_save_meets_a_locked_database_is_retried_and_kept(
    fake: FakeLLMServer, tmp_path: Path
) -> None:
    database_url = f"sqlite:///{tmp_path / 'busy.db'}"  # the write lock being held is SQLite's
    migrate(database_url)
    engine = make_engine(database_url, busy_timeout_s=0.05)  # writers give up at once, as under a long import
    settings = Settings(
        groq_api_key=TEST_API_KEY, groq_base_url=fake.base_url, database_url=database_url, local_model="off"
    )
    service = make_service(settings, engine)
    turn = await service.start_turn(owner(), None, "hello")
    locker = sqlite3.connect(database_url.removeprefix("sqlite:///"), check_same_thread=False, timeout=5)
    locked, release = threading.Event(), threading.Event()

    def hold_the_write_lock(_body: dict[str, Any]) -> None:  # in the fake server's thread, as the reply starts
        locker.execute("BEGIN IMMEDIATE")
        locker.execute("UPDATE conversation SET title = title")
        locked.set()
        threading.Timer(0.6, release.set).start()

    fake.enqueue_stream(Behaviour(text="kept text", on_request=hold_the_write_lock))

    async def unlock_when_released() -> None:
        await asyncio.to_thread(release.wait, 10)
        locker.commit()

    unlocking = asyncio.create_task(unlock_when_released())
    reply, _ = await run_reply(service, turn)
    await unlocking
    locker.close()

    assert locked.is_set()
    assert reply.finished is not None and reply.finished.status == MessageStatus.COMPLETE
    with Session(engine) as session:
        stored = session.get(Message, turn.reply_id)
    assert stored is not None and (stored.status, stored.content) == (MessageStatus.COMPLETE, "kept text")
    engine.dispose()


async def test_imported_conversations_are_found_by_their_owner_only(service: ChatService, engine: Engine) -> None:
    """Publishing an import changes its owner: the search indexes must follow (SQLite indexes the owner)."""
    from sqlalchemy import text

    from chatbot_app.storage.search import search

    library, who, stranger = library_for(service, engine), owner(), owner()
    item = conversation(title="Quokka facts") | {
        "messages": [{"role": "user", "content": "tell me about the axolotl", "created_at": T0}]
    }

    await library.import_file(who, export([item]))

    with Session(engine) as session:
        mine = search(session, who, "axolotl") + search(session, who, "quokka")
        theirs = search(session, stranger, "axolotl") + search(session, stranger, "quokka")
        if engine.dialect.name == "sqlite":  # FTS5 compares its index with the rows it indexes
            session.exec(text("INSERT INTO message_fts(message_fts, rank) VALUES ('integrity-check', 1)"))  # type: ignore[call-overload]
            session.exec(text("INSERT INTO conversation_fts(conversation_fts, rank) VALUES ('integrity-check', 1)"))  # type: ignore[call-overload]
    assert {hit.message_id is None for hit in mine} == {True, False}
    assert theirs == []
