"""Queries on the MCP servers admins add (those of CHATBOT_MCP_SERVERS are never stored)."""

from __future__ import annotations

from sqlmodel import Session, col, select

from chatbot_app.storage.models import McpServerRow


def all_servers(session: Session) -> list[McpServerRow]:
    return list(session.exec(select(McpServerRow).order_by(col(McpServerRow.created_at))).all())


def add_server(session: Session, row: McpServerRow) -> bool:
    """False (nothing added) if a server of that name exists."""
    if session.get(McpServerRow, row.name) is not None:
        return False
    session.add(row)
    return True


def change_server(session: Session, name: str, **changes: bool) -> bool:
    """Set `enabled`, `trusted` or `default_on`; False for an unknown server."""
    row = session.get(McpServerRow, name)
    if row is None:
        return False
    for field, value in changes.items():
        setattr(row, field, value)
    session.add(row)
    return True


def remove_server(session: Session, name: str) -> bool:
    row = session.get(McpServerRow, name)
    if row is None:
        return False
    session.delete(row)
    return True
