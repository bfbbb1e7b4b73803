"""What the Groq and OpenAI SDKs share: the same chat API, model list and error shapes.

Subclasses name their SDK's client and exception module, and say where usage arrives.
"""

from __future__ import annotations

import abc
import time
from collections.abc import AsyncIterator, Sequence
from types import ModuleType
from typing import Any

import httpx

from chatbot_app.providers.base import (
    ChatMessage,
    ChatProvider,
    Completion,
    ErrorKind,
    GenerationOptions,
    ProviderError,
    ProviderEvent,
    TextDelta,
    Usage,
    classify_status,
)

MODEL_LIST_TTL_S = 600.0
# Ids that are not chat models (speech, moderation, embeddings); they never go in a model list.
_NON_CHAT_MARKERS = ("whisper", "tts", "guard", "playai", "distil", "embed", "moderation", "dall-e", "audio")


class OpenAIStyleProvider(ChatProvider):
    """A provider whose SDK follows the OpenAI chat-completions API."""

    #: The SDK module, for its exception classes (APIError, APIStatusError, ...).
    sdk: ModuleType

    def __init__(self, client: Any, fallback_models: Sequence[str] = ()) -> None:
        self._client = client
        self._fallback_models = list(fallback_models)
        self._models: list[str] = []
        self._models_at = 0.0

    @abc.abstractmethod
    def _usage(self, chunk: Any) -> Usage | None:
        """The usage a stream chunk carries, if any (it comes with the last one)."""

    def _stream_arguments(self) -> dict[str, Any]:
        return {}

    def _request(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> dict[str, Any]:
        return {
            "model": options.model,
            "messages": [m.as_dict() for m in messages],
            "temperature": options.temperature,
            "max_tokens": options.max_tokens,
            "top_p": options.top_p,
        }

    async def stream(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> AsyncIterator[ProviderEvent]:
        try:
            response = await self._client.chat.completions.create(
                **self._request(messages, options), stream=True, **self._stream_arguments()
            )
            async with response:
                async for chunk in response:
                    if chunk.choices and (delta := chunk.choices[0].delta.content):
                        yield TextDelta(delta)
                    if (usage := self._usage(chunk)) is not None:
                        yield usage
        except (self.sdk.APIError, httpx.HTTPError) as exc:
            raise self.translate(exc) from exc

    async def complete(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> Completion:
        """One non-streaming request: the whole reply in one response."""
        try:
            response = await self._client.chat.completions.create(**self._request(messages, options), stream=False)
        except (self.sdk.APIError, httpx.HTTPError) as exc:
            raise self.translate(exc) from exc
        usage = response.usage
        return Completion(
            response.choices[0].message.content or "" if response.choices else "",
            Usage(usage.prompt_tokens, usage.completion_tokens, getattr(usage, "completion_time", None))
            if usage
            else None,
        )

    async def list_models(self) -> list[str]:
        """The provider's current chat models, cached for MODEL_LIST_TTL_S.

        If the list cannot be fetched, the configured fallback list is used when there is one.
        """
        if self._models and time.monotonic() - self._models_at < MODEL_LIST_TTL_S:
            return self._models
        try:
            page = await self._client.models.list()
        except (self.sdk.APIError, httpx.HTTPError) as exc:
            if self._fallback_models:
                return self._fallback_models
            raise self.translate(exc) from exc
        ids = sorted(
            m.id
            for m in page.data
            if getattr(m, "active", True) is not False and not any(k in m.id.lower() for k in _NON_CHAT_MARKERS)
        )
        self._models, self._models_at = ids, time.monotonic()
        return ids

    def translate(self, exc: Exception) -> ProviderError:
        """The SDK's (or httpx's) exception as a classified ProviderError."""
        if isinstance(exc, self.sdk.APITimeoutError | httpx.TimeoutException):
            return ProviderError(ErrorKind.TIMEOUT, str(exc) or "timed out")
        if isinstance(exc, self.sdk.APIConnectionError):
            return ProviderError(ErrorKind.CONNECTION, str(exc))
        if isinstance(exc, self.sdk.APIStatusError):
            return ProviderError(
                classify_status(exc.status_code, str(exc.message)),
                f"HTTP {exc.status_code}: {exc.message}",
                retry_after_s=_seconds(exc.response.headers.get("retry-after")),
            )
        if isinstance(exc, httpx.HTTPError):
            # A connection cut mid-stream surfaces as httpx (e.g. RemoteProtocolError), not as an SDK error.
            return ProviderError(ErrorKind.CONNECTION, f"{type(exc).__name__}: {exc}")
        return ProviderError(ErrorKind.SERVER, str(exc))


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
