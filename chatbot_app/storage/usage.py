"""Tokens spent per user: the daily quota's ledger, its open reservations, per-model daily totals, and the
reports drawn from them (tokens per day and model, the top users).

Plain functions over a session. The quota's guarantee rests on `hold`: one conditional UPDATE that
adds a reservation only while used + reserved stays within the limit. PostgreSQL re-checks the
condition on the row's newest version after taking its lock, and SQLite has one writer at a time,
so concurrent calls can never hold more than the limit between them.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import case, delete, func, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from chatbot_app.storage.models import (
    Conversation,
    DailyUsage,
    Message,
    TokenLedger,
    TokenReservation,
    ToolCallRecord,
    User,
)


def _insert(session: Session, table: Any) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT."""
    return (postgresql if session.get_bind().dialect.name == "postgresql" else sqlite).insert(table)


def daily_limit(session: Session, user_id: int, default: int | None) -> int | None:
    """The user's own daily token quota, else `default` (None: unlimited)."""
    own = session.exec(select(User.daily_token_quota).where(User.id == user_id)).first()
    return own if own is not None else default


def ledger(session: Session, user_id: int, day: date) -> tuple[int, int]:
    """(used, reserved) tokens of the user's day, creating its row if needed."""
    session.exec(  # type: ignore[call-overload]
        _insert(session, TokenLedger)
        .values(user_id=user_id, day=day, used_tokens=0, reserved_tokens=0)
        .on_conflict_do_nothing(index_elements=["user_id", "day"])
    )
    row = session.exec(
        select(TokenLedger.used_tokens, TokenLedger.reserved_tokens).where(
            TokenLedger.user_id == user_id, TokenLedger.day == day
        )
    ).one()
    return int(row[0]), int(row[1])


def hold(session: Session, user_id: int, day: date, tokens: int, limit: int | None) -> bool:
    """Add `tokens` to the day's reserved tokens unless used + reserved would pass `limit`; whether it did.

    The row must exist (`ledger` creates it).
    """
    statement = (
        update(TokenLedger)
        .where(col(TokenLedger.user_id) == user_id, col(TokenLedger.day) == day)
        .values(reserved_tokens=TokenLedger.reserved_tokens + tokens)
    )
    if limit is not None:
        statement = statement.where(TokenLedger.used_tokens + TokenLedger.reserved_tokens + tokens <= limit)
    return bool(session.exec(statement).rowcount)  # type: ignore[call-overload]


def add_reservation(session: Session, user_id: int, day: date, tokens: int, expires_at: datetime) -> int:
    row = TokenReservation(user_id=user_id, day=day, tokens=tokens, expires_at=expires_at)
    session.add(row)
    session.flush()
    assert row.id is not None
    return row.id


def settle(session: Session, reservation_id: int | None, user_id: int, day: date, used: int) -> None:
    """Count `used` tokens on the day, and release the reservation if it is still held.

    A reservation that expired meanwhile was released by `release_expired` already: only `used` counts then.
    """
    held = 0
    if reservation_id is not None:
        held = session.exec(select(TokenReservation.tokens).where(TokenReservation.id == reservation_id)).first() or 0
        session.exec(delete(TokenReservation).where(col(TokenReservation.id) == reservation_id))  # type: ignore[call-overload]
    ledger(session, user_id, day)
    session.exec(  # type: ignore[call-overload]
        update(TokenLedger)
        .where(col(TokenLedger.user_id) == user_id, col(TokenLedger.day) == day)
        .values(
            used_tokens=TokenLedger.used_tokens + used,
            reserved_tokens=case((TokenLedger.reserved_tokens > held, TokenLedger.reserved_tokens - held), else_=0),
        )
    )


def release_expired(session: Session, now: datetime) -> int:
    """Release the reservations of calls that never settled (their process died); how many."""
    expired = session.exec(
        select(TokenReservation).where(col(TokenReservation.expires_at) < now).with_for_update(skip_locked=True)
    ).all()
    for reservation in expired:
        session.exec(  # type: ignore[call-overload]
            update(TokenLedger)
            .where(col(TokenLedger.user_id) == reservation.user_id, col(TokenLedger.day) == reservation.day)
            .values(reserved_tokens=TokenLedger.reserved_tokens - reservation.tokens)
        )
        session.delete(reservation)
    return len(expired)


