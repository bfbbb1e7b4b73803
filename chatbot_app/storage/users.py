"""Queries on user accounts. Who may do what, and who becomes the first admin, is services/accounts.py's."""

from __future__ import annotations

from typing import Any

from sqlalchemy import false, func, update
from sqlmodel import Session, col, select

from chatbot_app.storage.models import User, UserRole


def add_user(session: Session, user: User) -> User:
    """Insert `user` now (a unique email or login taken meanwhile raises IntegrityError here)."""
    session.add(user)
    session.flush()
    return user


def user_by_id(session: Session, user_id: int) -> User | None:
    return session.get(User, user_id)


def has_users(session: Session) -> bool:
    return session.exec(select(User.id).limit(1)).first() is not None


def email_taken(session: Session, email: str) -> bool:
    return session.exec(select(User.id).where(User.email == email)).first() is not None


def user_by_email(session: Session, email: str) -> User | None:
    return session.exec(select(User).where(User.email == email)).first()


def user_by_login(session: Session, issuer: str, subject: str) -> User | None:
    """The user who signs in with this single sign-on (issuer, subject) pair."""
    return session.exec(select(User).where(User.oidc_issuer == issuer, User.oidc_subject == subject)).first()


def all_users(session: Session) -> list[User]:
    return list(session.exec(select(User).order_by(col(User.id))).all())


def replace_password(session: Session, user_id: int, current_hash: str, new_hash: str, **fields: Any) -> bool:
    """Write `new_hash` (and `fields`) only while the stored hash is still `current_hash`; whether it did."""
    statement = (
        update(User)
        .where(col(User.id) == user_id, col(User.password_hash) == current_hash)
        .values(password_hash=new_hash, **fields)
    )
    return bool(session.exec(statement).rowcount)  # type: ignore[call-overload]


def lock_admins(session: Session) -> None:
    """Serialize the transactions that change who is an enabled admin, until this one commits.

    PostgreSQL: lock the enabled admins' rows; a transaction waiting for them reads them again once
    the holder commits. SQLite: take the database's one write lock now, before anything is read
    (any write statement takes it, and holds it to the commit), so the counts read next are final.
    """
    if session.get_bind().dialect.name == "postgresql":
        enabled_admins = select(User.id).where(User.role == UserRole.ADMIN, col(User.disabled).is_(False))
        session.exec(enabled_admins.with_for_update())
    else:
        session.exec(update(User).where(false()).values(role=User.role))  # type: ignore[call-overload]


def other_enabled_admins(session: Session, user_id: int | None) -> int:
    """How many enabled admins there are besides `user_id`."""
    query = (
        select(func.count())
        .select_from(User)
        .where(User.role == UserRole.ADMIN, col(User.disabled).is_(False), User.id != user_id)
    )
    return int(session.exec(query).one())
