"""The audio endpoint speech and transcription share: Groq when a Groq key is set, else an OpenAI-compatible
server when a model for the task is configured; and the SDK's failures in the providers' words.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import httpx

from chatbot_app.config import Settings
from chatbot_app.providers.base import ErrorKind, ProviderError, classify_status


@dataclass(frozen=True, slots=True)
class AudioClient:
    """An async groq or openai client (both have `audio.speech` and `audio.transcriptions`) and its SDK module."""

    client: Any
    sdk: ModuleType
    #: "groq" or "openai".
    provider: str


def audio_configured(settings: Settings, openai_model: str | None) -> bool:
    """Whether `audio_client` gives a client (without building one)."""
    return bool(settings.groq_api_key) or bool(openai_model and (settings.openai_base_url or settings.openai_api_key))


def audio_client(settings: Settings, openai_model: str | None) -> AudioClient | None:
    """Groq's client if a Groq key is set; else the OpenAI-compatible server's if `openai_model` is set."""
    if settings.groq_api_key:
        import groq

        client = groq.AsyncGroq(
            api_key=settings.groq_api_key, base_url=settings.groq_base_url, timeout=settings.request_timeout_s
        )
        return AudioClient(client, groq, "groq")
    if audio_configured(settings, openai_model):
        import openai

        client = openai.AsyncOpenAI(
            api_key=settings.openai_api_key or "not-needed",
            base_url=settings.openai_base_url,
            timeout=settings.request_timeout_s,
        )
        return AudioClient(client, openai, "openai")
    return None


@contextmanager
def provider_errors(sdk: ModuleType, task: str) -> Iterator[None]:
    """Raise the SDK's failures (and httpx's) inside the block as ProviderError; `task` names a timeout."""
    try:
        yield
    except sdk.APIStatusError as exc:
        raise ProviderError(classify_status(exc.status_code, str(exc.message)), f"HTTP {exc.status_code}") from exc
    except (sdk.APITimeoutError, httpx.TimeoutException) as exc:
        raise ProviderError(ErrorKind.TIMEOUT, f"{task} timed out") from exc
    except (sdk.APIError, httpx.HTTPError) as exc:
        raise ProviderError(ErrorKind.CONNECTION, type(exc).__name__) from exc
