"""Queries on conversations and messages. Every read or write is scoped by owner."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import CTE, Select
from sqlalchemy.orm import aliased
from sqlmodel import Session, and_, col, delete, func, or_, select, update

from chatbot_app.storage.database import IDS_PER_QUERY
from chatbot_app.storage.models import SETTINGS_FIELDS, Conversation, Message, MessageStatus, utcnow
from chatbot_app.storage.shares import delete_links_of


def create_conversation(session: Session, owner_id: str, title: str = "New chat") -> Conversation:
    conversation = Conversation(owner_id=owner_id, title=title)
    session.add(conversation)
    session.flush()
    return conversation


def get_conversation(
    session: Session, conversation_id: str, owner_id: str, *, to_change: bool = False
) -> Conversation | None:
    """The conversation if `owner_id` owns it; a foreign id looks exactly like an unknown one.

    `to_change` holds its row until the transaction ends, so that changes to one conversation run one at a
    time: a Clear never deletes the message that a send, begun at the same moment, is answering. PostgreSQL
    locks the row (FOR UPDATE); SQLite, which has no row locks, takes its database's write lock with a write
    that changes nothing, before anything is read.
    """
    if to_change and session.get_bind().dialect.name == "sqlite":
        session.exec(update(Conversation).where(col(Conversation.id) == conversation_id).values(id=Conversation.id))
    conversation = session.get(Conversation, conversation_id, with_for_update=to_change or None)
    if conversation is None or conversation.owner_id != owner_id:
        return None
    return conversation


def _path(conversation_id: str, leaf_id: int | None = None) -> CTE:
    """The ids on the path from the conversation's first message to `leaf_id` (its current leaf if None).

    One recursive query walks up the parents, whatever the path's length; other branches are never read.
    """
    leaf = (
        select(col(Conversation.current_leaf_id)).where(Conversation.id == conversation_id).scalar_subquery()
        if leaf_id is None
        else leaf_id
    )
    path = (
        select(col(Message.id), col(Message.parent_id))
        .where(Message.id == leaf, Message.conversation_id == conversation_id)
        .cte("path", recursive=True)
    )
    parent = aliased(Message)
    # Only older messages of the same conversation: a broken row could neither loop nor reach another's.
    step = and_(
        col(parent.id) == path.c.parent_id, col(parent.id) < path.c.id, parent.conversation_id == conversation_id
    )
    return path.union_all(select(col(parent.id), col(parent.parent_id)).join(path, step))


def _on_path(conversation_id: str) -> Select[tuple[Message]]:
    """Messages of the conversation's current path; a parent is always older than its children, so id order
    is path order."""
    path = _path(conversation_id)
    return select(Message).join(path, col(Message.id) == path.c.id)


def latest_messages(session: Session, conversation_id: str, limit: int | None = None) -> list[Message]:
    """The newest `limit` messages of the current path (all if None), oldest first."""
    query = _on_path(conversation_id).order_by(col(Message.id).desc())
    if limit is not None:
        query = query.limit(limit)
    return list(reversed(session.exec(query).all()))


def add_message(
    session: Session,
    conversation: Conversation,
    role: str,
    content: str,
    *,
    status: MessageStatus = MessageStatus.COMPLETE,
    provider: str | None = None,
    model: str | None = None,
) -> Message:
    """Add a message after the conversation's current leaf, which it becomes (in the caller's transaction)."""
    message = Message(conversation_id=conversation.id, role=role, content=content, status=status)
    message.provider, message.model = provider, model
    conversation.updated_at = message.created_at
    session.add(conversation)
    session.flush()  # writes the row first: its lock (a PostgreSQL row's, SQLite's database's) is held from here
    # So the leaf is read after any change committed meanwhile (a Clear, another message): never a stale one.
    session.refresh(conversation, attribute_names=["current_leaf_id"])
    message.parent_id = conversation.current_leaf_id
    session.add(message)
    session.flush()
    conversation.current_leaf_id = message.id
    session.add(conversation)
    session.flush()
    return message


def siblings_of(session: Session, conversation_id: str, message_id: int) -> list[int]:
    """The versions of a message of the conversation (itself and the messages with its parent), oldest first;
    [] if it is not one of the conversation's."""
    message = session.get(Message, message_id)
    if message is None or message.conversation_id != conversation_id:
        return []
    query = select(col(Message.id)).where(
        Message.conversation_id == conversation_id, col(Message.parent_id).is_not_distinct_from(message.parent_id)
    )
    return [i for i in session.exec(query.order_by(col(Message.id))).all() if i is not None]


