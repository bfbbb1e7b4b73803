"""Export conversations (our JSON, Markdown) and import them (our JSON, ChatGPT's conversations.json).

Exports are streamed (stream_json, stream_markdown): conversation by conversation, messages in batches,
attachments read and base64-encoded in chunks, so memory stays bounded whatever the size.
Imported files are untrusted: parse_import checks every field it keeps and raises
ImportRejected, with a message a user can act on, for anything it cannot take as is.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import LargeBinary
from sqlmodel import Session, col, delete, func, select, update

from chatbot_app.storage import conversations as conversation_store
from chatbot_app.storage import documents, tool_calls
from chatbot_app.storage.attachments import FileToStore as CheckedFile
from chatbot_app.storage.models import (
    SETTINGS_FIELDS,
    Attachment,
    Conversation,
    ConversationSettings,
    Message,
    MessageStatus,
    ToolCallRecord,
    ToolCallStatus,
)

R = TypeVar("R")
#: Runs a function of a session in one transaction, off the event loop (storage.database.Database.run).
Read = Callable[[Callable[[Session], R]], Awaitable[R]]

FORMAT_NAME = "chatbot_app"
FORMAT_VERSION = 1
MAX_IMPORT_BYTES = 20 * 1024 * 1024
#: Messages read per step of a streamed export.
EXPORT_MESSAGE_BATCH = 100
#: Attachment bytes read and encoded per step of a streamed export: 192 KiB (a multiple of 3, so that the
#: base64 pieces join into one string), 256 KiB once encoded. Larger pieces left more memory behind in
#: the allocator's per-thread arenas for a fast reader (bench/event_loop_bench.py); smaller ones were slower.
EXPORT_CHUNK_BYTES = 3 * 2**16
ROLES = ("user", "assistant")
#: What an export keeps of a conversation besides its messages (its id is never reused on import).
CONVERSATION_FIELDS = ("title", "summary", "pinned", "created_at", "updated_at", *SETTINGS_FIELDS)
MESSAGE_FIELDS = (
    "role",
    "content",
    "status",
    "model",
    "provider",
    "created_at",
    "prompt_tokens",
    "completion_tokens",
    "first_token_ms",
    "duration_ms",
    "error_kind",
    "reasoning",
)
#: What an export keeps of a reply's tool calls (`sources` is JSON text: [[title, url], ...]).
TOOL_CALL_FIELDS = (
    "call_id",
    "round",
    "name",
    "server",
    "arguments",
    "result",
    "status",
    "error",
    "sources",
    "duration_ms",
)
#: A reply carries at most this many tool calls in an import (8 rounds of a few calls each, with room), and a
#: whole import at most MAX_IMPORTED_TOOL_CALLS.
MAX_TOOL_CALLS = 200
MAX_IMPORTED_TOOL_CALLS = 5_000
# Column limits (VARCHAR lengths, 32-bit integers): PostgreSQL enforces them, so check first.
TITLE_CHARS = 200
# Text columns have no length limit, but nothing the app writes comes near these.
MESSAGE_CHARS = 1_000_000
SUMMARY_CHARS = 20_000
SYSTEM_PROMPT_CHARS = 100_000  # then checked against the settings panel's own limit (services.library)
SHORT_TEXT_CHARS = {"provider": 32, "model": 128, "error_kind": 32, "status": 16}
MAX_INT = 2**31 - 1
# ChatGPT roles that are not part of the visible dialogue.
CHATGPT_SKIPPED_ROLES = ("system", "tool")


class ImportRejected(ValueError):
    """The file cannot be imported; str(error) says why, in words for the user."""


#: Checks an attachment's name and bytes as an upload is checked; raises ValueError with a message.
FileCheck = Callable[[str, bytes], CheckedFile]


@dataclass
class ImportedMessage:
    role: str
    content: str
    created_at: datetime
    status: str = MessageStatus.COMPLETE
    model: str | None = None
    provider: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    first_token_ms: int | None = None
    duration_ms: int | None = None
    error_kind: str | None = None
    reasoning: str | None = None
    attachments: list[CheckedFile] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    #: The place in its conversation's list of the message it follows (None: it begins the conversation).
    parent: int | None = None


@dataclass(frozen=True)
class ImportedConversation(ConversationSettings):
    title: str
    created_at: datetime
    updated_at: datetime
    messages: list[ImportedMessage] = field(default_factory=list)
    summary: str | None = None
    pinned: bool = False
    #: The place of the last message of the path shown; None: the messages are one path (an older export).
    current: int | None = None


def _picked(source: object, names: Sequence[str]) -> dict[str, Any]:
    """The named attributes of `source`, to build another shape from the same field list."""
    return {name: getattr(source, name) for name in names}


# --- export -----------------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _conversation_dict(
    conversation: Conversation, messages: list[dict[str, Any]], current: int | None
) -> dict[str, Any]:
    """`current`: the place in `messages` of the path's last message (messages form a tree through their
    "parent", the place of the message each follows)."""
    return {
        "id": conversation.id,
        "title": conversation.title,
        "summary": conversation.summary,
        "pinned": conversation.pinned,
        "created_at": _iso(conversation.created_at),
        "updated_at": _iso(conversation.updated_at),
        "settings": _picked(conversation, SETTINGS_FIELDS),
        "current": current,
        "messages": messages,
    }


def exported_ids(session: Session, owner_id: str, conversation_id: str | None = None) -> list[str]:
    """The owner's conversations an export holds, newest activity first: all, or the one named
    (none when it is not the owner's)."""
    query = select(Conversation.id).where(Conversation.owner_id == owner_id)
    if conversation_id is not None:
        query = query.where(Conversation.id == conversation_id)
    order = (col(Conversation.updated_at).desc(), col(Conversation.id).desc())
    return list(session.exec(query.order_by(*order)).all())


async def stream_json(
    read: Read,
    conversation_ids: Sequence[str],
    *,
    message_batch: int = EXPORT_MESSAGE_BATCH,
    chunk_bytes: int = EXPORT_CHUNK_BYTES,
) -> AsyncIterator[bytes]:
    """The conversations in our JSON format, in pieces: memory stays bounded whatever the export's size.

    Each step is one short read (`read` runs a function of a session in its own transaction, off the
    event loop): a conversation's fields, a batch of its messages, or one chunk of an attachment,
    encoded to base64 as it goes. A conversation deleted meanwhile is left out.
    """
    if chunk_bytes % 3:
        raise ValueError("chunk_bytes must be a multiple of 3, so that base64 pieces join")
    yield b'{"format": "%s", "version": %d, "conversations": [' % (FORMAT_NAME.encode(), FORMAT_VERSION)
    written = 0
    for conversation_id in conversation_ids:
        head = await read(lambda s, cid=conversation_id: _conversation_head(s, cid))
        if head is None:
            continue
        yield (b",\n" if written else b"\n") + head
        written += 1
        after, more = 0, True
        places: dict[int, int] = {}  # each message's place in this conversation's list, for its children
        while more:
            batch = await read(lambda s, cid=conversation_id, a=after: _message_batch(s, cid, a, message_batch))
            more = len(batch) == message_batch
            for message_id, parent_id, fields, files in batch:
                record = fields[:-1]  # its closing brace comes after the parent and the files
                if parent_id in places:
                    record += b', "parent": %d' % places[parent_id]
                yield (b", " if places else b"") + record + (b', "attachments": [' if files else b"}")
                places[message_id] = len(places)
                for number, (attachment_id, file_record, size) in enumerate(files):
                    yield (b", " if number else b"") + file_record
                    for offset in range(0, size, chunk_bytes):
                        piece = await read(
                            lambda s, aid=attachment_id, o=offset: _attachment_piece(s, aid, o, chunk_bytes)
                        )
                        yield base64.b64encode(piece)
                    yield b'"}'
                if files:
                    yield b"]}"
                after = message_id
        yield b"]}"
    yield b"\n]}\n"


def _conversation_head(session: Session, conversation_id: str) -> bytes | None:
    """The conversation's fields, up to the opening of its message list."""
    conversation = session.get(Conversation, conversation_id)
    if conversation is None:
        return None
    current = None
    if conversation.current_leaf_id is not None:  # its place in the export, which lists messages by id
        query = select(func.count()).where(
            Message.conversation_id == conversation_id, col(Message.id) <= conversation.current_leaf_id
        )
        current = session.exec(query).one() - 1
    text = json.dumps(_conversation_dict(conversation, [], current), ensure_ascii=False)
    return text.removesuffix("]}").encode()  # "messages" is the last key: leave its list open


def _message_batch(
    session: Session, conversation_id: str, after_id: int, limit: int
) -> list[tuple[int, int | None, bytes, list[tuple[int, bytes, int]]]]:
    """Up to `limit` messages after `after_id`, oldest first: (id, its parent's id, its JSON, its attachments),
    where each attachment is (id, its JSON up to the opening quote of its base64 data, its size)."""
    columns = [getattr(Message, name) for name in MESSAGE_FIELDS]
    rows = session.exec(  # type: ignore[call-overload]
        select(Message.id, Message.parent_id, *columns)
        .where(Message.conversation_id == conversation_id, col(Message.id) > after_id)
        .order_by(col(Message.id))
        .limit(limit)
    ).all()
    if not rows:
        return []
    files: dict[int, list[tuple[int, bytes, int]]] = {}
    attachments = session.exec(  # type: ignore[call-overload]
        select(Attachment.id, Attachment.message_id, Attachment.filename, Attachment.media_type, Attachment.size)
        .where(col(Attachment.message_id).in_([row[0] for row in rows]))
        .order_by(col(Attachment.id))
    )
    for attachment_id, message_id, filename, media_type, size in attachments:
        record = json.dumps({"filename": filename, "media_type": media_type, "data": ""}, ensure_ascii=False)
        files.setdefault(message_id, []).append((attachment_id, record.removesuffix('"}').encode(), size))
    calls = tool_calls.calls_of(session, conversation_id, [row[0] for row in rows])
    batch = []
    for message_id, parent_id, *values in rows:
        message = dict(zip(MESSAGE_FIELDS, values, strict=True))
        message["created_at"] = _iso(message["created_at"])
        if message_id in calls:
            message["tool_calls"] = [_picked(call, TOOL_CALL_FIELDS) for call in calls[message_id]]
        record = json.dumps(message, ensure_ascii=False).encode()
        batch.append((message_id, parent_id, record, files.get(message_id, [])))
    return batch


def _attachment_piece(session: Session, attachment_id: int, offset: int, size: int) -> bytes:
    """`size` bytes of an attachment's data from `offset` (SQL substr: the database sends only those)."""
    piece = session.exec(
        select(func.substr(Attachment.data, offset + 1, size, type_=LargeBinary)).where(Attachment.id == attachment_id)
    ).first()
    return bytes(piece) if piece is not None else b""


async def stream_markdown(
    read: Read, conversation_id: str, *, message_batch: int = EXPORT_MESSAGE_BATCH
) -> AsyncIterator[bytes]:
    """The conversation as a readable Markdown transcript, a batch of messages at a time."""
    head = await read(lambda s: _markdown_head(s, conversation_id))
    if head is None:
        return
    yield head.encode()
    path = await read(lambda s: conversation_store.path_ids(s, conversation_id))  # the path shown, walked once
    for start in range(0, len(path), message_batch):
        ids = path[start : start + message_batch]
        yield (await read(lambda s, ids=ids: _markdown_batch(s, ids))).encode()


def _markdown_head(session: Session, conversation_id: str) -> str | None:
    conversation = session.get(Conversation, conversation_id)
    if conversation is None:
        return None
    lines = [f"# {conversation.title}", ""]
    if conversation.summary:
        lines += [f"> {line}" if line else ">" for line in conversation.summary.splitlines()]
        lines.append("")
    return "\n".join(lines) + "\n"


def _markdown_batch(session: Session, message_ids: list[int]) -> str:
    """These messages (in id order) as Markdown; one deleted meanwhile is left out."""
    messages = session.exec(select(Message).where(col(Message.id).in_(message_ids)).order_by(col(Message.id))).all()
    lines: list[str] = []
    for message in messages:
        when = message.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        heading = f"**{message.role.capitalize()}** · {when}"
        if message.role == "assistant" and message.model:
            heading += f" · {message.model}"
        if message.status not in (MessageStatus.COMPLETE, MessageStatus.STREAMING):
            heading += f" · {message.status}"
        lines += [heading, "", message.content or "*(empty)*", ""]
    return "\n".join(lines) + "\n" if lines else ""


# --- import -----------------------------------------------------------------------------------


def _reject_constant(name: str) -> None:
    raise ImportRejected(f"The file is not valid JSON: it contains {name}, which JSON does not allow.")


def check_import_size(size: int, max_bytes: int = MAX_IMPORT_BYTES) -> None:
    """Raise ImportRejected for a file of more than `max_bytes`."""
    if size > max_bytes:
        size_mb, limit_mb = size / 2**20, max_bytes / 2**20
        raise ImportRejected(f"The file is {size_mb:.1f} MB; imports are limited to {limit_mb:g} MB.")


def _load_json(data: bytes, max_bytes: int = MAX_IMPORT_BYTES) -> Any:
    check_import_size(len(data), max_bytes)
    try:
        decoded = data.decode("utf-8-sig")  # tolerate a byte-order mark, as some editors write one
    except UnicodeDecodeError:
        raise ImportRejected("The file is not UTF-8 text, so it cannot be a JSON export.") from None
    try:
        return json.loads(decoded, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ImportRejected(f"The file is not valid JSON (line {exc.lineno}, column {exc.colno}).") from None
    except RecursionError:
        raise ImportRejected("The file is nested too deeply to be an export.") from None


def _clean_text(value: str) -> str:
    # PostgreSQL text cannot hold NUL, and lone surrogates (legal in JSON escapes) cannot be
    # encoded as UTF-8: drop the one, replace the other, rather than fail the whole import.
    return value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


class _Fields:
    """Typed reads from one JSON object; errors name where in the file the problem is."""

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, dict):
            raise ImportRejected(f"{where} should be an object.")
        self.data: dict[str, Any] = data
        self.where = where

    def _fail(self, name: str, expected: str) -> ImportRejected:
        return ImportRejected(f"{self.where}: '{name}' should be {expected}.")

    def text(self, name: str, *, required: bool = False, max_chars: int | None = None) -> str | None:
        value = self.data.get(name)
        if value is None and not required:
            return None
        if not isinstance(value, str):
            raise self._fail(name, "text")
        value = _clean_text(value)
        if max_chars is not None and len(value) > max_chars:
            raise self._fail(name, f"at most {max_chars} characters")
        return value

    def integer(self, name: str) -> int | None:
        value = self.data.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INT:
            raise self._fail(name, f"a whole number from 0 to {MAX_INT}")
        return value

    def number(self, name: str) -> float | None:
        value = self.data.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self._fail(name, "a number")
        return float(value)

    def flag(self, name: str) -> bool:
        value = self.data.get(name, False)
        if not isinstance(value, bool):
            raise self._fail(name, "true or false")
        return value

    def moment(self, name: str, default: datetime | None = None) -> datetime:
        value = self.data.get(name)
        if value is None and default is not None:
            return default
        if not isinstance(value, str):
            raise self._fail(name, "an ISO 8601 date and time")
        try:
            parsed = datetime.fromisoformat(value)
            # A time without an offset is taken as UTC, the zone every export is written in.
            # astimezone overflows for times such as 0001-01-01T00:30:00+01:00 (before year 1 in UTC).
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
        except (ValueError, OverflowError):
            raise self._fail(name, "an ISO 8601 date and time between the years 1 and 9999") from None

    def epoch(self, name: str) -> datetime | None:
        value = self.data.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._fail(name, "a time in seconds since 1970")
        try:
            return datetime.fromtimestamp(value, UTC)
        except (ValueError, OverflowError, OSError):
            raise self._fail(name, "a time in seconds since 1970") from None


def _title(value: str | None) -> str:
    title = " ".join((value or "").split()) or "Imported chat"
    return title if len(title) <= TITLE_CHARS else title[: TITLE_CHARS - 1] + "…"


def _parse_ours(data: dict[str, Any], check_file: FileCheck | None, max_files: int) -> list[ImportedConversation]:
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ImportRejected("The export's 'version' should be a whole number.")
    if version > FORMAT_VERSION:
        raise ImportRejected(
            f"This export was made by a newer version of the app (format {version}); "
            f"this one reads format {FORMAT_VERSION}."
        )
    items = data.get("conversations")
    if not isinstance(items, list):
        raise ImportRejected("The export's 'conversations' should be a list.")
    return [
        _parse_our_conversation(item, f"Conversation {n}", check_file, max_files) for n, item in enumerate(items, 1)
    ]


def _parse_our_conversation(
    item: object, where: str, check_file: FileCheck | None = None, max_files: int = 0
) -> ImportedConversation:
    fields = _Fields(item, where)
    settings = _Fields(fields.data.get("settings") or {}, f"{where}, settings")
    raw_messages = fields.data.get("messages", [])
    if not isinstance(raw_messages, list):
        raise ImportRejected(f"{where}: 'messages' should be a list.")
    created_at = fields.moment("created_at")
    messages = [
        _parse_our_message(raw, f"{where}, message {n}", check_file, max_files) for n, raw in enumerate(raw_messages, 1)
    ]
    current = fields.integer("current")  # None (an export from before versions): the messages are one path
    if current is not None and current >= len(messages):
        raise ImportRejected(f"{where}: 'current' should be the place of one of its messages.")
    for place, message in enumerate(messages):
        if current is not None and message.parent is not None and message.parent >= place:
            raise ImportRejected(f"{where}, message {place + 1}: 'parent' should be the place of an earlier message.")
    return ImportedConversation(
        current=current,
        title=_title(fields.text("title")),
        created_at=created_at,
        updated_at=fields.moment("updated_at", default=created_at),
        messages=messages,
        summary=fields.text("summary", max_chars=SUMMARY_CHARS),
        pinned=fields.flag("pinned"),
        provider=settings.text("provider", max_chars=SHORT_TEXT_CHARS["provider"]),
        model=settings.text("model", max_chars=SHORT_TEXT_CHARS["model"]),
        temperature=settings.number("temperature"),
        max_tokens=settings.integer("max_tokens"),
        top_p=settings.number("top_p"),
        system_prompt=settings.text("system_prompt", max_chars=SYSTEM_PROMPT_CHARS),
    )


def _parse_our_message(
    raw: object, where: str, check_file: FileCheck | None = None, max_files: int = 0
) -> ImportedMessage:
    fields = _Fields(raw, where)
    role = fields.text("role", required=True)
    if role not in ROLES:
        raise ImportRejected(f"{where}: unknown role {role!r} (expected user or assistant).")
    status = fields.text("status") or MessageStatus.COMPLETE
    if status not in {s.value for s in MessageStatus}:
        raise ImportRejected(f"{where}: unknown status {status!r}.")
    if status == MessageStatus.STREAMING:
        # Nothing will ever finish this reply in its new home.
        status = MessageStatus.INTERRUPTED
    return ImportedMessage(
        role=role,
        content=fields.text("content", required=True, max_chars=MESSAGE_CHARS) or "",
        created_at=fields.moment("created_at"),
        status=status,
        model=fields.text("model", max_chars=SHORT_TEXT_CHARS["model"]),
        provider=fields.text("provider", max_chars=SHORT_TEXT_CHARS["provider"]),
        prompt_tokens=fields.integer("prompt_tokens"),
        completion_tokens=fields.integer("completion_tokens"),
        first_token_ms=fields.integer("first_token_ms"),
        duration_ms=fields.integer("duration_ms"),
        error_kind=fields.text("error_kind", max_chars=SHORT_TEXT_CHARS["error_kind"]),
        reasoning=fields.text("reasoning"),
        attachments=_parse_attachments(fields, where, check_file, max_files) if role == "user" else [],
        tool_calls=_parse_tool_calls(fields.data.get("tool_calls"), where) if role == "assistant" else [],
        parent=fields.integer("parent"),
    )


def _parse_tool_calls(raw: object, where: str) -> list[dict[str, Any]]:
    """A reply's tool calls as exported: each field checked for its type and size, unknown ones left out."""
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_TOOL_CALLS:
        raise ImportRejected(f"{where}: 'tool_calls' should be a list of at most {MAX_TOOL_CALLS}.")
    calls = []
    for number, item in enumerate(raw, 1):
        fields = _Fields(item, f"{where}, tool call {number}")
        status = fields.text("status") or ToolCallStatus.DONE
        if status not in {s.value for s in ToolCallStatus}:
            raise ImportRejected(f"{where}, tool call {number}: unknown status {status!r}.")
        calls.append(
            {
                "call_id": fields.text("call_id", max_chars=128) or f"imported-{number}",
                # Which call of the model asked for it: the calls of a round go back to the model together.
                "round": fields.integer("round") or 0,
                "name": fields.text("name", required=True, max_chars=128),
                "server": fields.text("server", max_chars=64) or "",
                "arguments": fields.text("arguments", max_chars=MESSAGE_CHARS) or "",
                "result": fields.text("result", max_chars=MESSAGE_CHARS) or "",
                # A call that was still running when exported never ends in its new home.
                "status": ToolCallStatus.ERROR
                if status in (ToolCallStatus.RUNNING, ToolCallStatus.AWAITING_APPROVAL)
                else status,
                "error": fields.text("error", max_chars=MESSAGE_CHARS),
                "sources": _sources_text(fields.text("sources", max_chars=MESSAGE_CHARS), where),
                "duration_ms": fields.integer("duration_ms"),
            }
        )
    return calls


def _sources_text(raw: str | None, where: str) -> str | None:
    """Sources as stored: JSON [[title, url], ...], or None."""
    if raw is None:
        return None
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    if not isinstance(parsed, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair) for pair in parsed
    ):
        raise ImportRejected(f"{where}: a tool call's 'sources' should be a list of [title, url] pairs.")
    return raw


