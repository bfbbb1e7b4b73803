"""Chat providers behind one interface (base.ChatProvider), chosen from Settings."""

from __future__ import annotations

from chatbot_app.config import Settings
from chatbot_app.providers.base import ChatProvider, ErrorKind, ProviderError


def build_provider(settings: Settings) -> ChatProvider:
    """The provider that Settings select; raises ProviderError(NOT_CONFIGURED) if none can be built."""
    if settings.provider in ("auto", "groq"):
        if not settings.groq_api_key:
            raise ProviderError(ErrorKind.NOT_CONFIGURED, "GROQ_API_KEY is not set")
        from chatbot_app.providers.groq import GroqProvider

        return GroqProvider(settings.groq_api_key, settings.groq_base_url, settings.request_timeout_s)
    raise ProviderError(ErrorKind.NOT_CONFIGURED, f"unknown provider {settings.provider!r}")
