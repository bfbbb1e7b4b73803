"""Queries on tool calls: written by a reply's job, read with the reply, answered by its owner."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from chatbot_app.storage.database import IDS_PER_QUERY
from chatbot_app.storage.models import Conversation, Message, ToolCallRecord, ToolCallStatus


def add_call(session: Session, record: ToolCallRecord) -> int:
    session.add(record)
    session.flush()
    assert record.id is not None
    return record.id


def end_call(
    session: Session,
    row_id: int,
    status: str,
    result: str,
    error: str | None,
    duration_ms: int,
    sources: Sequence[tuple[str, str]] = (),
) -> None:
    record = session.get(ToolCallRecord, row_id)
    if record is None:  # the reply (and so its calls) was deleted meanwhile
        return
    record.status, record.result, record.error, record.duration_ms = status, result, error, duration_ms
    record.sources = json.dumps([list(s) for s in sources]) if sources else None
    session.add(record)


def calls_of(session: Session, conversation_id: str, reply_ids: Sequence[int]) -> dict[int, list[ToolCallRecord]]:
    """Each reply's calls, in the order they were made (replies of the conversation only)."""
    found: dict[int, list[ToolCallRecord]] = {}
    ids = list(reply_ids)
    for start in range(0, len(ids), IDS_PER_QUERY):
        query = (
            select(ToolCallRecord)
            .join(Message, col(Message.id) == col(ToolCallRecord.reply_id))
            .where(
                col(ToolCallRecord.reply_id).in_(ids[start : start + IDS_PER_QUERY]),
                Message.conversation_id == conversation_id,
            )
        )
        for record in session.exec(query.order_by(col(ToolCallRecord.id))).all():
            found.setdefault(record.reply_id, []).append(record)
    return found


def status_of(session: Session, row_id: int) -> str | None:
    record = session.get(ToolCallRecord, row_id)
    return record.status if record is not None else None


def answer(session: Session, owner_id: str, reply_id: int, call_id: str, approve: bool) -> bool:
    """The owner's answer to a call that waits for approval: it then runs, or counts as denied.

    False (nothing changed) for another user's reply, an unknown call, or one already answered: the change
    is one conditional UPDATE, so of two answers at once (or an answer and the wait's end) one wins.
    """
    owned = (
        select(Message.id)
        .join(Conversation, col(Conversation.id) == col(Message.conversation_id))
        .where(Message.id == reply_id, Conversation.owner_id == owner_id)
    )
    if session.exec(owned).first() is None:
        return False
    return _leave_waiting(
        session,
        (ToolCallRecord.reply_id == reply_id) & (ToolCallRecord.call_id == call_id),
        ToolCallStatus.RUNNING if approve else ToolCallStatus.DENIED,
    )


def _leave_waiting(session: Session, which: Any, status: str) -> bool:
    changed = session.exec(  # type: ignore[call-overload]
        update(ToolCallRecord)
        .where(which, ToolCallRecord.status == ToolCallStatus.AWAITING_APPROVAL)
        .values(status=status)
    )
    return bool(changed.rowcount)


def expire_approval(session: Session, row_id: int) -> bool:
    """A call whose approval was not given in time counts as denied; False if it was answered first."""
    return _leave_waiting(session, ToolCallRecord.id == row_id, ToolCallStatus.DENIED)


def end_unfinished(session: Session, reply_id: int, error: str) -> None:
    """A reply whose process died: its calls still running or waiting end as errors, saying why."""
    query = select(ToolCallRecord).where(
        ToolCallRecord.reply_id == reply_id,
        col(ToolCallRecord.status).in_([ToolCallStatus.RUNNING, ToolCallStatus.AWAITING_APPROVAL]),
    )
    for record in session.exec(query).all():
        record.status, record.error = ToolCallStatus.ERROR, error
        session.add(record)
