"""Groq, the primary provider, through the official async SDK."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import groq

from chatbot_app.providers.base import Usage
from chatbot_app.providers.openai_style import OpenAIStyleProvider


class GroqProvider(OpenAIStyleProvider):
    name = "groq"
    label = "Groq"
    sdk = groq

    def __init__(
        self,
        api_key: str,
        base_url: str | None = None,
        timeout_s: float = 60.0,
        fallback_models: Sequence[str] = (),
    ) -> None:
        # No SDK retries: ChatService retries with its own policy and tells the user it is retrying.
        client = groq.AsyncGroq(api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=0)
        super().__init__(client, fallback_models)

    def _usage(self, chunk: Any) -> Usage | None:
        x_groq = getattr(chunk, "x_groq", None)
        if x_groq is None or x_groq.usage is None:
            return None
        u = x_groq.usage
        return Usage(u.prompt_tokens, u.completion_tokens, u.completion_time)