def versions_of(session: Session, conversation_id: str, message_ids: Sequence[int]) -> dict[int, list[int]]:
    """Each of the messages' versions (itself and the messages with its parent), oldest first: two queries per
    IDS_PER_QUERY messages, each answered from ix_message_conversation_id_parent_id."""
    found: dict[int, list[int]] = {}
    ids = list(message_ids)
    for start in range(0, len(ids), IDS_PER_QUERY):
        chunk = ids[start : start + IDS_PER_QUERY]
        parents = dict(
            session.exec(
                select(col(Message.id), col(Message.parent_id)).where(
                    Message.conversation_id == conversation_id, col(Message.id).in_(chunk)
                )
            ).all()
        )
        wanted = [p for p in set(parents.values()) if p is not None]
        query = (
            select(col(Message.parent_id), col(Message.id))
            .where(Message.conversation_id == conversation_id)
            .where(or_(col(Message.parent_id).in_(wanted), col(Message.parent_id).is_(None)))
            .order_by(col(Message.id))
        )
        children: dict[int | None, list[int]] = {}
        for parent_id, child_id in session.exec(query).all():
            if child_id is not None:
                children.setdefault(parent_id, []).append(child_id)
        for message_id, parent_id in parents.items():
            if message_id is not None:
                found[message_id] = children.get(parent_id, [message_id])
    return found


