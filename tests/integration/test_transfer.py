"""Export (JSON, Markdown) and import (our JSON, ChatGPT's conversations.json) on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, func, select

from chatbot_app.services.attachments import PreparedAttachment
from chatbot_app.storage import conversations as store
from chatbot_app.storage.attachments import add_attachments
from chatbot_app.storage.database import Database, session_scope
from chatbot_app.storage.models import Conversation, Message, MessageStatus
from chatbot_app.storage.transfer import (
    FORMAT_VERSION,
    MAX_IMPORT_BYTES,
    ImportedConversation,
    ImportedMessage,
    ImportRejected,
    exported_ids,
    import_conversations,
    parse_import,
    stream_json,
    stream_markdown,
)

OWNER = "owner-" + "a" * 20
NEWCOMER = "newcomer-" + "c" * 20
T0 = datetime(2026, 3, 14, 15, 9, 26, 535897, tzinfo=UTC)


def make_conversation(engine: Engine, owner: str = OWNER) -> str:
    """A conversation using every exported field; returns its id."""
    with session_scope(engine) as session:
        conversation = store.create_conversation(session, owner, title="Pierogi & pelmeni — a comparison")
        store.update_settings(
            session,
            conversation,
            provider="groq",
            model="openai/gpt-oss-120b",
            temperature=0.35,
            max_tokens=2048,
            top_p=0.9,
            system_prompt="You are a chef.\nAnswer briefly.",
        )
        turns: list[dict[str, Any]] = [
            {"role": "user", "content": "What is the difference? 🥟"},
            {
                "role": "assistant",
                "content": "Pierogi are *Polish*; pelmeni are Russian.\n\n```\nfold → pinch\n```",
                "provider": "groq",
                "model": "openai/gpt-oss-120b",
                "prompt_tokens": 31,
                "completion_tokens": 24,
                "first_token_ms": 180,
                "duration_ms": 950,
            },
            {"role": "user", "content": "And dough?"},
            {"role": "assistant", "content": "Flour, water, an e", "status": MessageStatus.STOPPED, "model": "m"},
            {
                "role": "assistant",
                "content": "",
                "status": MessageStatus.ERROR,
                "error_kind": "rate_limit",
                "provider": "groq",
            },
        ]
        for n, turn in enumerate(turns):
            message = store.add_message(session, conversation, turn.pop("role"), turn.pop("content"))
            for name, value in turn.items():
                setattr(message, name, value)
            message.created_at = T0 + timedelta(minutes=n, microseconds=n)
            session.add(message)
        conversation.created_at = T0 - timedelta(hours=1)
        conversation.updated_at = T0 + timedelta(minutes=10)
        conversation.summary = "Dumplings compared.\nPierogi: Polish."
        conversation.pinned = True
        session.add(conversation)
        return conversation.id


def without_ids(export: dict[str, Any]) -> dict[str, Any]:
    copy = json.loads(json.dumps(export))
    for conversation in copy["conversations"]:
        conversation.pop("id")
    return copy


def count_rows(engine: Engine, owner: str) -> tuple[int, int]:
    with Session(engine) as session:
        conversations = session.exec(
            select(func.count()).select_from(Conversation).where(col(Conversation.owner_id) == owner)
        ).one()
        messages = session.exec(
            select(func.count())
            .select_from(Message)
            .join(Conversation, col(Conversation.id) == col(Message.conversation_id))
            .where(col(Conversation.owner_id) == owner)
        ).one()
    return conversations, messages


async def collected(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


def export_all(engine: Engine, owner: str) -> dict[str, Any]:
    """Every conversation of `owner`, as the streamed export writes them."""
    with session_scope(engine) as session:
        ids = exported_ids(session, owner)
    return json.loads(asyncio.run(collected(stream_json(Database(engine).run, ids))))


def export_one(engine: Engine, conversation_id: str, owner: str = OWNER) -> dict[str, Any]:
    with session_scope(engine) as session:
        ids = exported_ids(session, owner, conversation_id)
    assert ids == [conversation_id]
    return json.loads(asyncio.run(collected(stream_json(Database(engine).run, ids))))


def import_bytes(engine: Engine, data: bytes, owner: str = NEWCOMER) -> list[str]:
    parsed = parse_import(data)
    with session_scope(engine) as session:
        return import_conversations(session, owner, parsed)


def test_export_writes_every_field(engine: Engine) -> None:
    conversation_id = make_conversation(engine)

    export = export_one(engine, conversation_id)

    assert (export["format"], export["version"]) == ("chatbot_app", FORMAT_VERSION)
    [conversation] = export["conversations"]
    assert conversation["id"] == conversation_id
    assert (conversation["title"], conversation["pinned"]) == ("Pierogi & pelmeni — a comparison", True)
    assert conversation["summary"] == "Dumplings compared.\nPierogi: Polish."
    assert datetime.fromisoformat(conversation["created_at"]) == T0 - timedelta(hours=1)
    assert datetime.fromisoformat(conversation["updated_at"]) == T0 + timedelta(minutes=10)
    assert conversation["settings"] == {
        "provider": "groq",
        "model": "openai/gpt-oss-120b",
        "temperature": 0.35,
        "max_tokens": 2048,
        "top_p": 0.9,
        "system_prompt": "You are a chef.\nAnswer briefly.",
    }
    assert [m["role"] for m in conversation["messages"]] == ["user", "assistant", "user", "assistant", "assistant"]
    assert conversation["messages"][1] == {
        "role": "assistant",
        "content": "Pierogi are *Polish*; pelmeni are Russian.\n\n```\nfold → pinch\n```",
        "status": "complete",
        "model": "openai/gpt-oss-120b",
        "provider": "groq",
        "created_at": (T0 + timedelta(minutes=1, microseconds=1)).isoformat(),
        "prompt_tokens": 31,
        "completion_tokens": 24,
        "first_token_ms": 180,
        "duration_ms": 950,
        "error_kind": None,
        "reasoning": None,
        "parent": 0,  # the place of the message it follows
    }
    assert "parent" not in conversation["messages"][0]  # the first
    assert conversation["current"] == 4
    assert (conversation["messages"][4]["status"], conversation["messages"][4]["error_kind"]) == ("error", "rate_limit")
    json.dumps(export)  # serialisable as is


def test_export_import_export_loses_nothing_but_ids(engine: Engine) -> None:
    original_id = make_conversation(engine)
    exported = export_one(engine, original_id)

    [new_id] = import_bytes(engine, json.dumps(exported).encode())

    again = export_one(engine, new_id, NEWCOMER)
    assert new_id != original_id
    assert without_ids(again) == without_ids(exported)


def test_export_all_round_trips_every_conversation_of_the_owner(engine: Engine) -> None:
    first = make_conversation(engine)
    with session_scope(engine) as session:
        empty = store.create_conversation(session, OWNER, title="Empty one")
        empty.updated_at = T0 + timedelta(days=1)
    make_conversation(engine, owner="someone-else")
    exported = export_all(engine, OWNER)

    new_ids = import_bytes(engine, json.dumps(exported, ensure_ascii=False, indent=2).encode())

    again = export_all(engine, NEWCOMER)
    assert [c["id"] for c in exported["conversations"]] == [empty.id, first]
    assert len(new_ids) == 2 and not set(new_ids) & {empty.id, first}
    assert without_ids(again) == without_ids(exported)


def test_import_never_takes_over_an_existing_id(engine: Engine) -> None:
    victim_id = make_conversation(engine)
    exported = export_one(engine, victim_id)
    exported["conversations"][0]["title"] = "hijacked?"

    [new_id] = import_bytes(engine, json.dumps(exported).encode(), owner="attacker")

    with Session(engine) as session:
        victim = session.get(Conversation, victim_id)
        copy = session.get(Conversation, new_id)
    assert victim is not None and copy is not None
    assert (victim.owner_id, victim.title) == (OWNER, "Pierogi & pelmeni — a comparison")
    assert (copy.owner_id, copy.title) == ("attacker", "hijacked?")
    assert count_rows(engine, OWNER) == (1, 5)


def test_markdown_export_reads_as_a_transcript(engine: Engine) -> None:
    conversation_id = make_conversation(engine)

    markdown = asyncio.run(collected(stream_markdown(Database(engine).run, conversation_id, message_batch=2))).decode()

    assert markdown.startswith("# Pierogi & pelmeni — a comparison\n")
    assert "> Dumplings compared.\n> Pierogi: Polish." in markdown
    assert "**User** · 2026-03-14 15:09 UTC\n\nWhat is the difference? 🥟" in markdown
    assert (
        "**Assistant** · 2026-03-14 15:10 UTC · openai/gpt-oss-120b\n\n"
        "Pierogi are *Polish*; pelmeni are Russian.\n\n```\nfold → pinch\n```"
    ) in markdown
    assert "**Assistant** · 2026-03-14 15:12 UTC · m · stopped\n\nFlour, water, an e" in markdown
    positions = [markdown.index(text) for text in ("difference", "Polish*", "And dough?", "an e")]
    assert positions == sorted(positions)


def chatgpt_export() -> list[dict[str, Any]]:
    """A small conversations.json in ChatGPT's shape: a tree with an edited (branched) question."""

    def node(
        node_id: str,
        parent: str | None,
        children: list[str],
        role: str | None = None,
        parts: list[Any] | None = None,
        at: float | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        message = None
        if role is not None:
            message = {
                "id": node_id,
                "author": {"role": role, "name": None, "metadata": {}},
                "create_time": at,
                "update_time": None,
                "content": {"content_type": extra.pop("content_type", "text"), "parts": parts or []},
                "status": "finished_successfully",
                "end_turn": True if role == "assistant" else None,
                "weight": 1.0,
                "metadata": extra.pop("metadata", {}),
                "recipient": extra.pop("recipient", "all"),
            }
        return {"id": node_id, "message": message, "parent": parent, "children": children}

    start = 1_700_000_000.25
    nodes = [
        node("root", None, ["sys"]),
        node("sys", "root", ["u1"], "system", [""], None, metadata={"is_visually_hidden_from_conversation": True}),
        node("u1", "sys", ["a1"], "user", ["Give me a haiku about rain"], start),
        node("a1", "u1", ["u2-old", "u2"], "assistant", ["Soft rain on the roof\n..."], start + 5,
             metadata={"model_slug": "gpt-4o"}),
        # The user edited their second question: the old branch is not the current thread.
        node("u2-old", "a1", ["a2-old"], "user", ["Now one about snwo"], start + 60),
        node("a2-old", "u2-old", [], "assistant", ["(abandoned branch)"], start + 61),
        node("u2", "a1", ["code"], "user",
             [{"content_type": "image_asset_pointer", "asset_pointer": "file-service://x"}, "Now one about snow"],
             start + 70, content_type="multimodal_text"),
        node("code", "u2", ["tool"], "assistant", ["print('snow')"], start + 71, recipient="python",
             content_type="code"),
        node("tool", "code", ["a2"], "tool", ["snow"], start + 72, content_type="execution_output"),
        node("a2", "tool", [], "assistant", ["White hush on the pines", "Footprints fill"], start + 75,
             metadata={"model_slug": "gpt-4o"}),
    ]  # fmt: skip
    return [
        {
            "title": "Rain haiku",
            "create_time": start - 1,
            "update_time": start + 75,
            "mapping": {n["id"]: n for n in nodes},
            "moderation_results": [],
            "current_node": "a2",
            "plugin_ids": None,
            "conversation_id": "3f1c9d2e-aaaa-bbbb-cccc-000000000001",
            "id": "3f1c9d2e-aaaa-bbbb-cccc-000000000001",
        },
        {
            "title": "Untitled empty chat",
            "create_time": start + 100,
            "update_time": start + 100,
            "mapping": {"r": node("r", None, [])},
            "current_node": "r",
            "id": "3f1c9d2e-aaaa-bbbb-cccc-000000000002",
        },
    ]


def test_a_chatgpt_export_imports_the_visible_current_thread(engine: Engine) -> None:
    start = datetime.fromtimestamp(1_700_000_000.25, UTC)

    ids = import_bytes(engine, json.dumps(chatgpt_export()).encode())

    with session_scope(engine) as session:
        rain = store.get_conversation(session, ids[0], NEWCOMER)
        empty = store.get_conversation(session, ids[1], NEWCOMER)
        assert rain is not None and empty is not None
        messages = store.latest_messages(session, rain.id)
        assert store.latest_messages(session, empty.id) == []
    assert (rain.title, rain.pinned, rain.summary, rain.model) == ("Rain haiku", False, None, None)
    assert (rain.created_at, rain.updated_at) == (start - timedelta(seconds=1), start + timedelta(seconds=75))
    assert [(m.role, m.content, m.model) for m in messages] == [
        ("user", "Give me a haiku about rain", None),
        ("assistant", "Soft rain on the roof\n...", "gpt-4o"),
        ("user", "Now one about snow", None),
        ("assistant", "White hush on the pines\n\nFootprints fill", "gpt-4o"),
    ]
    assert [m.created_at - start for m in messages] == [timedelta(seconds=s) for s in (0, 5, 70, 75)]
    assert {m.status for m in messages} == {"complete"}
    assert empty.title == "Untitled empty chat"


def test_a_chatgpt_export_without_current_node_follows_the_newest_branch() -> None:
    export = chatgpt_export()[:1]
    del export[0]["current_node"]

    [conversation] = parse_import(json.dumps(export).encode())

    assert [m.content for m in conversation.messages][-2:] == [
        "Now one about snow",
        "White hush on the pines\n\nFootprints fill",
    ]


def test_a_chatgpt_message_with_an_unknown_role_is_rejected() -> None:
    export = chatgpt_export()[:1]
    export[0]["mapping"]["u1"]["message"]["author"]["role"] = "critic"

    with pytest.raises(ImportRejected, match="unknown role 'critic'"):
        parse_import(json.dumps(export).encode())


def ours(**conversation: Any) -> bytes:
    base = {"title": "t", "created_at": "2026-01-01T00:00:00+00:00", "messages": []}
    return json.dumps({"format": "chatbot_app", "version": 1, "conversations": [base | conversation]}).encode()


MESSAGE = {"role": "user", "content": "hi", "created_at": "2026-01-01T00:00:00+00:00"}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xfe\x00\x00garbage", "not UTF-8"),
        (b"", "not valid JSON"),
        (b"{not json", "not valid JSON"),
        (b"conversations.json", "not valid JSON"),
        (b'{"format": "chatbot_app", "version": 1, "conversations": [{"x": NaN}]}', "NaN"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'"just a string"', "neither an export from this app nor ChatGPT"),
        (b"42", "neither"),
        (b"null", "neither"),
        (b'{"conversations": []}', "neither"),
        (b"[1, 2, 3]", "neither"),
        (b'[{"title": "no mapping"}]', "neither"),
        (b"[]", "no conversations"),
        (b'{"format": "chatbot_app", "version": 1, "conversations": []}', "no conversations"),
        (b'{"format": "chatbot_app", "version": 2, "conversations": []}', "newer version"),
        (b'{"format": "chatbot_app", "version": "1", "conversations": []}', "'version'"),
        (b'{"format": "chatbot_app", "version": 1, "conversations": {}}', "'conversations' should be a list"),
        (b'{"format": "chatbot_app", "version": 1, "conversations": ["x"]}', "Conversation 1 should be an object"),
        (ours(created_at="yesterday"), "'created_at' should be an ISO 8601"),
        (ours(title=7), "'title' should be text"),
        (ours(pinned="yes"), "'pinned' should be true or false"),
        (ours(messages="hi"), "'messages' should be a list"),
        (ours(settings={"temperature": "hot"}), "'temperature' should be a number"),
        (ours(settings={"max_tokens": 2**40}), "'max_tokens' should be a whole number"),
        (ours(settings={"model": "m" * 129}), "'model' should be at most 128"),
        (ours(messages=[MESSAGE | {"role": "system"}]), "unknown role 'system'"),
        (ours(messages=[MESSAGE | {"role": None}]), "'role' should be text"),
        (ours(messages=[MESSAGE | {"content": None}]), "message 1: 'content' should be text"),
        (ours(messages=[MESSAGE | {"status": "exploded"}]), "unknown status"),
        (ours(messages=[MESSAGE | {"prompt_tokens": -1}]), "'prompt_tokens' should be a whole number"),
        (ours(messages=[MESSAGE | {"prompt_tokens": True}]), "'prompt_tokens' should be a whole number"),
        (ours(messages=[MESSAGE, MESSAGE | {"created_at": 5}]), "message 2: 'created_at'"),
        (b'[{"title": "t", "mapping": []}]', "'mapping' should be an object"),
        (b'[{"title": "t", "mapping": {"a": 1}}]', "should be an object"),
        (b'[{"title": "t", "create_time": 1e300, "mapping": {}}]', "'create_time'"),
        (b'[{"title": "t", "mapping": {"a": {"parent": "b"}, "b": {"parent": "a"}}, "current_node": "a"}]', "loops"),
        (b'[{"title": "t", "mapping": {"a": {"parent": "gone"}}, "current_node": "a"}]', "missing"),
        (b'[{"title": "t", "mapping": {"a": {"parent": null}}, "current_node": "elsewhere"}]', "missing"),
        (b'[{"title": "t", "mapping": {"a": {"message": {"author": {}}}}, "current_node": "a"}]', "'role'"),
    ],
)
def test_unusable_files_are_rejected_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ImportRejected) as rejected:
        parse_import(data)

    assert reason in str(rejected.value)


