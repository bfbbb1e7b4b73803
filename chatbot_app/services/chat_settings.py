"""A conversation's generation settings: what may be chosen, and what a choice resolves to."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from chatbot_app.config import Settings
from chatbot_app.services.validation import _UNSTORABLE, InvalidInput, one_line_name
from chatbot_app.storage.models import ConversationSettings

TEMPERATURE_RANGE = (0.0, 2.0)
TOP_P_RANGE = (0.0, 1.0)
MAX_TOKENS_RANGE = (1, 32_768)
MAX_SYSTEM_PROMPT_CHARS = 8_000
MAX_PRESET_NAME_CHARS = 80

#: System prompts that ship with the app; users can save their own beside them.
BUILTIN_PRESETS: dict[str, str] = {
    "Helpful assistant": "You are a helpful, concise assistant. Answer in Markdown.",
    "Code reviewer": (
        "You are a senior software engineer reviewing code. Point out bugs, risks and unclear names first, "
        "then suggest concrete improvements with short code examples."
    ),
    "Explain simply": (
        "Explain things to a curious beginner: short sentences, everyday words, one idea at a time, "
        "and a small example for each idea."
    ),
    "Translator": (
        "Translate the user's text. If it is English, translate it into French; otherwise into English. "
        "Reply with the translation only."
    ),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatSettings(ConversationSettings):
    """What one conversation asks for; None means "the app's default"."""

    #: The voice replies are read aloud in (one of the speech service's voices).
    voice: str | None = None
    #: Groq's built-in web search (and code) for the models that have them.
    web_search: bool = False
    #: The MCP servers whose tools are on, comma-separated; None: those an admin marked on by default.
    mcp_servers: str | None = None

    def with_choice(self, choice: str) -> ChatSettings:
        """These settings with a model picked as "provider:model"."""
        provider, model = parse_model_choice(choice)
        return replace(self, provider=provider, model=model)


@dataclass(frozen=True, slots=True)
class ResolvedSettings:
    temperature: float
    max_tokens: int
    top_p: float
    system_prompt: str


def resolve(chat: ChatSettings, app: Settings) -> ResolvedSettings:
    """Fill what a conversation leaves open with the app's defaults."""
    return ResolvedSettings(
        temperature=app.temperature if chat.temperature is None else chat.temperature,
        max_tokens=app.max_reply_tokens if chat.max_tokens is None else chat.max_tokens,
        top_p=app.top_p if chat.top_p is None else chat.top_p,
        system_prompt=chat.system_prompt or app.system_prompt,
    )


def model_choice(provider: str, model: str) -> str:
    return f"{provider}:{model}"


def parse_model_choice(choice: object) -> tuple[str, str]:
    if not isinstance(choice, str) or ":" not in choice:
        raise InvalidInput("Choose a model from the list.")
    provider, _, model = choice.partition(":")
    if not provider or not model:
        raise InvalidInput("Choose a model from the list.")
    return provider, model


def _number(raw: object, name: str) -> float:
    if isinstance(raw, bool):
        raise InvalidInput(f"{name} must be a number.")
    if isinstance(raw, list | tuple) and len(raw) == 1:  # sliders send [value]
        raw = raw[0]
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer like 10**400
        raise InvalidInput(f"{name} must be a number.") from None
    if not math.isfinite(value):
        raise InvalidInput(f"{name} must be a number.")
    return value


def check_temperature(raw: object) -> float:
    value = _number(raw, "Temperature")
    low, high = TEMPERATURE_RANGE
    if not low <= value <= high:
        raise InvalidInput(f"Temperature must be between {low:g} and {high:g}; {value:g} is out of range.")
    return round(value, 2)


def check_top_p(raw: object) -> float:
    value = _number(raw, "Top P")
    low, high = TOP_P_RANGE
    if not low < value <= high:
        raise InvalidInput(f"Top P must be above {low:g} and at most {high:g}; {value:g} is out of range.")
    return round(value, 2)


def check_max_tokens(raw: object) -> int:
    value = _number(raw, "Max tokens")
    low, high = MAX_TOKENS_RANGE
    if value != int(value) or not low <= value <= high:
        raise InvalidInput(f"Max tokens must be a whole number from {low} to {high:,}; {raw!s:.20} is not.")
    return int(value)


def check_system_prompt(raw: object) -> str:
    if not isinstance(raw, str):
        raise InvalidInput("The system prompt must be text.")
    if len(raw) > MAX_SYSTEM_PROMPT_CHARS:
        raise InvalidInput(f"The system prompt is limited to {MAX_SYSTEM_PROMPT_CHARS:,} characters.")
    if _UNSTORABLE.search(raw):  # PostgreSQL refuses NUL; neither database stores lone surrogates
        raise InvalidInput("The system prompt contains characters that cannot be saved.")
    return raw.strip()


def check_voice(raw: object, voices: Sequence[str]) -> str:
    """One of `voices` (the speech service's), as chosen in the settings panel."""
    if not isinstance(raw, str) or raw not in voices:
        raise InvalidInput("Choose a voice from the list.")
    return raw


def check_preset_name(raw: object) -> str:
    name = one_line_name(
        raw,
        MAX_PRESET_NAME_CHARS,
        missing="Give the preset a name.",
        too_long=f"Preset names are limited to {MAX_PRESET_NAME_CHARS} characters.",
        unstorable="That preset name contains characters that cannot be saved.",
    )
    if name in BUILTIN_PRESETS:
        raise InvalidInput(f"“{name}” is a built-in preset; choose another name.")
    return name
