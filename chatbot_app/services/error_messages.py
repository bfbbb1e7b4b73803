"""Provider failures in words a person understands. Details go to the logs, not the page."""

from __future__ import annotations

from collections.abc import Sequence

from chatbot_app.providers.base import ErrorKind

_MESSAGES: dict[str, str] = {
    ErrorKind.NOT_CONFIGURED: (
        "No model provider is configured yet. Set GROQ_API_KEY in your environment or .env file, then restart the app."
    ),
    ErrorKind.AUTH: "The provider rejected the API key. Check GROQ_API_KEY and restart the app.",
    ErrorKind.RATE_LIMIT: "The provider is rate-limiting requests right now. Wait a moment and try again.",
    ErrorKind.TIMEOUT: "The provider took too long to answer. Try again.",
    ErrorKind.CONNECTION: "Could not reach the provider, or the connection dropped. Check the network and try again.",
    ErrorKind.MODEL_NOT_FOUND: "That model is not available (it may have been retired). Choose another model.",
    ErrorKind.CONTEXT_TOO_LONG: (
        "This conversation is too long for the model. Start a new chat or shorten your message."
    ),
    ErrorKind.CONTENT_REFUSED: "The provider declined to answer this request.",
    ErrorKind.BAD_REQUEST: "The provider could not process this request.",
    ErrorKind.SERVER: "The provider had an internal error. Try again in a moment.",
    ErrorKind.BUSY: "Too many replies are being generated right now. Try again in a moment, or choose another model.",
}
_FALLBACK = "Something went wrong while generating the reply. Try again."


#: How many of the available models a "model not found" message names.
MAX_MODELS_NAMED = 8


def describe_error(kind: str | None, available_models: Sequence[str] = ()) -> str:
    """A short, human sentence for an ErrorKind value (stored on messages as plain text).

    For a retired or unknown model, `available_models` (the provider's list now) are named.
    """
    message = _MESSAGES.get(kind or "", _FALLBACK)
    if kind == ErrorKind.MODEL_NOT_FOUND and available_models:
        named = ", ".join(available_models[:MAX_MODELS_NAMED])
        more = (
            f" and {len(available_models) - MAX_MODELS_NAMED} more" if len(available_models) > MAX_MODELS_NAMED else ""
        )
        message = f"{message} Available now: {named}{more}."
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
