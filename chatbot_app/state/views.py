"""What the page shows of a message: plain dataclasses built from stored rows or live frames."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import reflex as rx
from reflex.event import EventSpec

from chatbot_app.services.attachments import AttachmentView
from chatbot_app.services.chat_service import ConversationNotFound
from chatbot_app.services.error_messages import describe_error
from chatbot_app.services.markdown_fences import tidy_fences
from chatbot_app.services.reply_log import Finished, ToolUpdate
from chatbot_app.services.wiring import services
from chatbot_app.storage.models import Message, MessageStatus


@dataclasses.dataclass
class FileChip:
    """A file sent with a message: a thumbnail for an image, a link for anything else."""

    filename: str
    url: str
    is_image: bool = False


def iso_utc(moment: datetime | None = None) -> str:
    """An ISO 8601 time in UTC (a stored naive time is UTC), for the page's <time> elements."""
    moment = moment or datetime.now(UTC)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


@dataclasses.dataclass
class ToolCallView:
    """A tool call as a reply shows it: collapsed to its name and status, opened to its arguments and result."""

    call_id: str
    name: str
    status: str
    server: str = ""
    arguments: str = ""
    #: The result, or the error the call ended with.
    result: str = ""
    duration: str = ""
    #: The arguments are too long to show whole: such a call cannot be approved from the page.
    arguments_cut: bool = False


@dataclasses.dataclass
class SourceView:
    """A web page a search used, listed under the answer as a numbered link."""

    number: int
    title: str
    url: str


@dataclasses.dataclass
class MessageView:
    id: int
    role: str
    content: str
    status: str = MessageStatus.COMPLETE
    error: str = ""
    details: str = ""
    attachments: list[FileChip] = dataclasses.field(default_factory=list)
    # A reasoning model's thinking, shown collapsed above the answer; `thinking` labels it.
    reasoning: str = ""
    thinking: str = ""
    #: Its place among its versions and how many there are ("2/3"; an edit or a regeneration makes one);
    #: 0 and 0 when it has none.
    version_place: int = 0
    version_count: int = 0
    tool_calls: list[ToolCallView] = dataclasses.field(default_factory=list)
    sources: list[SourceView] = dataclasses.field(default_factory=list)
    #: When it was written (ISO 8601, UTC); the browser shows it in the user's time zone. Not compared: two
    #: views of one message are equal whenever they were made.
    created: str = dataclasses.field(default_factory=iso_utc, compare=False)


#: Shown of a call's arguments and result on the page (the whole stays in the database and exports).
SHOWN_TOOL_CHARS = 4_000


def tool_call_view(update: ToolUpdate) -> ToolCallView:
    """The page's view of a call: its arguments laid out one per line (so that nothing hides in a long line),
    both texts cut to SHOWN_TOOL_CHARS and saying so."""
    arguments = _laid_out(update.arguments)
    return ToolCallView(
        call_id=update.call_id,
        name=update.name,
        status=update.status,
        server=update.server,
        arguments=_shown(arguments),
        result=_shown(update.error or update.result),
        duration=f"{update.duration_ms / 1000:.1f} s" if update.duration_ms is not None else "",
        arguments_cut=len(arguments) > SHOWN_TOOL_CHARS,
    )


def _laid_out(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments), indent=1, ensure_ascii=False)
    except ValueError:
        return arguments


def _shown(text: str) -> str:
    if len(text) <= SHOWN_TOOL_CHARS:
        return text
    return f"{text[:SHOWN_TOOL_CHARS]}\n… ({len(text) - SHOWN_TOOL_CHARS:,} more characters not shown)"


def source_views(updates: Iterable[ToolUpdate]) -> list[SourceView]:
    """The web pages the calls used, each once, numbered in order; only http(s) links are kept."""
    sources: list[SourceView] = []
    seen: set[str] = set()
    for update in updates:
        for title, url in update.sources:
            if url not in seen and url.startswith(("https://", "http://")):
                seen.add(url)
                sources.append(SourceView(len(sources) + 1, title or url, url))
    return sources


def show_tools(message: MessageView, updates: Iterable[ToolUpdate]) -> None:
    """Give a reply its tool calls and their sources."""
    updates = list(updates)
    message.tool_calls = [tool_call_view(update) for update in updates]
    message.sources = source_views(updates)


async def add_tool_calls(messages: Sequence[MessageView], owner_id: str, conversation_id: str) -> None:
    """Give loaded replies their tool calls (one query for all of them)."""
    ids = [m.id for m in messages if m.role == "assistant" and m.id]
    if not ids:
        return
    found = await services().chat.tool_calls(owner_id, conversation_id, ids)
    for message in messages:
        if updates := found.get(message.id):
            show_tools(message, updates)


