"""Conversation library queries (sidebar, rename, pin, delete, clear, paging back, stats) on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import Session, col, func, select

from chatbot_app.storage import conversations as store
from chatbot_app.storage.database import session_scope
from chatbot_app.storage.models import Conversation, Message

OWNER = "owner-" + "a" * 20
STRANGER = "stranger-" + "b" * 20
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def new_conversation(engine: Engine, title: str = "New chat", owner: str = OWNER, at: datetime | None = None) -> str:
    """A conversation last active at `at`; returns its id."""
    with session_scope(engine) as session:
        conversation = store.create_conversation(session, owner, title=title)
        if at is not None:
            conversation.updated_at = at
        return conversation.id


def add(engine: Engine, conversation_id: str, *contents: str, **fields: object) -> list[int]:
    """Add messages (alternating user/assistant) with extra column values; returns their ids."""
    ids = []
    with session_scope(engine) as session:
        conversation = session.get(Conversation, conversation_id)
        assert conversation is not None
        for n, content in enumerate(contents):
            message = store.add_message(session, conversation, "user" if n % 2 == 0 else "assistant", content)
            for name, value in fields.items():
                setattr(message, name, value)
            session.add(message)
            session.flush()
            assert message.id is not None
            ids.append(message.id)
    return ids


def owned(session: Session, conversation_id: str) -> Conversation:
    conversation = store.get_conversation(session, conversation_id, OWNER)
    assert conversation is not None
    return conversation


def stored(engine: Engine, conversation_id: str) -> Conversation | None:
    with Session(engine) as session:
        return session.get(Conversation, conversation_id)


def message_count(engine: Engine, conversation_id: str) -> int:
    with Session(engine) as session:
        query = select(func.count()).select_from(Message).where(col(Message.conversation_id) == conversation_id)
        return session.exec(query).one()


def sidebar(engine: Engine, owner: str = OWNER, limit: int = 100, offset: int = 0) -> list[str]:
    with session_scope(engine) as session:
        return [c.title for c in store.list_conversations(session, owner, limit=limit, offset=offset)]


def test_a_new_conversation_is_unpinned_without_a_summary(engine: Engine) -> None:
    conversation_id = new_conversation(engine)

    conversation = stored(engine, conversation_id)

    assert conversation is not None
    assert (conversation.pinned, conversation.summary) == (False, None)


def test_the_sidebar_lists_pinned_first_then_most_recently_active(engine: Engine) -> None:
    for n, title in enumerate(["oldest", "old", "recent", "newest"]):
        new_conversation(engine, title, at=T0 + timedelta(hours=n))
    pinned_old = new_conversation(engine, "pinned old", at=T0 - timedelta(days=30))
    new_conversation(engine, "someone else's", owner=STRANGER, at=T0 + timedelta(days=1))
    with session_scope(engine) as session:
        store.set_pinned(session, owned(session, pinned_old), True)

    assert sidebar(engine) == ["pinned old", "newest", "recent", "old", "oldest"]


def test_conversations_active_at_the_same_moment_are_ordered_by_id_descending(engine: Engine) -> None:
    ids = {new_conversation(engine, f"tie {n}", at=T0): f"tie {n}" for n in range(5)}

    assert sidebar(engine) == [ids[i] for i in sorted(ids, reverse=True)]


def test_pages_cover_every_conversation_exactly_once(engine: Engine) -> None:
    for n in range(7):
        new_conversation(engine, f"c{n}", at=T0 + timedelta(minutes=n % 3))  # ties across page edges
    with session_scope(engine) as session:
        pinned = store.list_conversations(session, OWNER, limit=1, offset=4)[0]
        store.set_pinned(session, pinned, True)
    everything = sidebar(engine)

    pages = [sidebar(engine, limit=3, offset=offset) for offset in (0, 3, 6, 9)]

    assert [len(page) for page in pages] == [3, 3, 1, 0]
    assert [title for page in pages for title in page] == everything
    assert len(set(everything)) == 7


def test_count_conversations_counts_only_the_owners(engine: Engine) -> None:
    for _ in range(3):
        new_conversation(engine)
    new_conversation(engine, owner=STRANGER)

    with session_scope(engine) as session:
        counts = (store.count_conversations(session, OWNER), store.count_conversations(session, STRANGER))
        nobody = store.count_conversations(session, "nobody")

    assert counts == (3, 1)
    assert nobody == 0


def test_rename_changes_the_title_and_keeps_the_place_in_the_sidebar(engine: Engine) -> None:
    conversation_id = new_conversation(engine, "Untitled", at=T0)

    with session_scope(engine) as session:
        store.rename_conversation(session, owned(session, conversation_id), "Trip to Lisbon")

    conversation = stored(engine, conversation_id)
    assert conversation is not None
    assert (conversation.title, conversation.updated_at) == ("Trip to Lisbon", T0)


def test_pinning_and_unpinning_keep_updated_at(engine: Engine) -> None:
    conversation_id = new_conversation(engine, "pin me", at=T0 - timedelta(days=3))
    new_conversation(engine, "newer", at=T0)

    with session_scope(engine) as session:
        store.set_pinned(session, owned(session, conversation_id), True)
    pinned = stored(engine, conversation_id)
    order_while_pinned = sidebar(engine)
    with session_scope(engine) as session:
        store.set_pinned(session, owned(session, conversation_id), False)
    unpinned = stored(engine, conversation_id)

    assert pinned is not None and unpinned is not None
    assert (pinned.pinned, pinned.updated_at) == (True, T0 - timedelta(days=3))
    assert (unpinned.pinned, unpinned.updated_at) == (False, T0 - timedelta(days=3))
    assert order_while_pinned == ["pin me", "newer"]
    assert sidebar(engine) == ["newer", "pin me"]


def test_delete_conversation_removes_it_and_its_messages_only(engine: Engine) -> None:
    doomed = new_conversation(engine, "doomed")
    kept = new_conversation(engine, "kept")
    add(engine, doomed, "one", "two", "three")
    add(engine, kept, "survivor")

    with session_scope(engine) as session:
        store.delete_conversation(session, owned(session, doomed))

    assert stored(engine, doomed) is None
    assert message_count(engine, doomed) == 0
    assert stored(engine, kept) is not None
    assert message_count(engine, kept) == 1


def test_clear_messages_empties_the_conversation_and_its_summary(engine: Engine) -> None:
    cleared = new_conversation(engine, "cleared", at=T0)
    other = new_conversation(engine, "other")
    add(engine, cleared, "a", "b", "c", "d")
    add(engine, other, "untouched")
    with session_scope(engine) as session:
        store.set_summary(session, owned(session, cleared), "We talked about letters.")

    with session_scope(engine) as session:
        removed = store.clear_messages(session, owned(session, cleared))

    conversation = stored(engine, cleared)
    assert removed == 4
    assert conversation is not None
    assert (conversation.title, conversation.summary) == ("cleared", None)
    assert message_count(engine, cleared) == 0
    assert message_count(engine, other) == 1


def test_clear_messages_of_an_empty_conversation_removes_nothing(engine: Engine) -> None:
    conversation_id = new_conversation(engine)

    with session_scope(engine) as session:
        assert store.clear_messages(session, owned(session, conversation_id)) == 0


def test_set_summary_stores_and_clears_it(engine: Engine) -> None:
    conversation_id = new_conversation(engine, at=T0)
    summary = "Planning a trip: flights booked, hotel pending.\n\n- Lisbon\n- Porto " + "é" * 5000

    with session_scope(engine) as session:
        store.set_summary(session, owned(session, conversation_id), summary)
    with_summary = stored(engine, conversation_id)
    with session_scope(engine) as session:
        store.set_summary(session, owned(session, conversation_id), None)
    without = stored(engine, conversation_id)

    assert with_summary is not None and without is not None
    assert (with_summary.summary, with_summary.updated_at) == (summary, T0)
    assert without.summary is None


def test_messages_before_are_the_ones_just_older_oldest_first(engine: Engine) -> None:
    conversation_id = new_conversation(engine)
    other = new_conversation(engine)
    ids = []
    for n in range(10):
        ids += add(engine, conversation_id, f"m{n}")
        add(engine, other, f"other {n}")  # interleaved ids from another conversation

    with session_scope(engine) as session:
        page = store.messages_before(session, conversation_id, ids[7], 3)
        short_page = store.messages_before(session, conversation_id, ids[2], 50)
        nothing = store.messages_before(session, conversation_id, ids[0], 50)

    assert [m.content for m in page] == ["m4", "m5", "m6"]
    assert [m.id for m in page] == ids[4:7]
    assert [m.content for m in short_page] == ["m0", "m1"]
    assert nothing == []


def test_paging_back_with_messages_before_reaches_the_first_message(engine: Engine) -> None:
    conversation_id = new_conversation(engine)
    add(engine, conversation_id, *(f"m{n}" for n in range(23)))

    with session_scope(engine) as session:
        loaded = store.latest_messages(session, conversation_id, limit=5)
        while older := store.messages_before(session, conversation_id, loaded[0].id or 0, 5):
            loaded = older + loaded

    assert [m.content for m in loaded] == [f"m{n}" for n in range(23)]


def test_conversation_stats_count_messages_and_sum_tokens(engine: Engine) -> None:
    conversation_id = new_conversation(engine)
    other = new_conversation(engine)
    add(engine, conversation_id, "q1", "a1", prompt_tokens=100, completion_tokens=20)
    add(engine, conversation_id, "q2", "a2", prompt_tokens=250, completion_tokens=None)
    add(engine, conversation_id, "unmetered")
    add(engine, other, "x", prompt_tokens=9999, completion_tokens=9999)

    with session_scope(engine) as session:
        stats = store.conversation_stats(session, conversation_id)

    assert stats == store.ConversationStats(message_count=5, prompt_tokens=700, completion_tokens=40)


def test_conversation_stats_of_an_empty_conversation_are_zero(engine: Engine) -> None:
    conversation_id = new_conversation(engine)

    with session_scope(engine) as session:
        stats = store.conversation_stats(session, conversation_id)

    assert stats == store.ConversationStats(message_count=0, prompt_tokens=0, completion_tokens=0)