def _parse_attachments(fields: _Fields, where: str, check_file: FileCheck | None, max_files: int) -> list[CheckedFile]:
    """A message's files, each checked by its content as an upload is; any that fails rejects the import."""
    raw = fields.data.get("attachments") or []
    if not isinstance(raw, list):
        raise ImportRejected(f"{where}: 'attachments' should be a list.")
    if raw and check_file is None:
        raise ImportRejected(f"{where}: this import cannot take attachments.")
    if len(raw) > max_files:
        raise ImportRejected(f"{where}: a message can carry at most {max_files} files; this one has {len(raw)}.")
    checked: list[CheckedFile] = []
    for n, item in enumerate(raw, 1):
        file_fields = _Fields(item, f"{where}, attachment {n}")
        name = file_fields.text("filename", required=True) or "file"
        try:
            data = base64.b64decode(file_fields.text("data", required=True) or "", validate=True)
        except (binascii.Error, ValueError):
            raise ImportRejected(f"{where}, attachment {n}: 'data' should be base64.") from None
        try:
            checked.append(check_file(name, data))  # type: ignore[misc]
        except ValueError as exc:
            raise ImportRejected(f"{where}, attachment {n}: {exc}") from None
    return checked


def _chatgpt_thread(mapping: dict[str, Any], current: object, where: str) -> list[dict[str, Any]]:
    """The nodes from the root to `current` (the branch the user last saw), in order."""
    if any(not isinstance(node, dict) for node in mapping.values()):
        raise ImportRejected(f"{where}: each entry of 'mapping' should be an object.")
    if current is None:
        # Old exports lack current_node: take the root, then the newest child at each fork.
        roots = [key for key, node in mapping.items() if not node.get("parent")]
        if len(roots) != 1:
            raise ImportRejected(f"{where}: the message tree has no single starting point.")
        current = roots[0]
        seen_down = {current}
        while isinstance(children := mapping[current].get("children"), list) and children:
            child = children[-1]
            if not isinstance(child, str) or child not in mapping or child in seen_down:
                raise ImportRejected(f"{where}: the message tree is broken (a child is missing or loops).")
            seen_down.add(child)
            current = child
    thread: list[dict[str, Any]] = []
    seen: set[str] = set()
    node_id: object = current
    while node_id is not None:
        if not isinstance(node_id, str) or node_id not in mapping or node_id in seen:
            raise ImportRejected(f"{where}: the message tree is broken (a parent is missing or loops).")
        seen.add(node_id)
        node = mapping[node_id]
        thread.append(node)
        node_id = node.get("parent")
    thread.reverse()
    return thread


