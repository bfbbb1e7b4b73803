"""The Groq and OpenAI-compatible providers, each through its real SDK against the fake server:
streaming, completion, models, and every failure kind.

Every test runs once per provider (the `case` fixture); a test that only makes sense for one is
parametrized with that one alone (`only_openai`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from chatbot_app.providers.base import (
    ChatMessage,
    ErrorKind,
    GenerationOptions,
    ProviderError,
    ProviderEvent,
    TextDelta,
    Usage,
)
from chatbot_app.providers.groq import GroqProvider
from chatbot_app.providers.openai_compat import OpenAICompatibleProvider
from chatbot_app.providers.openai_style import OpenAIStyleProvider
from tests.conftest import TEST_API_KEY
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer

MESSAGES = [ChatMessage("system", "Be brief."), ChatMessage("user", "Say hello.")]
OPTIONS = GenerationOptions(model="fake-large")
PROMPT_TOKENS = sum(len(m.content) // 4 + 4 for m in MESSAGES)  # how the fake counts them


@dataclass(frozen=True, slots=True)
class ProviderCase:
    """One provider under test, and what it does differently on the wire."""

    name: str
    #: Where its SDK sends requests on a server, before "/chat/completions" or "/models".
    api_path: str
    #: What it adds to a streaming request: OpenAI's usage comes only when asked for.
    stream_options: dict[str, Any] | None
    #: Groq's `x_groq.usage` says how long the completion took; OpenAI's usage does not.
    reports_completion_time: bool

    def build(self, server_url: str, timeout_s: float = 10, fallback_models: Sequence[str] = ()) -> OpenAIStyleProvider:
        """The provider for a server at `server_url` (scheme, host and port)."""
        if self.name == "groq":
            return GroqProvider(TEST_API_KEY, server_url, timeout_s=timeout_s, fallback_models=fallback_models)
        return OpenAICompatibleProvider(
            TEST_API_KEY, f"{server_url}/v1", timeout_s=timeout_s, fallback_models=fallback_models
        )


GROQ = ProviderCase("groq", "/openai/v1", stream_options=None, reports_completion_time=True)
OPENAI = ProviderCase("openai", "/v1", stream_options={"include_usage": True}, reports_completion_time=False)
only_openai = pytest.mark.parametrize("case", [OPENAI], ids=["openai"])


@pytest.fixture(params=[GROQ, OPENAI], ids=["groq", "openai"])
def case(request: pytest.FixtureRequest) -> ProviderCase:
    return request.param


@pytest.fixture
async def provider(case: ProviderCase, fake: FakeLLMServer) -> AsyncIterator[OpenAIStyleProvider]:
    async with contextlib.aclosing(case.build(fake.base_url)) as provider:
        yield provider


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that is bound but not listening: connections to it are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


async def drain(provider: OpenAIStyleProvider, options: GenerationOptions = OPTIONS) -> list[ProviderEvent]:
    return [item async for item in provider.stream(MESSAGES, options)]


async def failure_of(provider: OpenAIStyleProvider, options: GenerationOptions = OPTIONS) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await drain(provider, options)
    return caught.value


async def test_streams_text_deltas_then_usage(
    provider: OpenAIStyleProvider, case: ProviderCase, fake: FakeLLMServer
) -> None:
    fake.enqueue(Behaviour(text="Hello there, friend."))

    items = await drain(provider)

    assert items[:-1] == [TextDelta("Hello"), TextDelta(" there,"), TextDelta(" friend.")]
    usage = items[-1]
    assert isinstance(usage, Usage)
    assert (usage.prompt_tokens, usage.completion_tokens) == (PROMPT_TOKENS, 3)
    assert (usage.completion_time_s is not None) is case.reports_completion_time


async def test_request_carries_the_options_messages_and_key(
    provider: OpenAIStyleProvider, case: ProviderCase, fake: FakeLLMServer
) -> None:
    options = GenerationOptions(model="fake-small", temperature=0.25, max_tokens=64, top_p=0.9)

    await drain(provider, options)

    [request] = fake.chat_requests()
    assert request.path == f"{case.api_path}/chat/completions"
    assert request.headers["authorization"] == f"Bearer {TEST_API_KEY}"
    body = request.body
    assert (body["model"], body["temperature"], body["max_tokens"], body["top_p"]) == ("fake-small", 0.25, 64, 0.9)
    assert body["stream"] is True
    assert body.get("stream_options") == case.stream_options
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]


async def test_complete_makes_one_non_streaming_request(provider: OpenAIStyleProvider, fake: FakeLLMServer) -> None:
    fake.enqueue(Behaviour(text="One two three"))

    completion = await provider.complete(MESSAGES, OPTIONS)

    assert completion.text == "One two three"
    assert completion.usage == Usage(PROMPT_TOKENS, 3)
    [request] = fake.chat_requests()
    assert not request.body.get("stream")
    assert "stream_options" not in request.body  # only valid on a streaming request


async def test_list_models_returns_the_servers_chat_models(
    provider: OpenAIStyleProvider, case: ProviderCase, fake: FakeLLMServer
) -> None:
    assert await provider.list_models() == ["fake-large", "fake-small"]
    assert [r.path for r in fake.requests] == [f"{case.api_path}/models"]


async def test_list_models_leaves_out_models_that_cannot_chat(
    provider: OpenAIStyleProvider, fake: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fake, "models", ("whisper-large-v3", "zeta-chat", "playai-tts", "llama-guard-4", "alpha-chat"))

    assert await provider.list_models() == ["alpha-chat", "zeta-chat"]


async def test_list_models_is_cached(provider: OpenAIStyleProvider, case: ProviderCase, fake: FakeLLMServer) -> None:
    first = await provider.list_models()
    second = await provider.list_models()

    assert first == second
    assert [r.path for r in fake.requests] == [f"{case.api_path}/models"]


async def test_fallback_models_are_listed_when_the_server_cannot_be_reached(
    case: ProviderCase, closed_port: int
) -> None:
    async with contextlib.aclosing(
        case.build(f"http://127.0.0.1:{closed_port}", timeout_s=5, fallback_models=["gpt-a", "gpt-b"])
    ) as unreachable:
        assert await unreachable.list_models() == ["gpt-a", "gpt-b"]


async def test_without_fallback_models_an_unreachable_server_is_connection(
    case: ProviderCase, closed_port: int
) -> None:
    async with contextlib.aclosing(case.build(f"http://127.0.0.1:{closed_port}", timeout_s=5)) as unreachable:
        with pytest.raises(ProviderError) as caught:
            await unreachable.list_models()

        assert caught.value.kind is ErrorKind.CONNECTION


async def test_bad_api_key_is_auth(provider: OpenAIStyleProvider, fake: FakeLLMServer) -> None:
    fake.enqueue(Behaviour(status=401, error_message="Invalid API Key"))

    error = await failure_of(provider)

    assert error.kind is ErrorKind.AUTH
    assert len(fake.chat_requests()) == 1  # a rejected key is not retried


async def test_rate_limit_carries_retry_after_and_is_not_retried_by_the_sdk(
    provider: OpenAIStyleProvider, fake: FakeLLMServer
) -> None:
    # Retries belong to ChatService (which tells the user); the provider reports the first refusal.
    fake.enqueue(Behaviour(status=429, retry_after="7", error_message="Rate limit reached for tokens per minute"))

    error = await failure_of(provider)

    assert error.kind is ErrorKind.RATE_LIMIT
    assert error.retry_after_s == 7.0
    assert len(fake.chat_requests()) == 1


async def test_server_error_is_server_and_not_retried_by_the_sdk(
    provider: OpenAIStyleProvider, fake: FakeLLMServer
) -> None:
    fake.enqueue(Behaviour(status=500, error_message="internal_server_error"))

    error = await failure_of(provider)

    assert error.kind is ErrorKind.SERVER
    assert "HTTP 500" in error.detail
    assert len(fake.chat_requests()) == 1


async def test_unknown_model_is_model_not_found(provider: OpenAIStyleProvider, fake: FakeLLMServer) -> None:
    error = await failure_of(provider, GenerationOptions(model="retired-model"))

    assert error.kind is ErrorKind.MODEL_NOT_FOUND
    assert "HTTP 404" in error.detail
    assert len(fake.chat_requests()) == 1


@pytest.mark.parametrize(
    ("status", "message", "kind"),
    [
        (400, "The model `old` has been decommissioned", ErrorKind.MODEL_NOT_FOUND),
        (400, "Please reduce the length of the messages: context_length_exceeded", ErrorKind.CONTEXT_TOO_LONG),
        (413, "Request too large", ErrorKind.CONTEXT_TOO_LONG),
        (400, "content_filter triggered", ErrorKind.CONTENT_REFUSED),
        (400, "messages must be an array", ErrorKind.BAD_REQUEST),
        (403, "Forbidden", ErrorKind.AUTH),
    ],
)
async def test_request_errors_are_classified(
    provider: OpenAIStyleProvider, fake: FakeLLMServer, status: int, message: str, kind: ErrorKind
) -> None:
    fake.enqueue(Behaviour(status=status, error_message=message))

    assert (await failure_of(provider)).kind is kind


async def test_connection_cut_mid_stream_is_connection_after_the_first_deltas(
    provider: OpenAIStyleProvider, fake: FakeLLMServer
) -> None:
    fake.enqueue(Behaviour(text="one two three four five six", cut_after_tokens=3))
    received: list[ProviderEvent] = []

    with pytest.raises(ProviderError) as caught:
        async for item in provider.stream(MESSAGES, OPTIONS):
            received.append(item)

    assert caught.value.kind is ErrorKind.CONNECTION
    assert received == [TextDelta("one"), TextDelta(" two"), TextDelta(" three")]


async def test_slow_first_token_is_timeout(case: ProviderCase, fake: FakeLLMServer) -> None:
    async with contextlib.aclosing(case.build(fake.base_url, timeout_s=0.2)) as impatient:
        fake.enqueue(Behaviour(first_token_delay_s=30))

        assert (await failure_of(impatient)).kind is ErrorKind.TIMEOUT


async def test_nothing_listening_is_connection(case: ProviderCase, closed_port: int) -> None:
    async with contextlib.aclosing(case.build(f"http://127.0.0.1:{closed_port}", timeout_s=5)) as unreachable:
        error = await failure_of(unreachable)

        assert error.kind is ErrorKind.CONNECTION


async def test_closing_the_stream_early_closes_the_upstream_request(
    provider: OpenAIStyleProvider, fake: FakeLLMServer
) -> None:
    fake.enqueue(Behaviour(tokens=400, tokens_per_s=40))
    stream = provider.stream(MESSAGES, OPTIONS)

    assert isinstance(await anext(stream), TextDelta)
    await stream.aclose()

    # The server runs in its own thread: wait (bounded) for it to see the client go.
    assert await asyncio.to_thread(fake.abort_seen.wait, 10)
    assert fake.aborted == [len(fake.requests)]
    assert len(fake.requests) not in fake.token_times  # it never reached the end of the reply


# --- Only the OpenAI-compatible provider ----------------------------------------------------------


@only_openai
async def test_without_a_key_the_request_still_goes_out(case: ProviderCase, fake: FakeLLMServer) -> None:
    # Ollama and llama.cpp's server need no key (Groq always does).
    async with contextlib.aclosing(
        OpenAICompatibleProvider(None, fake.base_url + case.api_path, timeout_s=10)
    ) as keyless:
        fake.enqueue(Behaviour(text="Hi."))

        assert await drain(keyless) == [TextDelta("Hi."), Usage(PROMPT_TOKENS, 1)]
        assert fake.chat_requests()[0].headers["authorization"] == "Bearer unused"
