"""OpenAICompatibleProvider through the real openai SDK against the fake server's /v1 API."""

from __future__ import annotations

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
from chatbot_app.providers.openai_compat import OpenAICompatibleProvider
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer

API_KEY = "sk-test-" + "o" * 24
MESSAGES = [ChatMessage("system", "Be brief."), ChatMessage("user", "Say hello.")]
OPTIONS = GenerationOptions(model="fake-large")
PROMPT_TOKENS = sum(len(m.content) // 4 + 4 for m in MESSAGES)  # how the fake counts them


@pytest.fixture
async def provider(fake: FakeLLMServer) -> AsyncIterator[OpenAICompatibleProvider]:
    async with contextlib.aclosing(OpenAICompatibleProvider(API_KEY, fake.openai_base_url, timeout_s=10)) as provider:
        yield provider


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that is bound but not listening: connections to it are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


async def drain(provider: OpenAICompatibleProvider, options: GenerationOptions = OPTIONS) -> list[ProviderEvent]:
    return [item async for item in provider.stream(MESSAGES, options)]


async def failure_of(provider: OpenAICompatibleProvider, options: GenerationOptions = OPTIONS) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await drain(provider, options)
    return caught.value


async def test_streams_text_deltas_then_usage(provider: OpenAICompatibleProvider, fake: FakeLLMServer) -> None:
    fake.enqueue(Behaviour(text="Hello there, friend."))

    items = await drain(provider)

    assert items == [TextDelta("Hello"), TextDelta(" there,"), TextDelta(" friend."), Usage(PROMPT_TOKENS, 3)]


async def test_request_carries_the_options_messages_key_and_asks_for_usage(
    provider: OpenAICompatibleProvider, fake: FakeLLMServer
) -> None:
    options = GenerationOptions(model="fake-small", temperature=0.25, max_tokens=64, top_p=0.9)

    await drain(provider, options)

    [request] = fake.chat_requests()
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    body = request.body
    assert (body["model"], body["temperature"], body["max_tokens"], body["top_p"]) == ("fake-small", 0.25, 64, 0.9)
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]


async def test_without_a_key_the_request_still_goes_out(fake: FakeLLMServer) -> None:
    # Ollama and llama.cpp's server need no key.
    async with contextlib.aclosing(OpenAICompatibleProvider(None, fake.openai_base_url, timeout_s=10)) as keyless:
        fake.enqueue(Behaviour(text="Hi."))

        assert await drain(keyless) == [TextDelta("Hi."), Usage(PROMPT_TOKENS, 1)]
        assert fake.chat_requests()[0].headers["authorization"] == "Bearer unused"


async def test_complete_makes_one_non_streaming_request(
    provider: OpenAICompatibleProvider, fake: FakeLLMServer
) -> None:
    fake.enqueue(Behaviour(text="One two three"))

    completion = await provider.complete(MESSAGES, OPTIONS)

    assert completion.text == "One two three"
    assert completion.usage == Usage(PROMPT_TOKENS, 3)
    [request] = fake.chat_requests()
    assert not request.body.get("stream")
    assert "stream_options" not in request.body  # only valid on a streaming request


async def test_list_models_returns_the_servers_chat_models(
    provider: OpenAICompatibleProvider, fake: FakeLLMServer
) -> None:
    assert await provider.list_models() == ["fake-large", "fake-small"]
    assert [r.path for r in fake.requests] == ["/v1/models"]


async def test_bad_api_key_is_auth(provider: OpenAICompatibleProvider, fake: FakeLLMServer) -> None:
    fake.enqueue(Behaviour(status=401, error_message="Incorrect API key provided"))

    error = await failure_of(provider)

    assert error.kind is ErrorKind.AUTH
    assert len(fake.chat_requests()) == 1  # a rejected key is not retried


async def test_unknown_model_is_model_not_found(provider: OpenAICompatibleProvider, fake: FakeLLMServer) -> None:
    error = await failure_of(provider, GenerationOptions(model="gpt-retired"))

    assert error.kind is ErrorKind.MODEL_NOT_FOUND
    assert "HTTP 404" in error.detail
    assert len(fake.chat_requests()) == 1


async def test_server_error_is_server_and_not_retried_by_the_sdk(
    provider: OpenAICompatibleProvider, fake: FakeLLMServer
) -> None:
    fake.enqueue(Behaviour(status=500, error_message="internal_server_error"))

    error = await failure_of(provider)

    assert error.kind is ErrorKind.SERVER
    assert "HTTP 500" in error.detail
    assert len(fake.chat_requests()) == 1


async def test_connection_cut_mid_stream_is_connection_after_the_first_deltas(
    provider: OpenAICompatibleProvider, fake: FakeLLMServer
) -> None:
    fake.enqueue(Behaviour(text="one two three four five six", cut_after_tokens=3))
    received: list[ProviderEvent] = []

    with pytest.raises(ProviderError) as caught:
        async for item in provider.stream(MESSAGES, OPTIONS):
            received.append(item)

    assert caught.value.kind is ErrorKind.CONNECTION
    assert received == [TextDelta("one"), TextDelta(" two"), TextDelta(" three")]


async def test_slow_first_token_is_timeout(fake: FakeLLMServer) -> None:
    async with contextlib.aclosing(OpenAICompatibleProvider(API_KEY, fake.openai_base_url, timeout_s=0.2)) as impatient:
        fake.enqueue(Behaviour(first_token_delay_s=30))

        assert (await failure_of(impatient)).kind is ErrorKind.TIMEOUT


async def test_fallback_models_are_listed_when_the_server_cannot_be_reached(closed_port: int) -> None:
    async with contextlib.aclosing(
        OpenAICompatibleProvider(
            API_KEY, f"http://127.0.0.1:{closed_port}/v1", timeout_s=5, fallback_models=["gpt-a", "gpt-b"]
        )
    ) as unreachable:
        assert await unreachable.list_models() == ["gpt-a", "gpt-b"]


async def test_without_fallback_models_an_unreachable_server_is_connection(closed_port: int) -> None:
    async with contextlib.aclosing(
        OpenAICompatibleProvider(API_KEY, f"http://127.0.0.1:{closed_port}/v1", timeout_s=5)
    ) as unreachable:
        with pytest.raises(ProviderError) as caught:
            await unreachable.list_models()

        assert caught.value.kind is ErrorKind.CONNECTION