def add_daily_usage(
    session: Session, user_id: int, day: date, model: str, prompt_tokens: int, completion_tokens: int
) -> None:
    """Add one call and its tokens to the (user, day, model) totals; one statement, safe under races."""
    insert = _insert(session, DailyUsage).values(
        user_id=user_id,
        day=day,
        model=model[:128],
        messages=1,
        prompt_tokens=max(0, prompt_tokens),
        completion_tokens=max(0, completion_tokens),
    )
    table = DailyUsage.__table__.c  # type: ignore[attr-defined]
    session.exec(  # type: ignore[call-overload]
        insert.on_conflict_do_update(
            index_elements=["user_id", "day", "model"],
            set_={
                "messages": table.messages + 1,
                "prompt_tokens": table.prompt_tokens + insert.excluded.prompt_tokens,
                "completion_tokens": table.completion_tokens + insert.excluded.completion_tokens,
            },
        )
    )


def usage_with_emails(session: Session, since: date, user_id: int | None = None) -> list[tuple[DailyUsage, str]]:
    """Daily usage rows since `since` (one user's, or everyone's) with each user's email, newest first."""
    query = (
        select(DailyUsage, User.email)
        .join(User, col(User.id) == col(DailyUsage.user_id))
        .where(DailyUsage.day >= since)
        .order_by(col(DailyUsage.day).desc(), col(DailyUsage.user_id), col(DailyUsage.model))
    )
    if user_id is not None:
        query = query.where(DailyUsage.user_id == user_id)
    return list(session.exec(query).all())


def tokens_per_day(session: Session, since: date, user_id: int | None = None) -> list[tuple[date, str, int]]:
    """(day, model, tokens) for each day from `since` on with any use, in one grouped query: one user's,
    or everyone's (`user_id` None). Days without use have no row."""
    tokens = func.sum(DailyUsage.prompt_tokens + DailyUsage.completion_tokens)
    query = (
        select(DailyUsage.day, DailyUsage.model, tokens)
        .where(DailyUsage.day >= since)
        .group_by(col(DailyUsage.day), col(DailyUsage.model))
        .order_by(col(DailyUsage.day), col(DailyUsage.model))
    )
    if user_id is not None:
        query = query.where(DailyUsage.user_id == user_id)
    return [(day, model, int(total or 0)) for day, model, total in session.exec(query).all()]


def top_users(session: Session, since: date, limit: int) -> list[tuple[int, str | None, int, int]]:
    """The `limit` users who spent the most tokens from `since` on: (user id, email, tokens, messages)."""
    tokens = func.sum(DailyUsage.prompt_tokens + DailyUsage.completion_tokens)
    query = (
        select(DailyUsage.user_id, User.email, tokens, func.sum(DailyUsage.messages))
        .join(User, col(User.id) == col(DailyUsage.user_id))
        .where(DailyUsage.day >= since)
        .group_by(col(DailyUsage.user_id), col(User.email))
        .order_by(tokens.desc(), col(DailyUsage.user_id))
        .limit(limit)
    )
    return [(user, email, int(total or 0), int(messages or 0)) for user, email, total, messages in session.exec(query)]


def tool_calls_per_user(session: Session, since: datetime, limit: int) -> list[tuple[str, str | None, str, int, int]]:
    """Tool calls made from `since` on, per owner and tool, most first: (owner id, email, tool, calls, failed).

    Anonymous owners have no email; an account's owner id is "user:<id>".
    """
    failed = func.sum(case((col(ToolCallRecord.status).in_(["error", "denied"]), 1), else_=0))
    calls = func.count(col(ToolCallRecord.id))
    query = (
        select(Conversation.owner_id, ToolCallRecord.name, calls, failed)
        .join(Message, col(Message.id) == col(ToolCallRecord.reply_id))
        .join(Conversation, col(Conversation.id) == col(Message.conversation_id))
        .where(col(ToolCallRecord.started_at) >= since)
        .group_by(col(Conversation.owner_id), col(ToolCallRecord.name))
        .order_by(calls.desc(), col(Conversation.owner_id), col(ToolCallRecord.name))
        .limit(limit)
    )
    rows = list(session.exec(query))
    ids = {user_id for owner, *_ in rows if (user_id := _account_id(owner)) is not None}
    emails = dict(session.exec(select(User.id, User.email).where(col(User.id).in_(ids))).all()) if ids else {}
    return [(owner, emails.get(_account_id(owner)), name, int(n), int(bad or 0)) for owner, name, n, bad in rows]


def _account_id(owner_id: str) -> int | None:
    prefix, _, number = owner_id.partition(":")
    return int(number) if prefix == "user" and number.isascii() and number.isdigit() else None