def version_positions(session: Session, conversation_id: str, message_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
    """For each of `message_ids` that has other versions: its place among them and how many there are, as
    the page shows them ("2/3"). One query for any number of messages."""
    found = versions_of(session, conversation_id, message_ids)
    return {m: (versions.index(m) + 1, len(versions)) for m, versions in found.items() if len(versions) > 1}


def newest_leaf_under(session: Session, conversation_id: str, message_id: int) -> int:
    """The newest message below `message_id` (or itself): the branch a user who picks it sees, as they left it.

    The caller has checked that the message is the conversation's (ValueError if not)."""
    below = (
        select(col(Message.id))
        .where(Message.id == message_id, Message.conversation_id == conversation_id)
        .cte("below", recursive=True)
    )
    child = aliased(Message)
    step = and_(
        col(child.parent_id) == below.c.id, col(child.id) > below.c.id, child.conversation_id == conversation_id
    )
    below = below.union_all(select(col(child.id)).join(below, step))
    newest = session.exec(select(func.max(below.c.id))).one()
    if newest is None:
        raise ValueError(f"message {message_id} is not one of conversation {conversation_id}'s")
    return newest


def set_current_leaf(session: Session, conversation: Conversation, leaf_id: int | None) -> None:
    """Show (and answer along) the path that ends at `leaf_id`; updated_at is kept, as for a rename."""
    conversation.current_leaf_id = leaf_id
    session.add(conversation)
    session.flush()


def save_reply(
    session: Session,
    message_id: int,
    content: str,
    status: MessageStatus,
    **fields: object,
) -> bool:
    """Write a reply's final text and status (and usage fields) in one statement.

    Only a reply still being written (or one a sweep took for dead) is written: False if the row was
    removed meanwhile (a conflict the caller reports).
    """
    result = session.exec(
        update(Message)
        .where(col(Message.id) == message_id)
        .where(col(Message.status).in_([MessageStatus.STREAMING, MessageStatus.INTERRUPTED]))
        .values(content=content, status=status, updated_at=utcnow(), **fields)
    )
    return bool(result.rowcount)


def checkpoint_reply(session: Session, message_id: int, content: str | None) -> bool:
    """Heartbeat a streaming reply (and save its text so far, if given); False if its row is gone.

    A reply that is no longer `streaming` is left as it is, so a checkpoint never undoes an end.
    """
    values: dict[str, object] = {"updated_at": utcnow()}
    if content is not None:
        values["content"] = content
    return _update_streaming(session, message_id, values) or session.get(Message, message_id) is not None


def _update_streaming(session: Session, message_id: int, values: Mapping[str, object]) -> bool:
    """Set `values` on the reply only if it is still `streaming` (in the same statement); whether it was."""
    result = session.exec(
        update(Message)
        .where(col(Message.id) == message_id)
        .where(col(Message.status) == MessageStatus.STREAMING)
        .values(**values)
    )
    return bool(result.rowcount)


@dataclass(frozen=True, slots=True)
class CheckpointRound:
    """What a checkpoint round learnt: replies whose rows are gone, and replies someone asked to stop."""

    gone: set[int]
    stop_requested: set[int]


def checkpoint_replies(session: Session, checkpoints: Mapping[int, str | None]) -> CheckpointRound:
    """`checkpoint_reply` for several replies in one transaction, reading their stop requests with it."""
    gone = {reply_id for reply_id, content in checkpoints.items() if not checkpoint_reply(session, reply_id, content)}
    query = select(Message.id).where(col(Message.id).in_(list(checkpoints)), col(Message.stop_requested))
    return CheckpointRound(gone, {message_id for message_id in session.exec(query).all() if message_id is not None})


def request_stop(session: Session, message_id: int) -> bool:
    """Ask the job writing this reply to stop, wherever it runs (its next checkpoint round reads it).

    False if the reply is no longer being written.
    """
    return _update_streaming(session, message_id, {"stop_requested": True})


def stale_replies(session: Session, older_than: timedelta) -> list[int]:
    """Replies still `streaming` whose job stopped heartbeating this long ago (its process died)."""
    query = select(Message.id).where(
        col(Message.status) == MessageStatus.STREAMING, col(Message.updated_at) < utcnow() - older_than
    )
    return [message_id for message_id in session.exec(query).all() if message_id is not None]


def interrupt_reply(session: Session, message_id: int, content: str = "", reasoning: str = "") -> bool:
    """End a reply whose job died as `interrupted`, keeping the longer of its stored text and `content`.

    `content` and `reasoning` are what its log holds: more than the last checkpoint when the job died
    between two. Only a reply still `streaming` is ended: False if it has ended (or gone) meanwhile.
    """
    message = session.get(Message, message_id)
    if message is None or message.status != MessageStatus.STREAMING:
        return False
    values: dict[str, object] = {"status": MessageStatus.INTERRUPTED, "updated_at": utcnow()}
    if len(content) > len(message.content):
        values["content"] = content
    if len(reasoning) > len(message.reasoning or ""):
        values["reasoning"] = reasoning
    return _update_streaming(session, message_id, values)


def streaming_replies(session: Session, conversation_id: str, *, on_path: bool = False) -> list[int]:
    """Ids of the conversation's replies that are still being written (only those on the current path if
    `on_path`: a reply on another branch goes on when this one is edited or answered again)."""
    source = _on_path(conversation_id) if on_path else select(Message)
    query = source.where(Message.conversation_id == conversation_id, Message.status == MessageStatus.STREAMING)
    return [message.id for message in session.exec(query).all() if message.id is not None]


def owners_streaming_replies(session: Session, owner_id: str) -> list[int]:
    """Ids of every reply still being written in the owner's conversations."""
    query = (
        select(Message.id)
        .join(Conversation, col(Conversation.id) == col(Message.conversation_id))
        .where(Conversation.owner_id == owner_id, Message.status == MessageStatus.STREAMING)
    )
    return [message_id for message_id in session.exec(query).all() if message_id is not None]


def reply_conversation(session: Session, owner_id: str, reply_id: int) -> str | None:
    """The id of the owner's conversation that holds reply `reply_id`; None if it is not the owner's."""
    query = (
        select(Conversation.id)
        .join(Message, col(Message.conversation_id) == col(Conversation.id))
        .where(Message.id == reply_id, Message.role == "assistant", Conversation.owner_id == owner_id)
    )
    return session.exec(query).first()


def owned_reply(session: Session, owner_id: str, reply_id: int) -> tuple[Message, Conversation] | None:
    """Reply `reply_id` and the conversation that holds it, if that is the owner's; else None."""
    query = (
        select(Message, Conversation)
        .join(Conversation, col(Message.conversation_id) == col(Conversation.id))
        .where(Message.id == reply_id, Message.role == "assistant", Conversation.owner_id == owner_id)
    )
    found = session.exec(query).first()
    return None if found is None else (found[0], found[1])


def messages_from(session: Session, conversation_id: str, target_id: int, window: int, cap: int) -> list[Message]:
    """The current path's newest `window` messages, extended back to message `target_id` (at most `cap` in all).

    At most three queries whatever `target_id` is: one that is unknown, in another conversation, on a
    branch not shown, or older than the first message simply gives the newest `window`.
    """
    newest = latest_messages(session, conversation_id, window)
    if not newest or newest[0].id is None or target_id >= newest[0].id:
        return newest
    if not is_on_path(session, conversation_id, target_id):
        return newest  # another conversation's, or on a branch not shown
    query = _on_path(conversation_id).where(col(Message.id) >= target_id).order_by(col(Message.id).desc()).limit(cap)
    return list(reversed(session.exec(query).all()))


def latest_conversation(session: Session, owner_id: str) -> Conversation | None:
    """The owner's most recently active conversation (its settings seed a new chat)."""
    query = (
        select(Conversation)
        .where(Conversation.owner_id == owner_id)
        .order_by(col(Conversation.updated_at).desc())
        .limit(1)
    )
    return session.exec(query).first()


def update_settings(session: Session, conversation: Conversation, **settings: object) -> None:
    """Store generation settings (provider, model, temperature, ...) on a conversation."""
    for name, value in settings.items():
        setattr(conversation, name, value)
    session.add(conversation)


def list_conversations(session: Session, owner_id: str, *, limit: int, offset: int = 0) -> list[Conversation]:
    """One page of the owner's conversations: pinned first, then most recently active."""
    query = (
        select(Conversation)
        .where(Conversation.owner_id == owner_id)
        # id breaks ties so that pages never overlap or skip a row.
        .order_by(col(Conversation.pinned).desc(), col(Conversation.updated_at).desc(), col(Conversation.id).desc())
        .offset(offset)
        .limit(limit)
    )
    return list(session.exec(query).all())


def count_conversations(session: Session, owner_id: str) -> int:
    query = select(func.count()).select_from(Conversation).where(Conversation.owner_id == owner_id)
    return session.exec(query).one()


def move_conversations(session: Session, from_owner: str, to_owner: str) -> int:
    """Give every conversation of `from_owner` to `to_owner`; how many moved."""
    result = session.exec(
        update(Conversation).where(col(Conversation.owner_id) == from_owner).values(owner_id=to_owner)
    )
    return int(result.rowcount)


def rename_conversation(session: Session, conversation: Conversation, title: str) -> None:
    """Change the title; updated_at is kept, so renaming does not reorder the sidebar."""
    conversation.title = title
    session.add(conversation)
    session.flush()


def set_pinned(session: Session, conversation: Conversation, pinned: bool) -> None:
    """Pin or unpin; updated_at is kept, so unpinning returns it to its place by activity."""
    conversation.pinned = pinned
    session.add(conversation)
    session.flush()


def set_summary(session: Session, conversation: Conversation, summary: str | None) -> None:
    conversation.summary = summary
    session.add(conversation)
    session.flush()


def delete_conversation(session: Session, conversation: Conversation) -> None:
    """Delete the conversation, all its messages and its share links."""
    # Deleting the messages explicitly (the foreign key also cascades) keeps this correct on a
    # SQLite connection that was opened without PRAGMA foreign_keys.
    session.exec(delete(Message).where(col(Message.conversation_id) == conversation.id))
    delete_links_of(session, conversation.id)
    session.delete(conversation)
    session.flush()


def clear_messages(session: Session, conversation: Conversation) -> int:
    """Delete all of the conversation's messages and its summary; returns how many messages went."""
    result = session.exec(delete(Message).where(col(Message.conversation_id) == conversation.id))
    conversation.summary, conversation.current_leaf_id = None, None
    session.add(conversation)
    session.flush()
    return result.rowcount or 0


def messages_before(session: Session, conversation_id: str, before_id: int, limit: int) -> list[Message]:
    """The `limit` messages just before message `before_id` on its path, oldest first (scrolling back): the
    branch the page shows, whichever is current."""
    path = _path(conversation_id, before_id)
    query = (
        select(Message)
        .join(path, col(Message.id) == path.c.id)
        .where(col(Message.id) < before_id)
        .order_by(col(Message.id).desc())
        .limit(limit)
    )
    return list(reversed(session.exec(query).all()))


@dataclass
class ConversationStats:
    message_count: int
    prompt_tokens: int
    completion_tokens: int


def conversation_stats(session: Session, conversation_id: str) -> ConversationStats:
    """The messages on the current path, and the tokens of every version (all were spent), in one query."""
    path = _path(conversation_id)
    query = select(
        select(func.count()).select_from(path).scalar_subquery(),
        func.coalesce(func.sum(Message.prompt_tokens), 0),
        func.coalesce(func.sum(Message.completion_tokens), 0),
    ).where(Message.conversation_id == conversation_id)
    count, prompt, completion = session.exec(query).one()
    return ConversationStats(message_count=count, prompt_tokens=int(prompt), completion_tokens=int(completion))


#: What a fork copies of each message (its id, parent and conversation are its own).
COPIED_MESSAGE_FIELDS = (
    "role",
    "content",
    "status",
    "error_kind",
    "provider",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "first_token_ms",
    "duration_ms",
    "created_at",
    "updated_at",
    "reasoning",
    "thinking_ms",
)


def fork(
    session: Session, conversation: Conversation, message_id: int, title: str
) -> tuple[Conversation, dict[int, int]]:
    """A new conversation of the same owner and settings holding a copy of the path that ends at `message_id`
    (one of the conversation's); it, and each original message's id mapped to its copy's. The caller copies
    their files."""
    path = _path(conversation.id, message_id)
    originals = session.exec(select(Message).join(path, col(Message.id) == path.c.id).order_by(col(Message.id))).all()
    copy = Conversation(owner_id=conversation.owner_id, title=title, **_picked_settings(conversation))
    rows = [
        Message(conversation_id=copy.id, **{name: getattr(original, name) for name in COPIED_MESSAGE_FIELDS})
        for original in originals
    ]
    for row in rows:
        if row.status == MessageStatus.STREAMING:  # nothing will finish it in the copy
            row.status = MessageStatus.INTERRUPTED
    session.add(copy)
    session.add_all(rows)
    session.flush()  # batched INSERTs: ids follow list order
    for parent, row in zip([None, *rows], rows, strict=False):
        row.parent_id = parent.id if parent is not None else None
    copy.current_leaf_id = rows[-1].id if rows else None
    session.flush()
    return copy, {o.id: r.id for o, r in zip(originals, rows, strict=True) if o.id is not None and r.id is not None}


def _picked_settings(conversation: Conversation) -> dict[str, object]:
    return {name: getattr(conversation, name) for name in SETTINGS_FIELDS}


def is_on_path(session: Session, conversation_id: str, message_id: int) -> bool:
    """Whether the message is on the conversation's current path."""
    return session.exec(_on_path(conversation_id).where(Message.id == message_id)).first() is not None


def path_ids(session: Session, conversation_id: str) -> list[int]:
    """The ids of the current path's messages, oldest first (an export then reads them in batches)."""
    path = _path(conversation_id)
    return [i for i in session.exec(select(path.c.id).order_by(path.c.id)).all() if i is not None]


def last_user_message(session: Session, conversation_id: str) -> Message | None:
    """The current path's last user message (the one Regenerate answers again)."""
    query = _on_path(conversation_id).where(Message.role == "user").order_by(col(Message.id).desc()).limit(1)
    return session.exec(query).first()
