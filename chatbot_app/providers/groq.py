"""Groq, the primary provider, through the official async SDK."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence

import groq
import httpx

from chatbot_app.providers.base import (
    ChatMessage,
    ChatProvider,
    ErrorKind,
    GenerationOptions,
    ProviderError,
    Usage,
    classify_status,
)

# Ids that are not chat models (speech, moderation); they never go in a model list.
_NON_CHAT_MARKERS = ("whisper", "tts", "guard", "playai", "distil")
MODEL_LIST_TTL_S = 600.0


class GroqProvider(ChatProvider):
    name = "groq"

    def __init__(self, api_key: str, base_url: str | None = None, timeout_s: float = 60.0):
        # The SDK retries only before a stream starts; it honours retry-after on 429.
        self._client = groq.AsyncGroq(api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=2)
        self._models: list[str] = []
        self._models_at = 0.0

    async def stream(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> AsyncIterator[str | Usage]:
        try:
            response = await self._client.chat.completions.create(
                model=options.model,
                messages=[m.as_dict() for m in messages],  # type: ignore[misc]
                temperature=options.temperature,
                max_tokens=options.max_tokens,
                top_p=options.top_p,
                stream=True,
            )
            async with response:
                async for chunk in response:
                    if chunk.choices and (delta := chunk.choices[0].delta.content):
                        yield delta
                    if chunk.x_groq is not None and chunk.x_groq.usage is not None:
                        u = chunk.x_groq.usage
                        yield Usage(u.prompt_tokens, u.completion_tokens, u.completion_time)
        except groq.APIError as exc:
            raise _translate(exc) from exc
        except httpx.TimeoutException as exc:  # raised directly once the stream has started
            raise ProviderError(ErrorKind.TIMEOUT, str(exc) or "read timeout") from exc
        except httpx.HTTPError as exc:  # a cut mid-stream surfaces as httpx, not as groq.APIError
            raise ProviderError(ErrorKind.CONNECTION, f"{type(exc).__name__}: {exc}") from exc

    async def list_models(self) -> list[str]:
        """Groq's current chat models, cached for MODEL_LIST_TTL_S."""
        if self._models and time.monotonic() - self._models_at < MODEL_LIST_TTL_S:
            return self._models
        try:
            page = await self._client.models.list()
        except groq.APIError as exc:
            raise _translate(exc) from exc
        ids = sorted(
            m.id for m in page.data if getattr(m, "active", True) and not any(k in m.id for k in _NON_CHAT_MARKERS)
        )
        self._models, self._models_at = ids, time.monotonic()
        return ids


def _translate(exc: groq.APIError) -> ProviderError:
    if isinstance(exc, groq.APITimeoutError):
        return ProviderError(ErrorKind.TIMEOUT, str(exc))
    if isinstance(exc, groq.APIConnectionError):
        return ProviderError(ErrorKind.CONNECTION, str(exc))
    if isinstance(exc, groq.APIStatusError):
        retry_after = exc.response.headers.get("retry-after")
        return ProviderError(
            classify_status(exc.status_code, str(exc.message)),
            f"HTTP {exc.status_code}: {exc.message}",
            retry_after_s=float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else None,
        )
    return ProviderError(ErrorKind.SERVER, str(exc))
