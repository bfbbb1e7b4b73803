"""Request and response bodies, as OpenAPI documents them.

Types are checked strictly here ("0.5" is not a number); ranges and content are checked by the
same functions the UI uses (services.validation, services.chat_settings), so the limits live in
one place. The schema only repeats them as documentation.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from chatbot_app.config import get_settings
from chatbot_app.services.chat_settings import (
    MAX_SYSTEM_PROMPT_CHARS,
    MAX_TOKENS_RANGE,
    TEMPERATURE_RANGE,
    TOP_P_RANGE,
)


def _integral(value: Any) -> Any:
    """JSON Schema counts 2.0 as an integer, so the API does too; 2.5, "2" and true stay invalid."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


#: A whole number as JSON Schema defines it (2 or 2.0), checked strictly otherwise.
WholeNumber = Annotated[int, BeforeValidator(_integral)]


def _utc(moment: datetime) -> datetime:
    """Stored times are UTC; SQLite gives them back without a zone."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


#: A stored time, given out with its zone.
UtcDatetime = Annotated[datetime, AfterValidator(_utc)]


def _message_limit(schema: dict[str, Any]) -> None:
    """The configured CHATBOT_MAX_MESSAGE_CHARS, read when the schema is generated (not a fixed number)."""
    schema.update(minLength=1, maxLength=get_settings().max_message_chars)


def _context_message_limit(schema: dict[str, Any]) -> None:
    limit = get_settings().max_message_chars
    schema["description"] = f"The message's text (parts are joined); at most {limit:,} characters."


def _range(low: float, high: float) -> dict[str, Any]:
    return {"minimum": low, "maximum": high}


_TOP_P = {"exclusiveMinimum": TOP_P_RANGE[0], "maximum": TOP_P_RANGE[1]}


#: Bounds on a /v1 request's own `tools`.
MAX_TOOLS = 128
MAX_TOOLS_BYTES = 64 * 1024
TOOL_CHOICES = ("none", "auto", "required")

MODEL_DESCRIPTION = (
    'A model as "provider:model" (the ids GET /v1/models lists, e.g. "groq:openai/gpt-oss-120b"), '
    "or a bare model id of the default provider."
)


# --- /api ------------------------------------------------------------------------------------


class ChatRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    message: str = Field(
        description="The user's message (at most CHATBOT_MAX_MESSAGE_CHARS characters).",
        json_schema_extra=_message_limit,
    )
    conversation_id: str | None = Field(
        default=None,
        description="Continue this conversation; leave it out to start one (its id is in X-Conversation-Id).",
        json_schema_extra={"pattern": "^[0-9a-f]{32}$"},
    )
    model: str | None = Field(default=None, description=MODEL_DESCRIPTION)
    temperature: float | None = Field(default=None, json_schema_extra=_range(*TEMPERATURE_RANGE))
    max_tokens: WholeNumber | None = Field(default=None, json_schema_extra=_range(*MAX_TOKENS_RANGE))
    top_p: float | None = Field(default=None, json_schema_extra=_TOP_P)
    system_prompt: str | None = Field(default=None, json_schema_extra={"maxLength": MAX_SYSTEM_PROMPT_CHARS})
    parent_id: int | None = Field(
        default=None,
        description="Answer on a branch: the new message follows this message of the conversation (by default, "
        "the last of the current path), and its path becomes the current one.",
        json_schema_extra={"minimum": 1},
    )
    web_search: bool | None = Field(
        default=None,
        description="Turn the conversation's Web search on or off (kept): Groq's built-in search for the models "
        "that have it. Left out: as the conversation has it.",
    )
    mcp_servers: list[str] | None = Field(
        default=None,
        description="The MCP servers whose tools the conversation uses (kept): names from the server's list. Left "
        "out: as the conversation has it (a new one: the servers on by default).",
        json_schema_extra={"maxItems": 64},
    )


class ToolAnswer(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    approve: bool = Field(description="true: run the call once; false: deny it (the model is told).")


class LeafRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    message_id: int = Field(
        description="A message of the conversation: the newest path through it becomes the current one.",
        json_schema_extra={"minimum": 1},
    )


class ForkRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    message_id: int = Field(
        description="A message of the conversation's: the new one holds a copy of the path up to it (a question "
        "is answered there at once).",
        json_schema_extra={"minimum": 1},
    )


class RowOut(BaseModel):
    """A response body read from a stored row's attributes (`model_validate(row)`), field by field as declared."""

    model_config = ConfigDict(from_attributes=True)


