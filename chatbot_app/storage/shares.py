"""Queries on share links: read-only snapshots of a conversation, found by the digest of their token."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import update
from sqlmodel import Session, col, delete, func, select

from chatbot_app.storage.models import Attachment, Conversation, Message, ShareLink


def move_shares(session: Session, from_owner: str, to_owner: str) -> None:
    """Hand an identity's links to another owner (an anonymous identity's, claimed by its user)."""
    session.exec(  # type: ignore[call-overload]
        update(ShareLink).where(col(ShareLink.owner_id) == from_owner).values(owner_id=to_owner)
    )


def add_share(session: Session, link: ShareLink) -> None:
    session.add(link)
    session.flush()


def live_link_count(session: Session, conversation_id: str) -> int:
    query = (
        select(func.count())
        .select_from(ShareLink)
        .where(ShareLink.conversation_id == conversation_id, col(ShareLink.revoked).is_(False))
    )
    return int(session.exec(query).one())


def snapshot_by_digest(session: Session, token_hash: str) -> str | None:
    """The snapshot (JSON) of a live link; None for unknown and revoked links alike."""
    query = select(ShareLink.snapshot).where(ShareLink.token_hash == token_hash, col(ShareLink.revoked).is_(False))
    return session.exec(query).first()


def live_link_by_digest(session: Session, token_hash: str) -> ShareLink | None:
    """A live link; None for unknown and revoked links alike."""
    query = select(ShareLink).where(ShareLink.token_hash == token_hash, col(ShareLink.revoked).is_(False))
    return session.exec(query).first()


def files_of(session: Session, conversation_id: str, message_ids: Sequence[int]) -> list[tuple[int, int, str, str]]:
    """(message id, attachment id, filename, media type) of the messages' files, in the order they were sent.

    The bytes are not read; the caller has checked that the conversation is the owner's.
    """
    if not message_ids:
        return []
    query = (
        select(Attachment.message_id, Attachment.id, Attachment.filename, Attachment.media_type)
        .join(Message, col(Message.id) == col(Attachment.message_id))
        .where(Message.conversation_id == conversation_id, col(Attachment.message_id).in_(message_ids))
        .order_by(col(Attachment.id))
    )
    return list(session.exec(query).all())  # type: ignore[arg-type]


def file_in_conversation(
    session: Session, conversation_id: str, attachment_id: int | None = None, token: str | None = None
) -> Attachment | None:
    """One of the conversation's files, by its id (or, for links made before ids were kept, its token)."""
    query = (
        select(Attachment)
        .join(Message, col(Message.id) == col(Attachment.message_id))
        .where(Message.conversation_id == conversation_id)
    )
    if attachment_id is not None:
        query = query.where(Attachment.id == attachment_id)
    elif token is not None:
        query = query.where(Attachment.token == token)
    else:
        return None
    return session.exec(query).first()


def live_links(session: Session, owner_id: str, conversation_id: str | None = None) -> list[tuple[ShareLink, str]]:
    """The owner's live links, newest first, each with its conversation's title (of one conversation if given)."""
    query = (
        select(ShareLink, Conversation.title)
        .join(Conversation, col(Conversation.id) == col(ShareLink.conversation_id))
        .where(ShareLink.owner_id == owner_id, col(ShareLink.revoked).is_(False))
        .order_by(col(ShareLink.id).desc())
    )
    if conversation_id is not None:
        query = query.where(ShareLink.conversation_id == conversation_id)
    return [(link, title) for link, title in session.exec(query).all()]


def revoke(session: Session, owner_id: str, share_id: int) -> bool:
    """Revoke one of the owner's links; False if it is not theirs (or unknown)."""
    link = session.get(ShareLink, share_id)
    if link is None or link.owner_id != owner_id or link.revoked:
        return False
    link.revoked = True
    session.add(link)
    return True


def delete_links_of(session: Session, conversation_id: str) -> None:
    """A conversation's links go with it (the table has no foreign key: rows written before this rule exist)."""
    session.exec(delete(ShareLink).where(col(ShareLink.conversation_id) == conversation_id))  # type: ignore[call-overload]