def _parse_chatgpt_conversation(item: object, where: str) -> ImportedConversation:
    fields = _Fields(item, where)
    mapping = fields.data.get("mapping")
    if not isinstance(mapping, dict):
        raise ImportRejected(f"{where}: 'mapping' should be an object of messages.")
    created_at = fields.epoch("create_time") or datetime.now(UTC)
    thread = _chatgpt_thread(mapping, fields.data.get("current_node"), where)  # the root to the branch last seen
    messages: list[ImportedMessage] = []
    current: int | None = None
    last_time = created_at
    # Every branch, depth first from the root (iteratively: a thread may be thousands deep), so that a message
    # comes after the one it follows. Each node carries the place of its nearest kept ancestor: the children of
    # a hidden, system or tool message follow that one.
    stack: list[tuple[dict[str, Any], int | None]] = [(thread[0], None)]
    seen: set[int] = set()
    while stack:
        node, place = stack.pop()
        if id(node) in seen:
            raise ImportRejected(f"{where}: the message tree is broken (a message is reached twice).")
        seen.add(id(node))
        if node.get("message") is not None:  # not the root or another placeholder
            number = len(messages) + 1
            if (
                message := _parse_chatgpt_message(node["message"], f"{where}, message {number}", last_time)
            ) is not None:
                message.parent, place, last_time = place, len(messages), message.created_at
                messages.append(message)
        if node is thread[-1]:
            current = place
        children = node.get("children") or []
        if not isinstance(children, list) or any(not isinstance(c, str) or c not in mapping for c in children):
            raise ImportRejected(f"{where}: the message tree is broken (a child is missing).")
        stack.extend((mapping[child], place) for child in reversed(children))
    return ImportedConversation(
        title=_title(fields.text("title")),
        created_at=created_at,
        updated_at=fields.epoch("update_time") or last_time,
        messages=messages,
        current=current if current is not None or not messages else 0,
    )


