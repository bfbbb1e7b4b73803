"""Queries on conversations and messages. Every read or write is scoped by owner."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session, col, select, update

from chatbot_app.storage.models import Conversation, Message, MessageStatus, utcnow


def create_conversation(session: Session, owner_id: str, title: str = "New chat") -> Conversation:
    conversation = Conversation(owner_id=owner_id, title=title)
    session.add(conversation)
    session.flush()
    return conversation


def get_conversation(session: Session, conversation_id: str, owner_id: str) -> Conversation | None:
    """The conversation if `owner_id` owns it; a foreign id looks exactly like an unknown one."""
    conversation = session.get(Conversation, conversation_id)
    if conversation is None or conversation.owner_id != owner_id:
        return None
    return conversation


def latest_messages(session: Session, conversation_id: str, limit: int | None = None) -> list[Message]:
    """The newest `limit` messages (all if None), oldest first."""
    query = select(Message).where(Message.conversation_id == conversation_id).order_by(col(Message.id).desc())
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
    message = Message(
        conversation_id=conversation.id,
        role=role,
        content=content,
        status=status,
        provider=provider,
        model=model,
    )
    conversation.updated_at = message.created_at
    session.add_all([message, conversation])
    session.flush()
    return message


def save_reply(
    session: Session,
    message_id: int,
    content: str,
    status: MessageStatus,
    **fields: object,
) -> None:
    """Write a reply's text and status (and usage fields) in one statement."""
    session.exec(
        update(Message)
        .where(col(Message.id) == message_id)
        .values(content=content, status=status, updated_at=utcnow(), **fields)
    )


def interrupt_stale_replies(session: Session, older_than: timedelta) -> int:
    """Mark replies left `streaming` by a dead process as interrupted; their text is kept."""
    result = session.exec(
        update(Message)
        .where(col(Message.status) == MessageStatus.STREAMING)
        .where(col(Message.updated_at) < utcnow() - older_than)
        .values(status=MessageStatus.INTERRUPTED)
    )
    return result.rowcount or 0


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
