"""Any OpenAI-compatible server (OpenAI, Ollama, vLLM, llama.cpp server, LM Studio, HF router)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx2
import openai

from chatbot_app.providers.base import Usage
from chatbot_app.providers.openai_style import HttpTransport, OpenAIStyleProvider, StreamParser


class OpenAICompatibleProvider(OpenAIStyleProvider):
    name = "openai"
    lists_tool_support = True
    label = "OpenAI-compatible"
    sdk = openai
    http = httpx2

    def __init__(
        self,
        api_key: str | None,
        base_url: str | None = None,
        timeout_s: float = 60.0,
        fallback_models: Sequence[str] = (),
        parser: StreamParser = "raw",
        transport: HttpTransport = "aiohttp",
    ) -> None:
        # Local servers (Ollama, llama.cpp) need no key, but the SDK insists on one.
        # No SDK retries: ChatService retries with its own policy and tells the user it is retrying.
        client = openai.AsyncOpenAI(
            api_key=api_key or "unused",
            base_url=base_url,
            timeout=timeout_s,
            max_retries=0,
            http_client=self.http_client(transport),
        )
        super().__init__(client, fallback_models, parser)

    def _stream_arguments(self) -> dict[str, Any]:
        return {"stream_options": {"include_usage": True}}

    def _usage(self, chunk: Any) -> Usage | None:
        u = getattr(chunk, "usage", None)
        return Usage(u.prompt_tokens, u.completion_tokens) if u is not None else None

    def _payload_usage(self, payload: dict[str, Any]) -> Usage | None:
        # Asked for with stream_options.include_usage: a last chunk with no choices and a top-level `usage`.
        u = payload.get("usage")
        return Usage(u.get("prompt_tokens"), u.get("completion_tokens")) if u else None
