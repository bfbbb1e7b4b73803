"""SQLModel tables. Schema changes go through a reviewed migration in alembic/versions/."""

from __future__ import annotations

import enum
import secrets
from datetime import UTC, datetime

from sqlalchemy import Column, ForeignKey, Index, Integer, LargeBinary, Text, UniqueConstraint, false
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_conversation_id() -> str:
    # 128 random bits: ids appear in URLs, so they must not be guessable or enumerable.
    return secrets.token_hex(16)


class MessageStatus(enum.StrEnum):
    COMPLETE = "complete"
    STREAMING = "streaming"
    STOPPED = "stopped"
    ERROR = "error"
    INTERRUPTED = "interrupted"


class Conversation(SQLModel, table=True):
    # The sidebar lists an owner's conversations pinned first, then most recently active.
    __table_args__ = (Index("ix_conversation_owner_id_pinned_updated_at", "owner_id", "pinned", "updated_at"),)

    id: str = Field(default_factory=new_conversation_id, primary_key=True, max_length=32)
    owner_id: str = Field(index=True, max_length=64)
    title: str = Field(default="New chat", max_length=200)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow, index=True)
    # Generation settings chosen for this conversation; None means "the app's default".
    provider: str | None = Field(default=None, max_length=32)
    model: str | None = Field(default=None, max_length=128)
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    system_prompt: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # A server default so rows written before this column existed read as unpinned.
    pinned: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    summary: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class Message(SQLModel, table=True):
    __table_args__ = (Index("ix_message_conversation_id_id", "conversation_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: str = Field(foreign_key="conversation.id", ondelete="CASCADE", max_length=32)
    role: str = Field(max_length=16)
    content: str = Field(default="", sa_column=Column(Text, nullable=False))
    # A plain string, not a database enum, so new statuses need no type migration.
    status: str = Field(default=MessageStatus.COMPLETE, max_length=16)
    error_kind: str | None = Field(default=None, max_length=32)
    provider: str | None = Field(default=None, max_length=32)
    model: str | None = Field(default=None, max_length=128)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    first_token_ms: int | None = None
    duration_ms: int | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    # A reasoning model's thinking, kept to show with the reply; never sent back to the model.
    reasoning: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


def new_attachment_token() -> str:
    # 256 random bits: the token is the attachment's URL, so it must not be guessable.
    return secrets.token_urlsafe(32)


class Attachment(SQLModel, table=True):
    """A file sent with a user message; owned through the message's conversation."""

    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(
        sa_column=Column(Integer, ForeignKey("message.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    # What the URL names instead of the id, so ids are neither revealed nor enumerable.
    token: str = Field(default_factory=new_attachment_token, max_length=64, unique=True)
    filename: str = Field(max_length=255)
    # The type found in the content (never the name's extension): image/png, application/pdf, text/plain...
    media_type: str = Field(max_length=100)
    size: int
    # The bytes as stored (images re-encoded and scaled, so without their metadata).
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    # The text given to the model for text files and PDFs; None for images.
    text: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow)


class PromptPreset(SQLModel, table=True):
    """A system prompt a user saved under a name."""

    __tablename__ = "prompt_preset"
    __table_args__ = (UniqueConstraint("owner_id", "name", name="uq_prompt_preset_owner_id_name"),)

    id: int | None = Field(default=None, primary_key=True)
    owner_id: str = Field(index=True, max_length=64)
    name: str = Field(max_length=80)
    prompt: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
