"""SQLModel tables. Schema changes go through a reviewed migration in alembic/versions/."""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime

from sqlalchemy import Column, ForeignKey, Index, Integer, LargeBinary, Text, UniqueConstraint, false, text
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_conversation_id() -> str:
    # 128 random bits: ids appear in URLs, so they must not be guessable or enumerable.
    return secrets.token_hex(16)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationSettings:
    """A conversation's generation settings, as stored, exported and shown by the API; None: the app's default.

    The one list of them: the services' ChatSettings and an imported conversation extend it. The voice is
    the listener's choice, not the model's, and stays out.
    """

    provider: str | None = None
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    system_prompt: str | None = None


SETTINGS_FIELDS = tuple(f.name for f in fields(ConversationSettings))


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
    # The voice its replies are read aloud in; None (or one the speech service no longer has): its default.
    voice: str | None = Field(default=None, max_length=64)
    # A server default so rows written before this column existed read as unpinned.
    pinned: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    summary: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # The last message of the path shown (and sent to the model); None while it has none. A plain id, not a
    # foreign key: the message table already points here, and deleting either must not need the other first.
    current_leaf_id: int | None = None
    # Tools: Groq's web search (and code) on; the MCP servers turned on, comma-separated (None: the defaults).
    web_search: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    mcp_servers: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


# The rows still being written, for the stale-reply sweep (a partial index: only they are in it).
_STREAMING = text("status = 'streaming'")


class Message(SQLModel, table=True):
    __table_args__ = (
        Index("ix_message_conversation_id_id", "conversation_id", "id"),
        # A message's versions (its parent's children), and a conversation's first messages (parent NULL).
        Index("ix_message_conversation_id_parent_id", "conversation_id", "parent_id"),
        Index("ix_message_streaming_updated_at", "updated_at", sqlite_where=_STREAMING, postgresql_where=_STREAMING),
    )

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: str = Field(foreign_key="conversation.id", ondelete="CASCADE", max_length=32)
    # The message this one follows (None for a conversation's first): messages form a tree, and a user's
    # edit or a new reply is a sibling, not a replacement. Always an older message, so a path sorts by id.
    # Not a foreign key: SQLite cannot add one to a table in place, and rows go with their conversation.
    parent_id: int | None = None
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
    # A Stop asked for while the reply is written: its job's next checkpoint round reads it, so a stop
    # reaches a job on another process even when the message that carries it (Redis Pub/Sub) is lost.
    stop_requested: bool = Field(default=False, sa_column_kwargs={"server_default": false()})


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
    # Set by an admin's reset or an admin-made account (the admin knew the password): the user must
    # choose their own at the next sign-in before doing anything else.
    must_change_password: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def owner_id(self) -> str:
        """What this user's conversations carry as owner_id (anonymous browsers keep their own ids)."""
        return f"user:{self.id}"

    @property
    def is_admin(self) -> bool:
        return self.role == UserRole.ADMIN


class ServerSetting(SQLModel, table=True):
    """A server-wide fact that every backend must agree on: whether an admin opened sign-up, and
    which account was the first (its row's primary key is what lets one and only one sign-up win)."""

    __tablename__ = "server_setting"

    name: str = Field(primary_key=True, max_length=64)
    value: str = Field(default="", max_length=255)
    updated_at: datetime = Field(default_factory=utcnow)


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
    # The token itself, so that its owner can copy the link again from /account (the snapshot beside it
    # is no less secret). None for links made before it was kept: those can only be revoked.
    token: str | None = Field(default=None, max_length=64)
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


class TokenLedger(SQLModel, table=True):
    """One user's tokens for one UTC day: spent, and held by calls still running (the daily quota's ledger).

    Kept for every signed-in user, limited or not, so that a quota set mid-day counts the day so far.
    """

    __tablename__ = "token_ledger"

    user_id: int = Field(
        sa_column=Column(Integer, ForeignKey("app_user.id", ondelete="CASCADE"), primary_key=True, nullable=False)
    )
    day: date = Field(primary_key=True)
    used_tokens: int = 0
    reserved_tokens: int = 0


class TokenReservation(SQLModel, table=True):
    """Tokens held for one provider call until it settles; a call whose process died is released on expiry."""

    __tablename__ = "token_reservation"
    # Ids are never reused (SQLite would reuse a deleted row's): a late settle must not release another's hold.
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="app_user.id", ondelete="CASCADE", index=True)
    day: date
    tokens: int
    expires_at: datetime = Field(index=True)


class ToolCallStatus(enum.StrEnum):
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting-approval"
    DONE = "done"
    ERROR = "error"
    DENIED = "denied"


class ToolCallRecord(SQLModel, table=True):
    """One call of a tool made while writing a reply: what was asked, what came back, how long it took.

    Rows go with their reply. Arguments and results are the user's data (exported and shared with the
    reply); headers never are, they stay in the environment.
    """

    __tablename__ = "tool_call"

    id: int | None = Field(default=None, primary_key=True)
    reply_id: int = Field(
        sa_column=Column(Integer, ForeignKey("message.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    # The model's id for the call (answered by a `tool` message), and the round of the loop it came in.
    call_id: str = Field(max_length=128)
    round: int = 0
    name: str = Field(max_length=128)
    # The MCP server that has the tool; "" for a built-in (search_files) and "groq" for one Groq ran itself.
    server: str = Field(default="", max_length=64)
    arguments: str = Field(default="", sa_column=Column(Text, nullable=False))
    result: str = Field(default="", sa_column=Column(Text, nullable=False))
    status: str = Field(default=ToolCallStatus.RUNNING, max_length=24)
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # Web results a search used, as a JSON list of [title, url]: shown as numbered sources.
    sources: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    started_at: datetime = Field(default_factory=utcnow)
    duration_ms: int | None = None


class McpServerRow(SQLModel, table=True):
    """An MCP server an admin added (those in CHATBOT_MCP_SERVERS live in the environment only).

    `headers` maps header names to environment variable NAMES, never to secrets.
    """

    __tablename__ = "mcp_server"

    name: str = Field(primary_key=True, max_length=32)
    url: str = Field(max_length=2048)
    headers: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    default_on: bool = Field(default=False)
    trusted: bool = Field(default=False)
    enabled: bool = Field(default=True)
    created_at: datetime = Field(default_factory=utcnow)


class DocumentChunk(SQLModel, table=True):
    """A piece of an attached document's text, indexed for the `search_files` tool (migration 0016)."""

    __tablename__ = "document_chunk"

    id: int | None = Field(default=None, primary_key=True)
    attachment_id: int = Field(
        sa_column=Column(Integer, ForeignKey("attachment.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    owner_id: str = Field(index=True, max_length=64)
    seq: int = 0
    text: str = Field(sa_column=Column(Text, nullable=False))
