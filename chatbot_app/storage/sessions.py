"""Queries on sign-in sessions, found by the digest of their token (the token itself is never stored)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, delete, select

from chatbot_app.storage.models import User, UserSession


def add_session(session: Session, user_id: int, token_hash: str, now: datetime, expires_at: datetime) -> None:
    session.add(
        UserSession(user_id=user_id, token_hash=token_hash, created_at=now, last_seen_at=now, expires_at=expires_at)
    )


def session_and_user(session: Session, token_hash: str) -> tuple[UserSession, User] | None:
    """The session with this token digest and its user; None if there is none."""
    query = (
        select(UserSession, User)
        .join(User, col(User.id) == col(UserSession.user_id))
        .where(UserSession.token_hash == token_hash)
    )
    found = session.exec(query).first()
    return None if found is None else (found[0], found[1])


def delete_session(session: Session, token_hash: str) -> None:
    session.exec(delete(UserSession).where(col(UserSession.token_hash) == token_hash))  # type: ignore[call-overload]


def delete_sessions_of(session: Session, user_id: int, keep_hash: str | None = None) -> None:
    """Every session of the user, but the one with the token digest `keep_hash` if given."""
    statement = delete(UserSession).where(col(UserSession.user_id) == user_id)
    if keep_hash is not None:
        statement = statement.where(col(UserSession.token_hash) != keep_hash)
    session.exec(statement)  # type: ignore[call-overload]