def test_an_oversized_file_is_rejected_before_it_is_read() -> None:
    data = b" " * (MAX_IMPORT_BYTES + 1)

    with pytest.raises(ImportRejected, match=r"20\.0 MB; imports are limited to 20 MB"):
        parse_import(data)


def test_a_byte_order_mark_is_tolerated() -> None:
    assert [c.title for c in parse_import(b"\xef\xbb\xbf" + ours(title="BOM"))] == ["BOM"]


def test_text_the_databases_cannot_store_is_cleaned_and_titles_are_capped(engine: Engine) -> None:
    data = ours(
        title="x" * 300,
        messages=[MESSAGE | {"content": "nul\u0000byte and lone \ud800 surrogate"}],
    )

    [new_id] = import_bytes(engine, data)

    with session_scope(engine) as session:
        conversation = store.get_conversation(session, new_id, NEWCOMER)
        assert conversation is not None
        [message] = store.latest_messages(session, new_id)
    assert len(conversation.title) == 200
    assert message.content == "nulbyte and lone ? surrogate"


def test_a_streaming_reply_is_imported_as_interrupted() -> None:
    [conversation] = parse_import(ours(messages=[MESSAGE | {"role": "assistant", "status": "streaming"}]))

    assert conversation.messages[0].status == MessageStatus.INTERRUPTED