def _parse_chatgpt_message(raw: object, where: str, default_time: datetime) -> ImportedMessage | None:
    """One visible message, or None for hidden, system, tool or empty ones."""
    fields = _Fields(raw, where)
    author = _Fields(fields.data.get("author"), f"{where}, author")
    role = author.text("role", required=True)
    if role in CHATGPT_SKIPPED_ROLES:
        return None
    if role not in ROLES:
        raise ImportRejected(f"{where}: unknown role {role!r} (expected user, assistant, system or tool).")
    metadata = fields.data.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    recipient = fields.data.get("recipient")
    if metadata.get("is_visually_hidden_from_conversation") or recipient not in (None, "all"):
        return None  # context the UI never showed, or the assistant calling a tool
    content = _Fields(fields.data.get("content"), f"{where}, content")
    parts = content.data.get("parts", [])
    if not isinstance(parts, list):
        raise ImportRejected(f"{where}: 'content.parts' should be a list.")
    # Images, files and other non-text parts are left out; they have no text to keep.
    text = _clean_text("\n\n".join(part for part in parts if isinstance(part, str) and part.strip()))
    if not text.strip():
        return None
    if len(text) > MESSAGE_CHARS:
        raise ImportRejected(f"{where}: the text should be at most {MESSAGE_CHARS} characters.")
    model = metadata.get("model_slug")
    return ImportedMessage(
        role=role,
        content=text,
        created_at=fields.epoch("create_time") or default_time,
        model=model if isinstance(model, str) and len(model) <= SHORT_TEXT_CHARS["model"] else None,
    )


