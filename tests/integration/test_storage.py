"""Conversation and message queries on real SQLite and PostgreSQL databases, migrated to head."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select, update

from chatbot_app.storage import conversations as store
from chatbot_app.storage.database import make_engine, session_scope
from chatbot_app.storage.models import Conversation, Message, MessageStatus
from tests.conftest import migrate

OWNER = "owner-" + "a" * 20
STRANGER = "stranger-" + "b" * 20
LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)


def new_conversation(engine: Engine, owner: str = OWNER, title: str = "New chat") -> Conversation:
    with session_scope(engine) as session:
        return store.create_conversation(session, owner, title=title)


def add(
    engine: Engine,
    conversation: Conversation,
    role: str,
    content: str,
    status: MessageStatus = MessageStatus.COMPLETE,
    provider: str | None = None,
    model: str | None = None,
) -> Message:
    with session_scope(engine) as session:
        attached = session.get(Conversation, conversation.id)
        assert attached is not None
        return store.add_message(session, attached, role, content, status=status, provider=provider, model=model)


def reload(engine: Engine, message_id: int) -> Message:
    with Session(engine) as session:
        message = session.get(Message, message_id)
        assert message is not None
        return message


def count_messages(session: Session, conversation_id: str) -> int:
    query = select(func.count()).select_from(Message).where(col(Message.conversation_id) == conversation_id)
    return session.exec(query).one()


def test_created_conversation_is_found_by_its_owner(engine: Engine) -> None:
    created = new_conversation(engine, title="Trip plans")

    with session_scope(engine) as session:
        found = store.get_conversation(session, created.id, OWNER)

    assert found is not None
    assert (found.id, found.owner_id, found.title) == (created.id, OWNER, "Trip plans")
    assert len(found.id) == 32


def test_a_foreign_conversation_looks_exactly_like_an_unknown_one(engine: Engine) -> None:
    created = new_conversation(engine)

    with session_scope(engine) as session:
        foreign = store.get_conversation(session, created.id, STRANGER)
        unknown = store.get_conversation(session, "f" * 32, OWNER)

    assert foreign is None
    assert unknown is None


def test_conversation_ids_are_unique(engine: Engine) -> None:
    ids = {new_conversation(engine).id for _ in range(20)}

    assert len(ids) == 20


def test_latest_messages_are_the_newest_oldest_first(engine: Engine) -> None:
    conversation = new_conversation(engine)
    other = new_conversation(engine)
    for i in range(5):
        add(engine, conversation, "user" if i % 2 == 0 else "assistant", f"m{i}")
        add(engine, other, "user", f"other{i}")

    with session_scope(engine) as session:
        newest_three = store.latest_messages(session, conversation.id, limit=3)
        everything = store.latest_messages(session, conversation.id)

    assert [m.content for m in newest_three] == ["m2", "m3", "m4"]
    assert [m.content for m in everything] == ["m0", "m1", "m2", "m3", "m4"]


def test_latest_messages_of_an_empty_conversation_is_empty(engine: Engine) -> None:
    conversation = new_conversation(engine)

    with session_scope(engine) as session:
        assert store.latest_messages(session, conversation.id, limit=10) == []


def test_adding_a_message_bumps_the_conversation(engine: Engine) -> None:
    conversation = new_conversation(engine)
    with session_scope(engine) as session:
        attached = session.get(Conversation, conversation.id)
        assert attached is not None
        attached.updated_at = LONG_AGO

    message = add(engine, conversation, "user", "hello")

    with Session(engine) as session:
        stored = session.get(Conversation, conversation.id)
        assert stored is not None
    assert stored.updated_at > LONG_AGO
    assert stored.updated_at == message.created_at


def test_added_message_has_its_defaults(engine: Engine) -> None:
    conversation = new_conversation(engine)

    message = add(engine, conversation, "assistant", "", status=MessageStatus.STREAMING, provider="groq", model="m")

    stored = reload(engine, message.id or 0)
    assert (stored.role, stored.content, stored.status) == ("assistant", "", "streaming")
    assert (stored.provider, stored.model, stored.error_kind, stored.prompt_tokens) == ("groq", "m", None, None)


def test_save_reply_writes_text_status_and_usage(engine: Engine) -> None:
    conversation = new_conversation(engine)
    reply = add(engine, conversation, "assistant", "", status=MessageStatus.STREAMING)
    assert reply.id is not None

    with session_scope(engine) as session:
        store.save_reply(
            session,
            reply.id,
            "The answer is **42**.",
            MessageStatus.COMPLETE,
            model="fake-large",
            prompt_tokens=31,
            completion_tokens=6,
            first_token_ms=12,
            duration_ms=80,
            error_kind=None,
        )

    stored = reload(engine, reply.id)
    assert (stored.content, stored.status, stored.model) == ("The answer is **42**.", "complete", "fake-large")
    assert (stored.prompt_tokens, stored.completion_tokens) == (31, 6)
    assert (stored.first_token_ms, stored.duration_ms) == (12, 80)
    assert stored.updated_at > reply.updated_at


def test_save_reply_touches_only_its_own_row(engine: Engine) -> None:
    conversation = new_conversation(engine)
    first = add(engine, conversation, "assistant", "first", status=MessageStatus.STREAMING)
    second = add(engine, conversation, "assistant", "second", status=MessageStatus.STREAMING)
    assert first.id is not None and second.id is not None

    with session_scope(engine) as session:
        store.save_reply(session, first.id, "first, done", MessageStatus.ERROR, error_kind="connection")

    assert (reload(engine, first.id).status, reload(engine, first.id).error_kind) == ("error", "connection")
    assert (reload(engine, second.id).content, reload(engine, second.id).status) == ("second", "streaming")


def test_stale_replies_are_the_old_streaming_rows_only(engine: Engine) -> None:
    conversation = new_conversation(engine)
    stale = add(engine, conversation, "assistant", "half an ans", status=MessageStatus.STREAMING)
    live = add(engine, conversation, "assistant", "still going", status=MessageStatus.STREAMING)
    old_complete = add(engine, conversation, "assistant", "finished long ago")
    old_stopped = add(engine, conversation, "assistant", "stopped long ago", status=MessageStatus.STOPPED)
    with session_scope(engine) as session:
        old_ids = [stale.id, old_complete.id, old_stopped.id]
        session.exec(update(Message).where(col(Message.id).in_(old_ids)).values(updated_at=LONG_AGO))

    with session_scope(engine) as session:
        assert store.stale_replies(session, timedelta(seconds=30)) == [stale.id]
    assert reload(engine, live.id or 0).status == "streaming"


def test_an_interrupted_reply_keeps_the_longer_of_its_checkpoint_and_its_log(engine: Engine) -> None:
    conversation = new_conversation(engine)
    behind = add(engine, conversation, "assistant", "half an ans", status=MessageStatus.STREAMING)
    ahead = add(engine, conversation, "assistant", "checkpointed further", status=MessageStatus.STREAMING)
    ended = add(engine, conversation, "assistant", "done", status=MessageStatus.COMPLETE)

    with session_scope(engine) as session:
        assert store.interrupt_reply(session, behind.id or 0, "half an answer, all of it", "some thought")
        assert store.interrupt_reply(session, ahead.id or 0, "checkpointed")
        assert not store.interrupt_reply(session, ended.id or 0, "done, and more")  # it had ended: left alone
        assert not store.interrupt_reply(session, 10**9, "no such row")

    after = {m.id: m for m in (reload(engine, x.id or 0) for x in (behind, ahead, ended))}
    assert (after[behind.id].status, after[behind.id].content) == ("interrupted", "half an answer, all of it")
    assert after[behind.id].reasoning == "some thought"
    assert (after[ahead.id].status, after[ahead.id].content) == ("interrupted", "checkpointed further")
    assert (after[ended.id].status, after[ended.id].content) == ("complete", "done")


def test_a_stop_written_on_the_row_is_read_by_the_checkpoint_round(engine: Engine) -> None:
    conversation = new_conversation(engine)
    running = add(engine, conversation, "assistant", "", status=MessageStatus.STREAMING)
    other = add(engine, conversation, "assistant", "", status=MessageStatus.STREAMING)
    ended = add(engine, conversation, "assistant", "done")

    with session_scope(engine) as session:
        assert store.request_stop(session, running.id or 0)
        assert not store.request_stop(session, ended.id or 0)  # nothing to stop
    with session_scope(engine) as session:
        checked = store.checkpoint_replies(session, {running.id or 0: "so far", other.id or 0: None, 10**9: None})

    assert checked == store.CheckpointRound(gone={10**9}, stop_requested={running.id})
    assert reload(engine, running.id or 0).content == "so far"  # a stop does not undo the checkpoint


def test_the_sweep_with_nothing_stale_does_not_need_the_write_lock(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'busy.db'}"
    migrate(url)
    engine = make_engine(url, busy_timeout_s=0.1)
    live = add(engine, new_conversation(engine), "assistant", "still going", status=MessageStatus.STREAMING)
    holder = sqlite3.connect(tmp_path / "busy.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer (a long import, say) holds the lock
    try:
        with session_scope(engine) as session:
            assert store.stale_replies(session, timedelta(seconds=30)) == []
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        engine.dispose()
    assert reload(make_engine(url), live.id or 0).status == "streaming"


def test_deleting_a_conversation_deletes_its_messages(engine: Engine) -> None:
    doomed = new_conversation(engine)
    kept = new_conversation(engine)
    for text in ("one", "two", "three"):
        add(engine, doomed, "user", text)
    add(engine, kept, "user", "survivor")

    with session_scope(engine) as session:
        attached = session.get(Conversation, doomed.id)
        assert attached is not None
        session.delete(attached)

    with Session(engine) as session:
        assert count_messages(session, doomed.id) == 0
        assert count_messages(session, kept.id) == 1
        assert session.get(Conversation, kept.id) is not None


def test_a_failed_session_scope_rolls_back_everything(engine: Engine) -> None:
    class Abort(Exception):
        pass

    with pytest.raises(Abort), session_scope(engine) as session:
        doomed_id = store.create_conversation(session, OWNER, title="never saved").id
        raise Abort

    with session_scope(engine) as session:
        assert session.get(Conversation, doomed_id) is None
