"""Server-wide facts every backend must agree on, one row per name (`ServerSetting`)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from chatbot_app.storage.models import ServerSetting


def setting(session: Session, name: str) -> str | None:
    row = session.get(ServerSetting, name)
    return None if row is None else row.value


def claim_setting(session: Session, name: str, value: str, now: datetime) -> None:
    """Insert the row now: if another transaction has it already, IntegrityError (its name is the key)."""
    session.add(ServerSetting(name=name, value=value, updated_at=now))
    session.flush()


def put_setting(session: Session, name: str, value: str, now: datetime) -> None:
    """Create or replace the row."""
    row = session.get(ServerSetting, name) or ServerSetting(name=name)
    row.value, row.updated_at = value, now
    session.add(row)
