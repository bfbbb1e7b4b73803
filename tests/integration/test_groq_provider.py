"""GroqProvider through the real groq SDK against the fake server: streaming, models, and every failure kind."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator

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
from tests.conftest import TEST_API_KEY
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer

MESSAGES = [ChatMessage("system", "Be brief."), ChatMessage("user", "Say hello.")]
OPTIONS = GenerationOptions(model="fake-large")


@pytest.fixture
async def provider(fake: FakeLLMServer) -> AsyncIterator[GroqProvider]:
    async with contextlib.aclosing(GroqProvider(TEST_API_KEY, fake.base_url, timeout_s=10)) as provider:
        yield provider


async def drain(provider: GroqProvider, options: GenerationOptions = OPTIONS) -> list[ProviderEvent]:
    return [item async for item in provider.stream(MESSAGES, options)]


async def failure_of(provider: GroqProvider, options: GenerationOptions = OPTIONS) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await drain(provider, options)
    return caught.value


async def test_streams_text_deltas_then_usage(provider: GroqProvider, fake: FakeLLMServer) -> None:
    fake.enqueue(Behaviour(text="Hello there, friend."))

    items = await drain(provider)

    assert items[:-1] == [TextDelta("Hello"), TextDelta(" there,"), TextDelta(" friend.")]
    usage = items[-1]
    assert isinstance(usage, Usage)
    expected_prompt_tokens = sum(len(m.content) // 4 + 4 for m in MESSAGES)
    assert (usage.prompt_tokens, usage.completion_tokens) == (expected_prompt_tokens, 3)
    assert usage.completion_time_s is not None


async def test_complete_joins_the_stream(provider: GroqProvider, fake: FakeLLMServer) -> None:
    fake.enqueue(Behaviour(text="One two three"))

    completion = await provider.complete(MESSAGES, OPTIONS)

    assert completion.text == "One two three"
    assert completion.usage is not None and completion.usage.completion_tokens == 3


async def test_request_carries_the_options_messages_and_key(provider: GroqProvider, fake: FakeLLMServer) -> None:
    options = GenerationOptions(model="fake-small", temperature=0.25, max_tokens=64, top_p=0.9)

    await drain(provider, options)

    [request] = fake.chat_requests()
    assert request.path == "/openai/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {TEST_API_KEY}"
    body = request.body
    assert (body["model"], body["temperature"], body["max_tokens"], body["top_p"]) == ("fake-small", 0.25, 64, 0.9)
    assert body["stream"] is True
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]


async def test_list_models_returns_the_servers_chat_models(provider: GroqProvider, fake: FakeLLMServer) -> None:
    assert await provider.list_models() == ["fake-large", "fake-small"]


async def test_list_models_leaves_out_models_that_cannot_chat(
    provider: GroqProvider, fake: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fake, "models", ("whisper-large-v3", "zeta-chat", "playai-tts", "llama-guard-4", "alpha-chat"))

    assert await provider.list_models() == ["alpha-chat", "zeta-chat"]


async def test_list_models_is_cached(provider: GroqProvider, fake: FakeLLMServer) -> None:
    first = await provider.list_models()
    second = await provider.list_models()

    assert first == second
    assert [r.path for r in fake.requests] == ["/openai/v1/models"]


async def test_bad_api_key_is_auth(provider: GroqProvider, fake: FakeLLMServer) -> None:
    fake.enqueue(Behaviour(status=401, error_message="Invalid API Key"))

    error = await failure_of(provider)

    assert error.kind is ErrorKind.AUTH
    assert len(fake.chat_requests()) == 1  # a rejected key is not retried


async def test_rate_limit_carries_retry_after_and_is_not_retried_by_the_sdk(
    provider: GroqProvider, fake: FakeLLMServer
) -> None:
    # Retries belong to ChatService (which tells the user); the provider reports the first refusal.
    fake.enqueue(Behaviour(status=429, retry_after="7", error_message="Rate limit reached for tokens per minute"))

    error = await failure_of(provider)

    assert error.kind is ErrorKind.RATE_LIMIT
    assert error.retry_after_s == 7.0
    assert len(fake.chat_requests()) == 1


async def test_server_error_is_server(provider: GroqProvider, fake: FakeLLMServer) -> None:
    fake.enqueue(Behaviour(status=500, error_message="internal_server_error"))

    error = await failure_of(provider)

    assert error.kind is ErrorKind.SERVER
    assert "HTTP 500" in error.detail
    assert len(fake.chat_requests()) == 1


async def test_unknown_model_is_model_not_found(provider: GroqProvider, fake: FakeLLMServer) -> None:
    error = await failure_of(provider, GenerationOptions(model="retired-model"))

    assert error.kind is ErrorKind.MODEL_NOT_FOUND
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
    provider: GroqProvider, fake: FakeLLMServer, status: int, message: str, kind: ErrorKind
) -> None:
    fake.enqueue(Behaviour(status=status, error_message=message))

    assert (await failure_of(provider)).kind is kind


async def test_connection_cut_mid_stream_is_connection_after_the_first_deltas(
    provider: GroqProvider, fake: FakeLLMServer
) -> None:
    fake.enqueue(Behaviour(text="one two three four five six", cut_after_tokens=3))
    received: list[ProviderEvent] = []

    with pytest.raises(ProviderError) as caught:
        async for item in provider.stream(MESSAGES, OPTIONS):
            received.append(item)

    assert caught.value.kind is ErrorKind.CONNECTION
    assert received == [TextDelta("one"), TextDelta(" two"), TextDelta(" three")]


async def test_slow_first_token_is_timeout(fake: FakeLLMServer) -> None:
    async with contextlib.aclosing(GroqProvider(TEST_API_KEY, fake.base_url, timeout_s=0.2)) as impatient:
        fake.enqueue(Behaviour(first_token_delay_s=30))

        assert (await failure_of(impatient)).kind is ErrorKind.TIMEOUT


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that is bound but not listening: connections to it are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


async def test_nothing_listening_is_connection(closed_port: int) -> None:
    async with contextlib.aclosing(
        GroqProvider(TEST_API_KEY, f"http://127.0.0.1:{closed_port}", timeout_s=5)
    ) as unreachable:
        error = await failure_of(unreachable)

        assert error.kind is ErrorKind.CONNECTION


async def test_closing_the_stream_early_closes_the_upstream_request(
    provider: GroqProvider, fake: FakeLLMServer
) -> None:
    fake.enqueue(Behaviour(tokens=400, tokens_per_s=40))
    stream = provider.stream(MESSAGES, OPTIONS)

    assert isinstance(await anext(stream), TextDelta)
    await stream.aclose()

    # The server runs in its own thread: wait (bounded) for it to see the client go.
    assert await asyncio.to_thread(fake.abort_seen.wait, 10)
    assert fake.aborted == [len(fake.requests)]
    assert len(fake.requests) not in fake.token_times  # it never reached the end of the reply