def file_chips(views: list[AttachmentView], backend_url: str) -> list[FileChip]:
    """Chips for a message's stored files; `backend_url` prefixes the path (the page may be served elsewhere)."""
    base = backend_url.rstrip("/")
    return [FileChip(v.filename, base + v.url, v.is_image) for v in views]


async def add_versions(messages: Sequence[MessageView], owner_id: str, conversation_id: str) -> None:
    """Give loaded messages that have other versions their place among them (one query for all)."""
    ids = [m.id for m in messages if m.id]
    try:
        positions = await services().chat.version_positions(owner_id, conversation_id, ids) if ids else {}
    except ConversationNotFound:  # deleted meanwhile: nothing to switch between
        positions = {}
    for message in messages:
        message.version_place, message.version_count = positions.get(message.id, (0, 0))


async def add_file_chips(messages: Sequence[MessageView], owner_id: str, conversation_id: str) -> None:
    """Give loaded user messages their files' chips (one query for all of them; names and links, no bytes)."""
    ids = [m.id for m in messages if m.role == "user" and m.id]
    if not ids:
        return
    views = await services().attachments.views(owner_id, conversation_id, ids)
    backend_url = rx.config.get_config().api_url
    for message in messages:
        if found := views.get(message.id):
            message.attachments = file_chips(found, backend_url)


async def add_details(messages: Sequence[MessageView], owner_id: str, conversation_id: str) -> None:
    """What loaded messages show beside their text: files, versions and tool calls (a query for each)."""
    await add_file_chips(messages, owner_id, conversation_id)
    await add_versions(messages, owner_id, conversation_id)
    with contextlib.suppress(ConversationNotFound):  # deleted meanwhile
        await add_tool_calls(messages, owner_id, conversation_id)


def backend_download(path: str, filename: str) -> EventSpec:
    """Have the browser download a file the backend serves at `path` (the page may be served elsewhere).

    rx.download takes a site-relative string only; as a Var, the backend's absolute URL goes through as is.
    """
    url = rx.config.get_config().api_url.rstrip("/") + path
    return rx.download(url=rx.Var.create(url), filename=filename)


def thinking_label(reasoning: str, thinking_ms: int | None) -> str:
    """How long the model thought, when known (a reply followed live); else how much it wrote."""
    if not reasoning:
        return ""
    if thinking_ms is not None:
        return f"Thought for {thinking_ms / 1000:.1f} s"
    return f"Thoughts · {len(reasoning.split()):,} words"


def reply_details(
    provider: str | None,
    model: str | None,
    completion_tokens: int | None,
    first_token_ms: int | None,
    duration_ms: int | None,
) -> str:
    """A one-line summary of who answered and what it cost.

    For example "groq · llama-x · 120 tokens · 310 tok/s · first token 95 ms".
    """
    parts = [part for part in (provider, model) if part]
    if completion_tokens:
        parts.append(f"{completion_tokens} tokens")
        if duration_ms and first_token_ms is not None and duration_ms > first_token_ms:
            parts.append(f"{completion_tokens / ((duration_ms - first_token_ms) / 1000):.0f} tok/s")
    if first_token_ms is not None:
        parts.append(f"first token {first_token_ms} ms")
    return " · ".join(parts)


def view_of_message(message: Message) -> MessageView:
    """A stored message as the page shows it (a reply's misplaced code fences moved onto their own lines)."""
    return MessageView(
        id=message.id or 0,
        role=message.role,
        content=tidy_fences(message.content) if message.role == "assistant" else message.content,
        status=message.status,
        error=describe_error(message.error_kind, message.provider) if message.status == MessageStatus.ERROR else "",
        details=reply_details(
            message.provider, message.model, message.completion_tokens, message.first_token_ms, message.duration_ms
        )
        if message.role == "assistant"
        else "",
        reasoning=message.reasoning or "",
        thinking=thinking_label(message.reasoning or "", message.thinking_ms),
        created=iso_utc(message.created_at),
    )


def view_of_reply(
    reply_id: int, text: str, finished: Finished, reasoning: str = "", thinking_ms: int | None = None
) -> MessageView:
    """A reply as its job ended it: the text (and reasoning) its followers assembled, and the end's details."""
    return MessageView(
        id=reply_id,
        role="assistant",
        content=tidy_fences(text),
        status=finished.status,
        error=(finished.error or describe_error(finished.error_kind, finished.provider))
        if finished.status == MessageStatus.ERROR
        else "",
        details=reply_details(
            finished.provider, finished.model, finished.completion_tokens, finished.first_token_ms, finished.duration_ms
        ),
        reasoning=reasoning,
        thinking=thinking_label(reasoning, thinking_ms if thinking_ms is not None else finished.thinking_ms),
    )
