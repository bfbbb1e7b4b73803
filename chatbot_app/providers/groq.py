"""Groq, the primary provider, through the official async SDK."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import groq

from chatbot_app.providers.base import ProviderError, Usage, classify_status
from chatbot_app.providers.openai_style import HttpTransport, OpenAIStyleProvider, StreamParser


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
        parser: StreamParser = "raw",
        transport: HttpTransport = "aiohttp",
    ) -> None:
        # No SDK retries: ChatService retries with its own policy and tells the user it is retrying.
        client = groq.AsyncGroq(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout_s,
            max_retries=0,
            http_client=self.http_client(transport),
        )
        super().__init__(client, fallback_models, parser)

    def _usage(self, chunk: Any) -> Usage | None:
        x_groq = getattr(chunk, "x_groq", None)
        if x_groq is None or x_groq.usage is None:
            return None
        u = x_groq.usage
        return Usage(u.prompt_tokens, u.completion_tokens, u.completion_time)

    def _payload_usage(self, payload: dict[str, Any]) -> Usage | None:
        # Groq's own extension, on the first and last chunks: {"x_groq": {"usage": {...}}}, or
        # {"x_groq": {"error": "..."}} when it stopped the stream early (the SDK objects would ignore that).
        x_groq = payload.get("x_groq")
        if not x_groq:
            return None
        if message := x_groq.get("error"):
            raise ProviderError(classify_status(500, str(message)), f"error in stream: {message}")
        if not (u := x_groq.get("usage")):
            return None
        return Usage(u.get("prompt_tokens"), u.get("completion_tokens"), u.get("completion_time"))
