"""Function calls and Groq's executed tools through the real `groq` and `openai` SDK providers.

The fake server streams calls as Groq and OpenAI do (the id and name first, the arguments in pieces, several
calls in one turn by index) and compound models' `executed_tools` (each tool twice: started, then done).
Every case runs through both stream readers: the raw one over each HTTP transport, the SDK's objects over httpx.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence

import pytest

from chatbot_app.providers.base import (
    ChatMessage,
    ChatProvider,
    Completion,
    ExecutedTool,
    GenerationOptions,
    ProviderEvent,
    TextDelta,
    ToolCall,
    Usage,
)
from chatbot_app.providers.openai_style import OpenAIStyleProvider
from tests.fakes.fake_llm_server import COMPOUND_MODELS, FAKE_SEARCH_RESULTS, Behaviour, FakeLLMServer
from tests.integration.test_stream_parsers import provider_of

SEARCH_FILES = {
    "type": "function",
    "function": {
        "name": "search_files",
        "description": "Search the user's files.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    },
}
GET_TIME = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}}},
}
TOOLS = GenerationOptions(model="fake-large", tools=(SEARCH_FILES, GET_TIME))
ASK = [ChatMessage("user", "Find my notes on whales and tell me the time.")]
SEARCH_ARGUMENTS = '{"query": "blue whale", "limit": 3}'
TIME_ARGUMENTS = '{"zone": "UTC"}'


@pytest.fixture(
    params=[
        "groq-raw-aiohttp",
        "groq-raw-httpx",
        "groq-sdk-httpx",
        "openai-raw-aiohttp",
        "openai-raw-httpx",
        "openai-sdk-httpx",
    ]
)
async def provider(request: pytest.FixtureRequest, fake: FakeLLMServer) -> AsyncIterator[OpenAIStyleProvider]:
    sdk, parser, transport = request.param.split("-")
    made = provider_of(sdk, fake, parser, transport)  # type: ignore[arg-type]
    yield made
    await made.aclose()


async def events_of(
    provider: ChatProvider, messages: Sequence[ChatMessage] = ASK, options: GenerationOptions = TOOLS
) -> list[ProviderEvent]:
    return [event async for event in provider.stream(messages, options)]


def calls_in(events: list[ProviderEvent]) -> list[ToolCall]:
    return [e for e in events if isinstance(e, ToolCall)]


async def test_split_arguments_are_put_together_and_two_calls_come_in_order_before_the_usage(
    provider: OpenAIStyleProvider, fake: FakeLLMServer
) -> None:
    fake.enqueue(Behaviour(text="Let me look.", tool_calls=[("search_files", SEARCH_ARGUMENTS), ("get_time", "{}")]))

    events = await events_of(provider)

    number = len(fake.requests)
    assert calls_in(events) == [
        ToolCall(f"call_{number}_0", "search_files", SEARCH_ARGUMENTS),
        ToolCall(f"call_{number}_1", "get_time", "{}"),
    ]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Let me look."
    # The text, then the calls once the turn is over, then the usage last.
    kinds = [type(e) for e in events]
    assert kinds[-3:] == [ToolCall, ToolCall, Usage]
    assert max(i for i, kind in enumerate(kinds) if kind is TextDelta) < kinds.index(ToolCall)
    usage = events[-1]
    assert isinstance(usage, Usage)
    assert usage.completion_tokens == 3 + 3 + 2  # three words, and the pieces the arguments came in: 3 and 2


async def test_the_tools_offered_go_to_the_server_and_none_when_none_are_offered(
    provider: OpenAIStyleProvider, fake: FakeLLMServer
) -> None:
    choice = {"type": "function", "function": {"name": "get_time"}}
    options = GenerationOptions(model="fake-large", tools=(GET_TIME,), tool_choice=choice, parallel_tool_calls=False)
    await events_of(provider, options=options)
    await events_of(provider, options=GenerationOptions(model="fake-large", tool_choice="auto"))

    offered, plain = (r.body for r in fake.chat_requests())
    assert (offered["tools"], offered["tool_choice"], offered["parallel_tool_calls"]) == ([GET_TIME], choice, False)
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & plain.keys()


async def test_the_fakes_model_calls_what_the_user_asks_it_to(
    provider: OpenAIStyleProvider, fake: FakeLLMServer
) -> None:
    asked = [ChatMessage("user", f"call search_files {SEARCH_ARGUMENTS}\nand then call get_time {TIME_ARGUMENTS}")]

    events = await events_of(provider, asked)

    assert [(c.name, c.arguments) for c in calls_in(events)] == [
        ("search_files", SEARCH_ARGUMENTS),
        ("get_time", TIME_ARGUMENTS),
    ]
    assert not any(isinstance(e, TextDelta) and e.text for e in events)
    # Without tools offered, the same words are only words.
    plain = await events_of(provider, asked, GenerationOptions(model="fake-large"))
    assert calls_in(plain) == []


async def test_tool_results_go_back_in_openais_shape_and_reach_the_model(
    provider: OpenAIStyleProvider, fake: FakeLLMServer
) -> None:
    calls = (ToolCall("call_a", "search_files", SEARCH_ARGUMENTS), ToolCall("call_b", "get_time", TIME_ARGUMENTS))
    messages = [
        *ASK,
        ChatMessage("assistant", "", tool_calls=calls),
        ChatMessage("tool", "whales.md: blue whales are the largest animals", tool_call_id="call_a"),
        ChatMessage("tool", "12:00 UTC", tool_call_id="call_b"),
    ]

    events = await events_of(provider, messages)

    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == "Tool results: whales.md: blue whales are the largest animals | 12:00 UTC"
    assert calls_in(events) == []
    sent = fake.chat_requests()[-1].body["messages"]
    assert sent[1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "search_files", "arguments": SEARCH_ARGUMENTS},
                },
                {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": TIME_ARGUMENTS}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "whales.md: blue whales are the largest animals"},
        {"role": "tool", "tool_call_id": "call_b", "content": "12:00 UTC"},
    ]


async def test_a_compound_models_tools_come_once_each_with_their_sources(
    provider: OpenAIStyleProvider, fake: FakeLLMServer
) -> None:
    fake.compound_models = COMPOUND_MODELS
    assert set(COMPOUND_MODELS) <= set(await provider.list_models())
    question = [ChatMessage("user", "Who won the match yesterday?")]

    events = await events_of(provider, question, GenerationOptions(model="groq/compound"))

    executed = [e for e in events if isinstance(e, ExecutedTool)]
    assert len(executed) == 1  # streamed twice (started, done): reported once, with its output
    search = executed[0]
    assert search.name == "search"
    assert json.loads(search.arguments) == {"query": "Who won the match yesterday?"}
    assert "https://example.com/one" in search.output
    assert search.sources == FAKE_SEARCH_RESULTS
    assert events.index(search) < next(i for i, e in enumerate(events) if isinstance(e, TextDelta) and e.text)
    assert isinstance(events[-1], Usage)


async def test_several_executed_tools_keep_their_order_and_one_without_output_still_comes(
    provider: OpenAIStyleProvider, fake: FakeLLMServer
) -> None:
    fake.compound_models = COMPOUND_MODELS
    ran = [
        {"type": "visit", "arguments": '{"url": "https://example.com/a"}', "output": "Page A"},
        {"type": "python", "arguments": '{"code": "print(6 * 7)"}', "output": "42\n"},
        {"type": "search", "arguments": '{"query": "q"}'},  # no output: never "done"
    ]
    fake.enqueue(Behaviour(text="Done.", executed_tools=ran))

    events = await events_of(provider, ASK, GenerationOptions(model="groq/compound-mini"))

    executed = [e for e in events if isinstance(e, ExecutedTool)]
    assert executed == [
        ExecutedTool("visit", '{"url": "https://example.com/a"}', "Page A"),
        ExecutedTool("python", '{"code": "print(6 * 7)"}', "42\n"),
        ExecutedTool("search", '{"query": "q"}', ""),
    ]


async def test_a_compound_model_told_to_leave_the_web_alone_searches_nothing(
    provider: OpenAIStyleProvider, fake: FakeLLMServer
) -> None:
    fake.compound_models = COMPOUND_MODELS
    offline = GenerationOptions(model="groq/compound", compound_tools=("code_interpreter",))

    events = await events_of(provider, ASK, offline)

    body = fake.chat_requests()[-1].body
    assert body["compound_custom"] == {"tools": {"enabled_tools": ["code_interpreter"]}}
    assert not [e for e in events if isinstance(e, ExecutedTool)]
    await events_of(provider, ASK, GenerationOptions(model="groq/compound"))
    assert "compound_custom" not in fake.chat_requests()[-1].body  # Groq's default: every tool


#: Model list entries that say the model calls tools, as OpenAI-compatible servers put it.
SAYS_IT_CALLS_TOOLS = {
    "fake-large": {"supported_parameters": ["temperature", "tools", "tool_choice"]},
    "fake-small": {"capabilities": {"function_calling": True, "vision": False}},
    "groq/compound": {"capabilities": ["completion", "tools"]},
    "groq/compound-mini": {"capabilities": {"tools": True}},
}
#: Entries whose fields look alike but say nothing (the wrong type, or not true): never taken for a yes.
SAYS_NOTHING = {
    "fake-large": {"supported_parameters": "tools", "capabilities": {"tools": "yes", "function_calling": 1}},
    "fake-small": {"supported_parameters": {"tools": True}, "capabilities": "function_calling"},
    "groq/compound": {"supported_parameters": [["tools"], None, 7], "capabilities": [{"tools": True}]},
    "groq/compound-mini": {"supported_parameters": None, "capabilities": {"tools": {"enabled": True}}},
}


@pytest.mark.parametrize(
    ("fields", "known"), [({}, set()), (SAYS_IT_CALLS_TOOLS, set(SAYS_IT_CALLS_TOOLS)), (SAYS_NOTHING, set())]
)
async def test_the_model_list_tells_which_models_call_tools(
    provider: OpenAIStyleProvider, fake: FakeLLMServer, fields: dict[str, dict[str, object]], known: set[str]
) -> None:
    fake.compound_models = COMPOUND_MODELS
    fake.model_fields = fields
    assert provider.catalog_tool_models == frozenset()  # nothing known before the list is read

    models = await provider.list_models()

    assert set(models) == {"fake-large", "fake-small", *COMPOUND_MODELS}
    assert provider.catalog_tool_models == known


async def test_a_whole_completion_returns_its_tool_calls(provider: OpenAIStyleProvider, fake: FakeLLMServer) -> None:
    fake.enqueue(Behaviour(tool_calls=[("search_files", SEARCH_ARGUMENTS), ("get_time", TIME_ARGUMENTS)]))

    completion = await provider.complete(ASK, TOOLS)

    number = len(fake.requests)
    assert completion.text == ""
    assert completion.tool_calls == (
        ToolCall(f"call_{number}_0", "search_files", SEARCH_ARGUMENTS),
        ToolCall(f"call_{number}_1", "get_time", TIME_ARGUMENTS),
    )
    assert fake.chat_requests()[-1].body["tools"] == [SEARCH_FILES, GET_TIME]
    assert (await provider.complete(ASK, GenerationOptions(model="fake-large"))).tool_calls == ()


async def test_a_completion_derived_from_a_stream_collects_its_tool_calls() -> None:
    call = ToolCall("call_1", "get_time", "{}")

    class Scripted(ChatProvider):
        name, label = "scripted", "Scripted"

        async def stream(
            self, messages: Sequence[ChatMessage], options: GenerationOptions
        ) -> AsyncIterator[ProviderEvent]:
            for event in (TextDelta("One moment."), call, Usage(3, 4)):
                yield event

        async def list_models(self) -> list[str]:
            return ["scripted"]

    completion = await Scripted().complete(ASK, TOOLS)

    assert completion == Completion("One moment.", Usage(3, 4), (call,))
