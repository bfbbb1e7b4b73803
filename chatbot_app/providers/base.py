"""The one interface every provider implements: stream events (text, reasoning, usage).

Providers know nothing of Reflex or the database. Batch completion is derived from
the stream, so a provider only has to implement `stream` and `list_models`.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function the model asks to call: an event at the end of its turn, and part of an assistant message.

    `arguments` is the JSON text as the model wrote it (it may not parse: the tool's runner says so).
    """

    id: str
    name: str
    arguments: str

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str
    #: Images as `data:` URLs (a provider cannot reach this server); only for models that accept images.
    images: tuple[str, ...] = ()
    #: An assistant message's calls of tools; the `tool` messages that follow answer them.
    tool_calls: tuple[ToolCall, ...] = ()
    #: A `tool` message: the id of the call it answers.
    tool_call_id: str | None = None
    #: An earlier reply's own calls and their answers, which came before it (never sent as part of it): the
    #: context sends them ahead of it when the budget has room (services.context).
    earlier_tools: tuple[ChatMessage, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The OpenAI wire shape: plain text, or content parts when the message carries images."""
        if self.tool_calls:
            return {
                "role": self.role,
                "content": self.content or None,
                "tool_calls": [c.as_dict() for c in self.tool_calls],
            }
        if self.tool_call_id is not None:
            return {"role": "tool", "tool_call_id": self.tool_call_id, "content": self.content}
        if not self.images:
            return {"role": self.role, "content": self.content}
        parts: list[dict[str, Any]] = [{"type": "text", "text": self.content}] if self.content else []
        parts += [{"type": "image_url", "image_url": {"url": url}} for url in self.images]
        return {"role": self.role, "content": parts}


@dataclass(frozen=True, slots=True)
class GenerationOptions:
    model: str
    temperature: float = 0.7
    max_tokens: int = 1024
    top_p: float = 1.0
    #: Tools offered, in the OpenAI wire shape: functions, or a provider's built-ins ({"type": "browser_search"}).
    tools: tuple[dict[str, Any], ...] = ()
    #: Passed through when set (the /v1 API's clients choose): "auto", "none", "required" or a named function.
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    #: Groq's compound systems: the built-in tools they may run (`compound_custom.tools.enabled_tools`);
    #: None leaves Groq's default, every tool (the web included).
    compound_tools: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the answer's text."""

    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """A piece of a reasoning model's thinking, shown apart from the answer and never sent back."""

    text: str


@dataclass(frozen=True, slots=True)
class ExecutedTool:
    """A tool the provider ran itself (Groq's compound models): what it ran, and what came back.

    `sources` are the web results it used, as (title, url) pairs.
    """

    name: str
    arguments: str
    output: str
    sources: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts and timings, as reported by the provider (None where it gives none)."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    completion_time_s: float | None = None


#: What a provider's stream yields; consumers `match` on the class.
ProviderEvent = TextDelta | ReasoningDelta | Usage | ToolCall | ExecutedTool


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    usage: Usage | None
    #: The functions the model asks to call, in order (its turn ends there).
    tool_calls: tuple[ToolCall, ...] = ()


class ErrorKind(enum.StrEnum):
    NOT_CONFIGURED = "not_configured"
    AUTH = "auth"
    RATE_LIMIT = "rate_limit"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    MODEL_NOT_FOUND = "model_not_found"
    CONTEXT_TOO_LONG = "context_too_long"
    CONTENT_REFUSED = "content_refused"
    BAD_REQUEST = "bad_request"
    SERVER = "server"
    BUSY = "busy"
    #: Not the provider's: the user's daily token quota is spent, so nothing was sent.
    QUOTA = "quota"


class ProviderError(Exception):
    """A provider failure, classified so the UI can say it in human words."""

    def __init__(self, kind: ErrorKind, detail: str, *, retry_after_s: float | None = None):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.retry_after_s = retry_after_s


def classify_status(status: int, message: str) -> ErrorKind:
    """Map an HTTP status and error text from an OpenAI-style API to an ErrorKind."""
    text = message.lower()
    if status in (401, 403):
        return ErrorKind.AUTH
    if status == 429:
        return ErrorKind.RATE_LIMIT
    if status == 404 or "model_not_found" in text or "decommissioned" in text:
        return ErrorKind.MODEL_NOT_FOUND
    if "context_length" in text or "context length" in text or status == 413:
        return ErrorKind.CONTEXT_TOO_LONG
    if "content_filter" in text or "safety" in text or "refus" in text:
        return ErrorKind.CONTENT_REFUSED
    if status in (408, 504):
        return ErrorKind.TIMEOUT
    if status >= 500:
        return ErrorKind.SERVER
    return ErrorKind.BAD_REQUEST


class ChatProvider(abc.ABC):
    """A source of chat completions."""

    #: Short stable identifier, stored on each message and used in model choices ("groq:<model>").
    name: str
    #: What the UI calls it.
    label: str
    #: The model's context window in tokens, where the provider knows it.
    context_tokens: int | None = None

    @abc.abstractmethod
    def stream(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> AsyncIterator[ProviderEvent]:
        """Yield text (and reasoning) deltas as they arrive, then at most one Usage.

        Raises ProviderError. Closing the iterator early closes the upstream request,
        so no more tokens are generated (or paid for).
        """

    @abc.abstractmethod
    async def list_models(self) -> list[str]:
        """The model ids this provider can answer with now."""

    #: Whether its model list can say which models call tools (OpenAI-compatible servers such as OpenRouter's):
    #: then a reply reads the (cached) list before it decides. Groq's list does not say.
    lists_tool_support: ClassVar[bool] = False

    @property
    def catalog_tool_models(self) -> frozenset[str]:
        """The models whose entry in the provider's model list says they call tools, as of the last list read.

        None known by default: most catalogs (Groq's among them) do not say.
        """
        return frozenset()

    async def aclose(self) -> None:  # noqa: B027  # most providers hold nothing open
        """Release what the provider holds open (connections); it is not used after this."""

    async def complete(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> Completion:
        """The whole reply at once, derived from the stream."""
        parts: list[str] = []
        usage: Usage | None = None
        calls: list[ToolCall] = []
        async for event in self.stream(messages, options):
            match event:
                case TextDelta(text):
                    parts.append(text)
                case Usage():
                    usage = event
                case ToolCall():
                    calls.append(event)
        return Completion("".join(parts), usage, tuple(calls))