def test_a_failure_part_way_through_an_import_writes_nothing(engine: Engine) -> None:
    good = parse_import(json.dumps(chatgpt_export()).encode())
    broken = ImportedConversation(
        title="broken",
        created_at=T0,
        updated_at=T0,
        # content is NOT NULL in both databases: the INSERT fails after the good rows were sent.
        messages=[ImportedMessage(role="user", content=None, created_at=T0)],  # type: ignore[arg-type]
    )

    with pytest.raises(Exception) as failure, session_scope(engine) as session:
        import_conversations(session, NEWCOMER, [*good, broken])

    assert not isinstance(failure.value, ImportRejected)
    assert count_rows(engine, NEWCOMER) == (0, 0)


def test_a_streamed_export_reads_attachments_in_chunks_and_joins_them_whole(engine: Engine) -> None:
    """Attachments are read from the database in pieces (SQL substr) and encoded as they go; the file still
    holds each one whole, and no piece written is larger than one chunk's base64."""
    sizes = [1, 6, 7, 13, 2000]
    files = [bytes((n * 7 + size) % 256 for n in range(size)) for size in sizes]
    with session_scope(engine) as session:
        conversation = store.create_conversation(session, OWNER, title="Files")
        for number, data in enumerate(files):
            message = store.add_message(session, conversation, "user", f"file {number}")
            assert message.id is not None
            add_attachments(session, message.id, [PreparedAttachment(f"f{number}.bin", "text/plain", data, None)])
            store.add_message(session, conversation, "assistant", "noted")
        conversation_id = conversation.id
    reads = 0
    database = Database(engine)

    async def read(work):  # type: ignore[no-untyped-def]
        nonlocal reads
        reads += 1
        return await database.run(work)

    async def pieces() -> list[bytes]:
        return [piece async for piece in stream_json(read, [conversation_id], message_batch=3, chunk_bytes=6)]

    written = asyncio.run(pieces())

    exported = json.loads(b"".join(written))
    messages = exported["conversations"][0]["messages"]
    assert [m["content"] for m in messages] == [text for n in range(5) for text in (f"file {n}", "noted")]
    found = [base64.b64decode(m["attachments"][0]["data"]) for m in messages if m["role"] == "user"]
    assert found == files
    encoded = [piece for piece in written if not piece.startswith((b"{", b",", b"]", b"\n", b'"'))]
    assert max(len(piece) for piece in encoded) == 8  # 6 bytes of file a read, 8 once encoded
    assert reads == 1 + 4 + sum(-(-size // 6) for size in sizes)  # the head, 4 batches of messages, the pieces
    assert export_all(engine, OWNER)["conversations"][0]["messages"] == messages  # the default chunking agrees