def parse_import(
    data: bytes, max_bytes: int = MAX_IMPORT_BYTES, check_file: FileCheck | None = None, max_files: int = 0
) -> list[ImportedConversation]:
    """Conversations from our JSON export or ChatGPT's conversations.json; raises ImportRejected.

    Attachments in our export are taken only with `check_file` (at most `max_files` a message).
    CPU-bound (0.1 s a MB): async callers run it in a worker thread.
    """
    parsed = _load_json(data, max_bytes)
    if isinstance(parsed, dict) and parsed.get("format") == FORMAT_NAME:
        conversations = _parse_ours(parsed, check_file, max_files)
    elif isinstance(parsed, list) and all(isinstance(item, dict) and "mapping" in item for item in parsed):
        conversations = [_parse_chatgpt_conversation(item, f"Conversation {n}") for n, item in enumerate(parsed, 1)]
    elif isinstance(parsed, dict) and "mapping" in parsed:
        conversations = [_parse_chatgpt_conversation(parsed, "The conversation")]
    else:
        raise ImportRejected(
            "This file is neither an export from this app nor ChatGPT's conversations.json "
            "(found in the zip from ChatGPT's Settings > Data controls > Export)."
        )
    if not conversations:
        raise ImportRejected("The file contains no conversations.")
    if sum(len(m.tool_calls) for c in conversations for m in c.messages) > MAX_IMPORTED_TOOL_CALLS:
        raise ImportRejected(f"The file holds more than {MAX_IMPORTED_TOOL_CALLS:,} tool calls; split it.")
    return conversations


