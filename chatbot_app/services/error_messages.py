"""Provider failures in words a person understands. Details go to the logs, not the page."""

from __future__ import annotations

from collections.abc import Sequence

from chatbot_app.providers.base import ErrorKind

# "{provider}" is the failing provider's name ("Groq", "The OpenAI-compatible provider", ...).
_MESSAGES: dict[str, str] = {
    ErrorKind.NOT_CONFIGURED: (
        "No model provider is configured yet. Set GROQ_API_KEY (or OPENAI_API_KEY) in your environment "
        "or .env file, then restart the app."
    ),
    ErrorKind.AUTH: "{provider} rejected the API key. Check {key_setting} and restart the app.",
    ErrorKind.RATE_LIMIT: "{provider} is rate-limiting requests right now. Wait a moment and try again.",
    ErrorKind.TIMEOUT: "{provider} took too long to answer. Try again.",
    ErrorKind.CONNECTION: (
        "Could not reach {provider_object}, or the connection dropped. Check the network and try again."
    ),
    ErrorKind.MODEL_NOT_FOUND: "That model is not available (it may have been retired). Choose another model.",
    ErrorKind.CONTEXT_TOO_LONG: (
        "This conversation is too long for the model. Start a new chat or shorten your message."
    ),
    ErrorKind.CONTENT_REFUSED: "{provider} declined to answer this request.",
    ErrorKind.BAD_REQUEST: "{provider} could not process this request.",
    ErrorKind.SERVER: "{provider} had an internal error. Try again in a moment.",
    ErrorKind.BUSY: "Too many replies are being generated right now. Try again in a moment, or choose another model.",
    ErrorKind.QUOTA: (
        "You have used today's tokens. The quota starts again at midnight UTC, or an admin can raise it."
    ),
}
_FALLBACK = "Something went wrong while generating the reply. Try again."

#: provider name -> (how a sentence names it, the setting that holds its key)
_PROVIDERS: dict[str, tuple[str, str]] = {
    "groq": ("Groq", "GROQ_API_KEY"),
    "openai": ("The OpenAI-compatible provider", "OPENAI_API_KEY"),
    "local": ("The local model", "CHATBOT_LOCAL_MODEL"),
}
_UNKNOWN_PROVIDER = ("The provider", "the provider's API key setting")

#: How many of the available models a "model not found" message names.
MAX_MODELS_NAMED = 8


def describe_error(kind: str | None, provider: str | None = None, available_models: Sequence[str] = ()) -> str:
    """A short, human sentence for an ErrorKind value (stored on messages as plain text).

    `provider` (a provider's name, as stored on messages) makes the sentence name the one that failed; for a
    retired or unknown model, `available_models` (the provider's list now) are named.
    """
    template = _MESSAGES.get(kind or "", _FALLBACK)
    name, key_setting = _PROVIDERS.get(provider or "", _UNKNOWN_PROVIDER)
    provider_object = name[0].lower() + name[1:] if name.startswith("The ") else name
    message = template.format(provider=name, key_setting=key_setting, provider_object=provider_object)
    if kind == ErrorKind.MODEL_NOT_FOUND and available_models:
        named = ", ".join(available_models[:MAX_MODELS_NAMED])
        extra = len(available_models) - MAX_MODELS_NAMED
        message = f"{message} Available now: {named}{f' and {extra} more' if extra > 0 else ''}."
    return message


_RETRY_REASONS: dict[str, str] = {
    ErrorKind.RATE_LIMIT: "The provider is rate-limiting requests",
    ErrorKind.SERVER: "The provider had an error",
    ErrorKind.TIMEOUT: "The provider is slow to answer",
    ErrorKind.CONNECTION: "Could not reach the provider",
}


def describe_retry(kind: str, delay_s: float, next_attempt: int, attempts: int) -> str:
    """The "retrying…" hint shown while a failed request waits for its next try."""
    reason = _RETRY_REASONS.get(kind, "The request failed")
    return f"{reason}; retrying in {delay_s:.0f} s (try {next_attempt} of {attempts})…"
