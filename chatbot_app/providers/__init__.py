"""Chat providers behind one interface (base.ChatProvider), built from Settings."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from chatbot_app.config import Settings
from chatbot_app.providers.base import ChatProvider, ErrorKind, ProviderError


@dataclass(frozen=True, slots=True)
class ModelGroup:
    """One provider's models, as the model picker shows them; `error` if they could not be listed."""

    provider: str
    label: str
    models: list[str]
    error: str | None = None


class ProviderRegistry:
    """Every configured provider, and which one answers by default."""

    def __init__(self, providers: list[ChatProvider], default: str | None) -> None:
        self._providers = {p.name: p for p in providers}
        self.default_name = default

    @classmethod
    def from_settings(cls, settings: Settings) -> ProviderRegistry:
        providers: list[ChatProvider] = []
        if settings.groq_api_key:
            from chatbot_app.providers.groq import GroqProvider

            providers.append(
                GroqProvider(
                    settings.groq_api_key,
                    settings.groq_base_url,
                    settings.request_timeout_s,
                    settings.groq_models,
                    settings.stream_parser,
                    settings.http_transport,
                )
            )
        if settings.openai_base_url or settings.openai_api_key:
            from chatbot_app.providers.openai_compat import OpenAICompatibleProvider

            providers.append(
                OpenAICompatibleProvider(
                    settings.openai_api_key,
                    settings.openai_base_url,
                    settings.request_timeout_s,
                    settings.openai_models,
                    settings.stream_parser,
                    settings.http_transport,
                )
            )
        if (path := local_model_path(settings)) is not None:
            from chatbot_app.providers.local import LocalProvider

            providers.append(
                LocalProvider(
                    path, context_tokens=settings.local_context_tokens, max_waiting=settings.local_max_waiting
                )
            )
        names = [p.name for p in providers]
        if settings.provider == "auto":
            default = names[0] if names else None  # groq, then openai, then local
        else:
            default = settings.provider if settings.provider in names else None
        return cls(providers, default)

    @property
    def providers(self) -> list[ChatProvider]:
        return list(self._providers.values())

    def get(self, name: str | None = None) -> ChatProvider:
        """The named provider, or the default one; raises ProviderError(NOT_CONFIGURED)."""
        name = name or self.default_name
        if name is None or name not in self._providers:
            raise ProviderError(ErrorKind.NOT_CONFIGURED, f"provider {name!r} is not configured")
        return self._providers[name]

    async def aclose(self) -> None:
        """Close every provider's connections (at shutdown)."""
        await asyncio.gather(*(p.aclose() for p in self._providers.values()), return_exceptions=True)

    async def model_groups(self) -> list[ModelGroup]:
        """Every configured provider's models; a provider that cannot be reached lists none."""

        async def group(provider: ChatProvider) -> ModelGroup:
            try:
                return ModelGroup(provider.name, provider.label, await provider.list_models())
            except ProviderError as exc:
                return ModelGroup(provider.name, provider.label, [], exc.kind.value)

        return list(await asyncio.gather(*(group(p) for p in self._providers.values())))


def local_model_path(settings: Settings) -> Path | None:
    """The GGUF file the local provider should load, or None if it is off or missing.

    CHATBOT_LOCAL_MODEL: empty for the default bundled model, a bundled model's name
    ("gemma3", "smollm2"), "off", or a path to any GGUF chat model.
    """
    from chatbot_app.providers.local import BUNDLED_MODELS, DEFAULT_LOCAL_MODEL, bundled_model_path

    choice = settings.local_model.strip()
    if choice.lower() == "off":
        return None
    if not choice:
        # The default, or the other bundled model when only that one is installed.
        return next(filter(None, map(bundled_model_path, (DEFAULT_LOCAL_MODEL, *BUNDLED_MODELS))), None)
    if choice.lower() in BUNDLED_MODELS:
        return bundled_model_path(choice.lower())
    path = Path(choice).expanduser()
    return path if path.is_file() else None