def import_conversations(session: Session, owner_id: str, conversations: list[ImportedConversation]) -> list[str]:
    """Store the conversations as new ones owned by `owner_id`; returns their new ids, in order.

    Imported ids are never reused: they could be someone else's. Run inside one transaction
    (session_scope) so that a failure part-way leaves nothing behind.
    """
    ids: list[str] = []
    for imported in conversations:
        conversation = Conversation(owner_id=owner_id, **_picked(imported, CONVERSATION_FIELDS))
        session.add(conversation)
        rows = [
            Message(conversation_id=conversation.id, updated_at=m.created_at, **_picked(m, MESSAGE_FIELDS))
            for m in imported.messages
        ]
        session.add_all(rows)
        # Batched INSERTs per conversation; message ids follow list order, which keeps the thread order.
        session.flush()
        if imported.current is None:  # one path: each message follows the one before
            parents: list[int | None] = [place - 1 if place else None for place in range(len(rows))]
            leaf = len(rows) - 1
        else:
            parents, leaf = [m.parent for m in imported.messages], imported.current
        for row, parent in zip(rows, parents, strict=True):
            row.parent_id = rows[parent].id if parent is not None else None
        conversation.current_leaf_id = rows[leaf].id if rows else None
        session.flush()
        files = [
            Attachment(
                message_id=row.id,
                filename=f.filename,
                media_type=f.media_type,
                size=len(f.data),
                data=f.data,
                text=f.text,
            )
            for row, m in zip(rows, imported.messages, strict=True)
            for f in m.attachments
        ]
        session.add_all(files)
        session.flush()
        for file in files:  # searchable by search_files, as an upload is
            if file.text and file.id is not None:
                documents.index_document(session, file.id, owner_id, file.text)
        session.add_all(
            ToolCallRecord(reply_id=row.id, started_at=m.created_at, **call)  # not counted as today's
            for row, m in zip(rows, imported.messages, strict=True)
            for call in m.tool_calls
        )
        ids.append(conversation.id)
    return ids


