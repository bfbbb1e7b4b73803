"""The raw stream reader (SSE bytes parsed with orjson) against the SDK's chunk objects, for both SDKs.

Each case streams the same scripted reply through `parser="raw"` and `parser="sdk"` from the fake
server and expects the same events and the same error kinds; then what only the raw reader sees.
The reference is the SDK's objects over its default (httpx) transport; the raw reader runs over the
SDK's aiohttp client (as shipped) and over httpx.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from chatbot_app.providers.base import (
    ChatMessage,
    ErrorKind,
    GenerationOptions,
    ProviderError,
    ProviderEvent,
    ReasoningDelta,
    TextDelta,
    Usage,
)
from chatbot_app.providers.groq import GroqProvider
from chatbot_app.providers.openai_compat import OpenAICompatibleProvider
from chatbot_app.providers.openai_style import HttpTransport, OpenAIStyleProvider, StreamParser
from tests.conftest import TEST_API_KEY
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer

MESSAGES = [ChatMessage("system", "Be brief."), ChatMessage("user", "Say hello.")]
OPTIONS = GenerationOptions(model="fake-large")
PROMPT_TOKENS = sum(len(m.content) // 4 + 4 for m in MESSAGES)  # how the fake counts them

MakeProvider = Callable[[StreamParser], OpenAIStyleProvider]


def provider_of(sdk: str, fake: FakeLLMServer, parser: StreamParser, transport: HttpTransport) -> OpenAIStyleProvider:
    if sdk == "groq":
        return GroqProvider(TEST_API_KEY, fake.base_url, timeout_s=10, parser=parser, transport=transport)
    return OpenAICompatibleProvider(
        TEST_API_KEY, fake.openai_base_url, timeout_s=10, parser=parser, transport=transport
    )


@pytest.fixture(params=["groq-aiohttp", "groq-httpx", "openai-aiohttp", "openai-httpx"])
async def make(request: pytest.FixtureRequest, fake: FakeLLMServer) -> AsyncIterator[MakeProvider]:
    """Providers of one SDK: the raw reader over this case's transport, the SDK's objects over httpx."""
    sdk, transport = request.param.split("-")
    made: list[OpenAIStyleProvider] = []

    def make(parser: StreamParser) -> OpenAIStyleProvider:
        made.append(provider_of(sdk, fake, parser, transport if parser == "raw" else "httpx"))
        return made[-1]

    yield make
    for provider in made:
        await provider.aclose()


async def outcome(provider: OpenAIStyleProvider) -> tuple[list[ProviderEvent], ErrorKind | None]:
    """Every event the stream yielded, and the kind of the error that ended it (None if it ended well)."""
    received: list[ProviderEvent] = []
    try:
        async for event in provider.stream(MESSAGES, OPTIONS):
            received.append(event)
    except ProviderError as exc:
        return received, exc.kind
    return received, None


async def both(
    make: MakeProvider, fake: FakeLLMServer, behaviour: Behaviour
) -> list[tuple[list[ProviderEvent], ErrorKind | None]]:
    fake.enqueue(behaviour, behaviour)
    return [await outcome(make("raw")), await outcome(make("sdk"))]


def without_timing(events: list[ProviderEvent]) -> list[ProviderEvent]:
    """Groq's usage carries the stream's measured duration, which differs from run to run."""
    return [Usage(e.prompt_tokens, e.completion_tokens) if isinstance(e, Usage) else e for e in events]


async def test_the_same_deltas_and_usage(make: MakeProvider, fake: FakeLLMServer) -> None:
    (raw, raw_error), (sdk, sdk_error) = await both(make, fake, Behaviour(text='Hello "there", friend. Ünïcode ✓'))

    assert raw_error is sdk_error is None
    assert without_timing(raw) == without_timing(sdk)
    assert [e for e in raw if isinstance(e, TextDelta)] == [
        TextDelta("Hello"),
        TextDelta(' "there",'),
        TextDelta(" friend."),
        TextDelta(" Ünïcode"),
        TextDelta(" ✓"),
    ]
    assert without_timing(raw[-1:]) == [Usage(PROMPT_TOKENS, 5)]


async def test_a_long_fast_stream_arrives_whole(make: MakeProvider, fake: FakeLLMServer) -> None:
    (raw, _), (sdk, _) = await both(make, fake, Behaviour(text="start", tokens=1000))

    assert without_timing(raw) == without_timing(sdk)
    assert len([e for e in raw if isinstance(e, TextDelta)]) == 1000


async def test_a_reasoning_stream_in_groqs_format(make: MakeProvider, fake: FakeLLMServer) -> None:
    behaviour = Behaviour(text="It is 4.", reasoning="The user asks two plus two.")

    (raw, raw_error), (sdk, sdk_error) = await both(make, fake, behaviour)

    assert raw_error is sdk_error is None
    assert without_timing(raw) == without_timing(sdk)
    thinking = [ReasoningDelta(t) for t in ["The", " user", " asks", " two", " plus", " two."]]
    assert without_timing(raw) == [
        *thinking,
        TextDelta("It"),
        TextDelta(" is"),
        TextDelta(" 4."),
        Usage(PROMPT_TOKENS, 9),
    ]


async def test_a_cut_mid_stream_is_connection_after_the_same_deltas(make: MakeProvider, fake: FakeLLMServer) -> None:
    (raw, raw_error), (sdk, sdk_error) = await both(
        make, fake, Behaviour(text="one two three four", cut_after_tokens=2)
    )

    assert raw_error is sdk_error is ErrorKind.CONNECTION
    assert raw == sdk == [TextDelta("one"), TextDelta(" two")]


async def test_an_error_event_in_the_stream_is_an_error_after_the_same_deltas(
    make: MakeProvider, fake: FakeLLMServer
) -> None:
    behaviour = Behaviour(text="one two three", stream_error_after_tokens=2, error_message="upstream overloaded")

    (raw, raw_error), (sdk, sdk_error) = await both(make, fake, behaviour)

    assert raw_error is sdk_error is ErrorKind.SERVER
    assert raw == sdk == [TextDelta("one"), TextDelta(" two")]


async def test_an_error_event_says_what_kind_of_error_it_is(make: MakeProvider, fake: FakeLLMServer) -> None:
    behaviour = Behaviour(text="one", stream_error_after_tokens=0, error_message="context_length_exceeded")

    (raw, raw_error), (sdk, sdk_error) = await both(make, fake, behaviour)

    assert raw_error is sdk_error is ErrorKind.CONTEXT_TOO_LONG
    assert raw == sdk == []


@pytest.mark.parametrize(
    ("status", "kind"), [(401, ErrorKind.AUTH), (429, ErrorKind.RATE_LIMIT), (503, ErrorKind.SERVER)]
)
async def test_http_errors_are_the_sdks_status_errors(
    make: MakeProvider, fake: FakeLLMServer, status: int, kind: ErrorKind
) -> None:
    fake.enqueue(Behaviour(status=status, retry_after="3"))

    with pytest.raises(ProviderError) as caught:
        await outcome_or_raise(make("raw"))

    assert caught.value.kind is kind
    assert caught.value.detail.startswith(f"HTTP {status}")
    assert caught.value.retry_after_s == 3.0
    # Raised by the SDK itself (its APIStatusError) before any byte of a stream was read.
    assert isinstance(caught.value.__cause__, make("raw").sdk.APIStatusError)


async def outcome_or_raise(provider: OpenAIStyleProvider) -> list[ProviderEvent]:
    return [event async for event in provider.stream(MESSAGES, OPTIONS)]


async def test_closing_the_raw_stream_early_closes_the_upstream_request(
    make: MakeProvider, fake: FakeLLMServer
) -> None:
    fake.enqueue(Behaviour(tokens=400, tokens_per_s=40))
    stream = make("raw").stream(MESSAGES, OPTIONS)

    assert isinstance(await anext(stream), TextDelta)
    await stream.aclose()

    assert await asyncio.to_thread(fake.abort_seen.wait, 10)
    assert fake.aborted == [len(fake.requests)]


async def test_groqs_own_error_extension_ends_the_stream(fake: FakeLLMServer) -> None:
    """Groq may stop a stream early with `x_groq.error`: the raw reader reports it (the SDK objects ignore it)."""
    behaviour = Behaviour(
        text="one two", stream_error_after_tokens=1, stream_error_style="x_groq", error_message="over"
    )
    fake.enqueue(behaviour)

    async with contextlib.aclosing(GroqProvider(TEST_API_KEY, fake.base_url, timeout_s=10)) as provider:
        received, kind = await outcome(provider)

    assert (received, kind) == ([TextDelta("one")], ErrorKind.SERVER)
