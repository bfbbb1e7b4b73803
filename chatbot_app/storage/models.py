"""SQLModel tables. Schema changes go through a reviewed migration in alembic/versions/."""

from __future__ import annotations

import enum
import secrets
from datetime import UTC, date, datetime

from sqlalchemy import Column, ForeignKey, Index, Integer, LargeBinary, Text, UniqueConstraint, false, text
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


# The rows still being written, for the stale-reply sweep (a partial index: only they are in it).
_STREAMING = text("status = 'streaming'")


class Message(SQLModel, table=True):
    __table_args__ = (
        Index("ix_message_conversation_id_id", "conversation_id", "id"),
        Index("ix_message_streaming_updated_at", "updated_at", sqlite_where=_STREAMING, postgresql_where=_STREAMING),
    )

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
    # How long the model thought before it began to answer.
    thinking_ms: int | None = None


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


# --- Accounts (CHATBOT_AUTH other than "none") ---------------------------------------------------
# Secrets (session tokens, API keys, share tokens) are stored only as SHA-256 hex digests: they are
# 256-bit random values, so a fast hash is enough; passwords get Argon2id in services/accounts.py.


class UserRole(enum.StrEnum):
    ADMIN = "admin"
    USER = "user"


class User(SQLModel, table=True):
    __tablename__ = "app_user"  # "user" is reserved in PostgreSQL
    __table_args__ = (
        UniqueConstraint("email", name="uq_app_user_email"),
        UniqueConstraint("oidc_issuer", "oidc_subject", name="uq_app_user_oidc_issuer_subject"),
    )

    id: int | None = Field(default=None, primary_key=True)
    # Stored lower-cased; None for an OIDC user whose provider gave no email.
    email: str | None = Field(default=None, max_length=320)
    # None for users who only sign in with OIDC.
    password_hash: str | None = Field(default=None, max_length=255)
    role: str = Field(default=UserRole.USER, max_length=16)
    disabled: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    # None: the CHATBOT_DAILY_TOKENS_PER_USER default applies.
    daily_token_quota: int | None = None
    oidc_issuer: str | None = Field(default=None, max_length=255)
    oidc_subject: str | None = Field(default=None, max_length=255)
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def owner_id(self) -> str:
        """What this user's conversations carry as owner_id (anonymous browsers keep their own ids)."""
        return f"user:{self.id}"

    @property
    def is_admin(self) -> bool:
        return self.role == UserRole.ADMIN


class UserSession(SQLModel, table=True):
    __tablename__ = "user_session"
    __table_args__ = (UniqueConstraint("token_hash", name="uq_user_session_token_hash"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="app_user.id", ondelete="CASCADE", index=True)
    token_hash: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    last_seen_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime


class ApiKey(SQLModel, table=True):
    """A personal API key: acts as its user in /api and /v1."""

    __tablename__ = "api_key"
    __table_args__ = (UniqueConstraint("key_hash", name="uq_api_key_key_hash"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="app_user.id", ondelete="CASCADE", index=True)
    name: str = Field(default="", max_length=80)
    key_hash: str = Field(max_length=64)
    # The first characters of the key, shown in lists so that a user can tell keys apart.
    prefix: str = Field(max_length=16)
    revoked: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = None


class ShareLink(SQLModel, table=True):
    """A read-only snapshot of a conversation, reachable by anyone holding its token."""

    __tablename__ = "share_link"
    __table_args__ = (UniqueConstraint("token_hash", name="uq_share_link_token_hash"),)

    id: int | None = Field(default=None, primary_key=True)
    owner_id: str = Field(index=True, max_length=64)
    # No foreign key: the snapshot is a copy and outlives the conversation if its owner wants it to.
    conversation_id: str = Field(index=True, max_length=32)
    token_hash: str = Field(max_length=64)
    snapshot: str = Field(sa_column=Column(Text, nullable=False))
    revoked: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    created_at: datetime = Field(default_factory=utcnow)


class DailyUsage(SQLModel, table=True):
    """Messages and tokens one user spent on one model in one UTC day."""

    __tablename__ = "daily_usage"
    __table_args__ = (UniqueConstraint("user_id", "day", "model", name="uq_daily_usage_user_id_day_model"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="app_user.id", ondelete="CASCADE", index=True)
    day: date = Field(index=True)
    model: str = Field(max_length=128)
    messages: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