class ConversationSettingsOut(RowOut):
    provider: str | None
    model: str | None
    temperature: float | None
    max_tokens: int | None
    top_p: float | None
    system_prompt: str | None


class ConversationSummaryOut(RowOut):
    id: str
    title: str
    pinned: bool
    summary: str | None
    created_at: UtcDatetime
    updated_at: UtcDatetime


class ConversationPageOut(BaseModel):
    page: int
    has_more: bool
    conversations: list[ConversationSummaryOut]


class MessageOut(RowOut):
    id: int
    role: str
    content: str
    status: str
    error_kind: str | None
    error: str | None = Field(description="The failure in words, for replies with status 'error'.")
    provider: str | None
    model: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    first_token_ms: int | None
    duration_ms: int | None
    created_at: UtcDatetime
    parent_id: int | None = Field(description="The message this one follows; null for the first.")
    sibling_ids: list[int] = Field(description="Its versions (itself among them), oldest first.")
    version: int = Field(description="Its place among them, from 1 (the UI's 2 in '2/3').")


class ConversationOut(ConversationSummaryOut):
    settings: ConversationSettingsOut
    messages: list[MessageOut] = Field(description="The current path, from the first message to its last.")


class HealthOut(BaseModel):
    status: Literal["ok"]
    instance: str = Field(description="A random id this backend process chose when it started")


class ReadyOut(BaseModel):
    database: str = Field(description='"ok" or "error: ..."')
    provider: str = Field(description='"ok" or "error: ..." (the default provider\'s model list)')


# --- /v1 (OpenAI-compatible) -------------------------------------------------------------------


class OpenAITextPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["text"] = Field(description='Only "text" parts are supported.')
    text: str


class OpenAIFunctionCall(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")

    name: str
    arguments: str = Field(description="The arguments as JSON text, as the model wrote them.")


class OpenAIToolCall(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")

    id: str
    type: Literal["function"] = "function"
    function: OpenAIFunctionCall


class OpenAIMessage(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[OpenAITextPart] | None = Field(default=None, json_schema_extra=_context_message_limit)
    tool_calls: list[OpenAIToolCall] | None = Field(
        default=None, description="An assistant message: the functions it called (the `tool` messages answer them)."
    )
    tool_call_id: str | None = Field(default=None, description="A `tool` message: the id of the call it answers.")


class OpenAIStreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class OpenAIChatRequest(BaseModel):
    """OpenAI's chat-completions body; parameters this API does not use are accepted and ignored."""

    model_config = ConfigDict(strict=True, extra="allow")

    model: str = Field(description=MODEL_DESCRIPTION)
    messages: list[OpenAIMessage] = Field(
        description="The whole context, oldest first. Nothing is stored.", json_schema_extra={"minItems": 1}
    )
    stream: bool | None = False
    stream_options: OpenAIStreamOptions | None = None
    temperature: float | None = Field(default=None, json_schema_extra=_range(*TEMPERATURE_RANGE))
    top_p: float | None = Field(default=None, json_schema_extra=_TOP_P)
    max_tokens: WholeNumber | None = Field(default=None, json_schema_extra=_range(*MAX_TOKENS_RANGE))
    max_completion_tokens: WholeNumber | None = Field(default=None, json_schema_extra=_range(*MAX_TOKENS_RANGE))
    n: WholeNumber | None = Field(default=None, description="Only 1 is supported.", json_schema_extra=_range(1, 1))
    # Checked by the route rather than here, so that a bad value is a 400 as OpenAI answers it (not a 422).
    tools: Any = Field(
        default=None,
        description=f"Your functions, in OpenAI's shape; passed to the model as given (at most {MAX_TOOLS} tools, "
        f"{MAX_TOOLS_BYTES // 1024} kB of JSON). Calls come back as `tool_calls`; you run them and send the results "
        "as `tool` messages.",
        json_schema_extra={
            "type": "array",
            "maxItems": MAX_TOOLS,
            "items": {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}}},
        },
    )
    tool_choice: Any = Field(
        default=None,
        description='"none", "auto", "required", or an object naming a function; only with `tools`.',
        json_schema_extra={"anyOf": [{"type": "string", "enum": list(TOOL_CHOICES)}, {"type": "object"}]},
    )
    parallel_tool_calls: Any = Field(
        default=None,
        description="Whether the model may call several functions in one turn; only with `tools`.",
        json_schema_extra={"type": "boolean"},
    )


class OpenAIModel(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str


class OpenAIModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIModel]