# --- staged imports ---------------------------------------------------------------------------
# A large import is stored in several short transactions (so no one waits long for SQLite's write
# lock) under a staging owner that no one can be; one UPDATE then hands it to its real owner, so
# readers see all of it or none. A crash in between leaves only staged rows, which are discarded.

STAGING_PREFIX = "importing:"
#: Staged rows older than this belong to an import that died.
STAGING_MAX_AGE_S = 3600


def staging_owner() -> str:
    """A fresh staging owner id: the prefix, the start time (fixed width, so it sorts) and randomness."""
    return f"{STAGING_PREFIX}{int(time.time()):010d}:{secrets.token_hex(8)}"


def publish_import(session: Session, staging: str, owner_id: str) -> int:
    """Hand every conversation staged under `staging` to `owner_id` in one statement; returns how many."""
    result = session.exec(  # type: ignore[call-overload]
        update(Conversation).where(col(Conversation.owner_id) == staging).values(owner_id=owner_id)
    )
    documents.move_documents(session, staging, owner_id)  # their files become searchable with them
    return int(result.rowcount)


def discard_import(session: Session, staging: str) -> None:
    """Delete what an unfinished import staged (messages go with their conversations)."""
    _delete_staged(session, col(Conversation.owner_id) == staging)


def discard_abandoned_imports(session: Session, max_age_s: int = STAGING_MAX_AGE_S) -> None:
    """Delete staged rows of imports that started more than `max_age_s` ago (their process died)."""
    cutoff = f"{STAGING_PREFIX}{int(time.time()) - max_age_s:010d}"
    _delete_staged(
        session, col(Conversation.owner_id).startswith(STAGING_PREFIX) & (col(Conversation.owner_id) < cutoff)
    )


def _delete_staged(session: Session, condition: Any) -> None:
    staged = select(Conversation.id).where(condition)
    # Explicit, rather than relying on ON DELETE CASCADE, which SQLite applies only with foreign_keys on.
    session.exec(delete(Message).where(col(Message.conversation_id).in_(staged)))  # type: ignore[call-overload]
    session.exec(delete(Conversation).where(condition))  # type: ignore[call-overload]
