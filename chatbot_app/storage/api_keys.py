"""Queries on personal API keys, found by the digest of the key (the key itself is never stored)."""

from __future__ import annotations

from sqlmodel import Session, col, select, update

from chatbot_app.storage.models import ApiKey, User


def add_api_key(session: Session, key: ApiKey) -> None:
    session.add(key)


def api_keys_of(session: Session, user_id: int) -> list[ApiKey]:
    return list(session.exec(select(ApiKey).where(ApiKey.user_id == user_id).order_by(col(ApiKey.id))).all())


def key_and_user(session: Session, key_hash: str) -> tuple[ApiKey, User] | None:
    """The key with this digest and its user (revoked or not); None if there is none."""
    query = select(ApiKey, User).join(User, col(User.id) == col(ApiKey.user_id)).where(ApiKey.key_hash == key_hash)
    found = session.exec(query).first()
    return None if found is None else (found[0], found[1])


def revoke_api_key(session: Session, user_id: int, key_id: int) -> bool:
    """Revoke one of the user's own keys; False if it is not theirs (or unknown)."""
    key = session.get(ApiKey, key_id)
    if key is None or key.user_id != user_id:
        return False
    key.revoked = True
    return True


def revoke_api_keys_of(session: Session, user_id: int) -> None:
    session.exec(update(ApiKey).where(col(ApiKey.user_id) == user_id).values(revoked=True))  # type: ignore[call-overload]
