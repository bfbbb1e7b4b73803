"""Checks on API input beyond its types: the UI's own validators, model choices, and /v1 contexts.

Everything here raises InvalidInput with a message for the client; routes turn that into 422.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from chatbot_app.api.schemas import ChatRequest, OpenAIMessage
from chatbot_app.providers.base import ChatMessage, ProviderError
from chatbot_app.services.chat_service import ChatService
from chatbot_app.services.chat_settings import (
    check_max_tokens,
    check_system_prompt,
    check_temperature,
    check_top_p,
)
from chatbot_app.services.tools.mcp_servers import NAME_PATTERN
from chatbot_app.services.validation import MAX_MESSAGE_CHARS, InvalidInput, clean_message, is_conversation_id

T = TypeVar("T")

#: The `model` column's length; longer ids cannot be stored on a conversation.
MAX_MODEL_CHARS = 128
#: Bounds on a /v1 context (the provider's own context window is the real limit).
MAX_CONTEXT_MESSAGES = 1_000
MAX_CONTEXT_CHARS = 1_000_000

UNKNOWN_MODEL_HINT = "GET /v1/models lists the models you can use."


#: The servers a /api/chat body may name (each a name as CHATBOT_MCP_SERVERS allows).
MAX_MCP_SERVERS = 64


class UnknownModel(InvalidInput):
    """The model names no provider or model that is configured."""


def checked(check: Callable[[Any], T], raw: Any, name: str) -> T:
    """`check(raw)`, where a number too large for a float is an invalid value rather than a crash."""
    try:
        return check(raw)
    except OverflowError:
        raise InvalidInput(f"{name} is far out of range.") from None


def conversation_id(raw: str | None) -> str | None:
    if raw is None:
        return None
    if not is_conversation_id(raw):
        raise InvalidInput("conversation_id must be a conversation id: 32 lowercase hexadecimal characters.")
    return raw


def sampling(temperature: float | None, top_p: float | None, max_tokens: int | None) -> dict[str, Any]:
    """The sampling settings a request gives, checked as the settings panel checks them."""
    given: dict[str, Any] = {}
    if temperature is not None:
        given["temperature"] = checked(check_temperature, temperature, "Temperature")
    if top_p is not None:
        given["top_p"] = checked(check_top_p, top_p, "Top P")
    if max_tokens is not None:
        given["max_tokens"] = checked(check_max_tokens, max_tokens, "Max tokens")
    return given


def chat_overrides(body: ChatRequest) -> dict[str, Any]:
    """The conversation settings a /api/chat body sets (model aside); empty if it sets none."""
    given = sampling(body.temperature, body.top_p, body.max_tokens)
    if body.system_prompt is not None:
        given["system_prompt"] = check_system_prompt(body.system_prompt) or None
    if body.web_search is not None:
        given["web_search"] = body.web_search
    if body.mcp_servers is not None:
        names = body.mcp_servers
        if len(names) > MAX_MCP_SERVERS or not all(NAME_PATTERN.fullmatch(name) for name in names):
            raise InvalidInput("mcp_servers: name servers from the list (see /admin or CHATBOT_MCP_SERVERS).")
        given["mcp_servers"] = ",".join(names)
    return given


async def resolve_model(service: ChatService, raw: str) -> tuple[str | None, str]:
    """(provider name, model id) for "provider:model" or a bare id of the default provider.

    The model must be in the provider's list when that list can be fetched. The provider is None
    when none is configured; the turn then fails the way the UI's does, with a clear message.
    """
    choice = raw.strip()
    if not choice or not choice.isprintable() or len(choice) > MAX_MODEL_CHARS + 33:
        raise UnknownModel(f"Unknown model. {UNKNOWN_MODEL_HINT}")
    registry = service.providers
    head, separator, tail = choice.partition(":")
    if separator and head in {p.name for p in registry.providers}:
        name, model = head, tail.strip()
    else:  # a bare id, which may itself contain ":" (e.g. Ollama's "llama3:8b")
        name, model = registry.default_name, choice
    if not model or len(model) > MAX_MODEL_CHARS:
        raise UnknownModel(f"Unknown model. {UNKNOWN_MODEL_HINT}")
    if name is None:
        return None, model
    try:
        known = await registry.get(name).list_models()
    except ProviderError:
        known = []  # the list is unavailable: let the provider itself judge the model
    if known and model not in known:
        raise UnknownModel(f"Unknown model {choice[:80]!r}. {UNKNOWN_MODEL_HINT}")
    return name, model


def openai_context(messages: list[OpenAIMessage], max_message_chars: int = MAX_MESSAGE_CHARS) -> list[ChatMessage]:
    """A /v1 `messages` array as provider context: text only, each message checked like a UI message
    (with the same CHATBOT_MAX_MESSAGE_CHARS limit)."""
    if not messages:
        raise InvalidInput("messages must contain at least one message.")
    if len(messages) > MAX_CONTEXT_MESSAGES:
        raise InvalidInput(f"messages is limited to {MAX_CONTEXT_MESSAGES:,} messages.")
    context: list[ChatMessage] = []
    total = 0
    for number, message in enumerate(messages, 1):
        if isinstance(message.content, list):
            text = "".join(part.text for part in message.content)
        else:
            text = message.content or ""
        if text.strip():
            try:
                text = clean_message(text, max_message_chars)
            except InvalidInput as exc:
                raise InvalidInput(f"messages[{number - 1}]: {exc}") from None
        total += len(text)
        role = "system" if message.role == "developer" else message.role
        context.append(ChatMessage(role, text))  # type: ignore[arg-type]
    if total > MAX_CONTEXT_CHARS:
        raise InvalidInput(f"The messages total {total:,} characters; the limit is {MAX_CONTEXT_CHARS:,}.")
    if not any(m.content for m in context):
        raise InvalidInput("Every message is empty: there is nothing to answer.")
    return context
