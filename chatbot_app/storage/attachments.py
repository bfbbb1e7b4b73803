"""Queries on attachments. A file is owned through its message's conversation; reads check that owner."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from sqlalchemy import insert, literal
from sqlmodel import Session, col, select

from chatbot_app.storage.database import IDS_PER_QUERY
from chatbot_app.storage.models import Attachment, Conversation, Message, new_attachment_token, utcnow


class FileToStore(Protocol):
    """A checked file (services.attachments.PreparedAttachment)."""

    filename: str
    media_type: str
    data: bytes
    text: str | None


def add_attachments(session: Session, message_id: int, files: Sequence[FileToStore]) -> list[Attachment]:
    rows = [
        Attachment(
            message_id=message_id,
            filename=f.filename,
            media_type=f.media_type,
            size=len(f.data),
            data=f.data,
            text=f.text,
        )
        for f in files
    ]
    session.add_all(rows)
    session.flush()
    return rows


def copy_attachments(session: Session, copies: Mapping[int, int]) -> dict[int, int]:
    """Give each copy of a message (an edit's new version, a fork's) the files of its original, each with a
    link of its own; `copies` maps original message ids to copy ids. The bytes are copied inside the database
    (INSERT ... SELECT): they never pass through this process. Returns original attachment ids -> copies'."""
    originals = list(copies)
    copied: dict[int, int] = {}
    for start in range(0, len(originals), IDS_PER_QUERY):
        query = select(Attachment.id, Attachment.message_id).where(
            col(Attachment.message_id).in_(originals[start : start + IDS_PER_QUERY])
        )
        for attachment_id, message_id in session.exec(query.order_by(col(Attachment.id))).all():
            columns = ("filename", "media_type", "size", "data", "text")
            source = select(
                literal(copies[message_id]),
                literal(new_attachment_token()),
                literal(utcnow()),
                *(getattr(Attachment, name) for name in columns),
            ).where(Attachment.id == attachment_id)
            statement = insert(Attachment).from_select(["message_id", "token", "created_at", *columns], source)
            # None only if the file went meanwhile (the callers hold its conversation, so it should not).
            copy_id = session.exec(statement.returning(Attachment.id)).scalar_one_or_none()
            if copy_id is not None:
                copied[attachment_id] = copy_id
    return copied


def attachments_of(session: Session, message_ids: Sequence[int]) -> dict[int, list[Attachment]]:
    """Each message's attachments, in the order they were sent (the caller has checked the owner)."""
    found: dict[int, list[Attachment]] = {}
    if not message_ids:
        return found
    query = select(Attachment).where(col(Attachment.message_id).in_(message_ids)).order_by(col(Attachment.id))
    for row in session.exec(query):
        found.setdefault(row.message_id, []).append(row)
    return found


def attachment_summaries(
    session: Session, owner_id: str, conversation_id: str, message_ids: Sequence[int]
) -> list[tuple[int, str, str, int, str]]:
    """(message id, filename, media type, size, token) of the messages' files; none for a foreign conversation.

    The bytes are not read: a message list needs only names and links.
    """
    conversation = session.get(Conversation, conversation_id)
    if conversation is None or conversation.owner_id != owner_id or not message_ids:
        return []
    query = (
        select(Attachment.message_id, Attachment.filename, Attachment.media_type, Attachment.size, Attachment.token)
        .join(Message, col(Message.id) == col(Attachment.message_id))
        .where(Message.conversation_id == conversation_id, col(Attachment.message_id).in_(message_ids))
        .order_by(col(Attachment.id))
    )
    return list(session.exec(query).all())  # type: ignore[arg-type]


def attachment_by_token(session: Session, token: str, owner_id: str | None = None) -> Attachment | None:
    """The attachment a URL token names; with `owner_id`, only if that owner owns it."""
    query = (
        select(Attachment, Conversation.owner_id)
        .join(Message, col(Message.id) == col(Attachment.message_id))
        .join(Conversation, col(Conversation.id) == col(Message.conversation_id))
        .where(Attachment.token == token)
    )
    row = session.exec(query).first()
    if row is None or (owner_id is not None and row[1] != owner_id):
        return None
    return row[0]
