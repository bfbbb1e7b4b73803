"""A client's own tools through /v1: the `openai` SDK's tool loop and the `llm` CLI's, against the API in this
process with the fake Groq server behind it.

The client offers its functions, the model (the fake: "call <name> <json>" in the user's message) calls them,
the client runs them and sends the results back as `tool` messages, and the model answers with them.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
import uvicorn

from chatbot_app.api import create_api
from chatbot_app.api.schemas import MAX_TOOLS, MAX_TOOLS_BYTES
from tests.conftest import TEST_API_KEY, migrate, services_from_environment
from tests.fakes.fake_llm_server import FakeLLMServer

KEY = "test-key-tools-" + "t" * 24
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city now.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ASK = 'What is the weather like?\ncall get_weather {"city": "Oslo"}\ncall get_weather {"city": "Lima"}'
ANSWER = "Tool results: Sunny in Oslo, 21 degrees | Sunny in Lima, 21 degrees"


def get_weather(city: str) -> str:
    """The client's own function, run by the client between the two requests."""
    return f"Sunny in {city}, 21 degrees"


@pytest.fixture
def api_environment(monkeypatch: pytest.MonkeyPatch, fake: FakeLLMServer, tmp_path: Path) -> Iterator[None]:
    """The process-wide settings and services, from an environment whose default provider is the fake."""
    database_url = f"sqlite:///{tmp_path / 'v1.db'}"
    migrate(database_url)
    environment = {
        "GROQ_API_KEY": TEST_API_KEY,
        "GROQ_BASE_URL": fake.base_url,
        "CHATBOT_MODEL": "fake-large",
        "CHATBOT_LOCAL_MODEL": "off",
        "CHATBOT_DATABASE_URL": database_url,
        "CHATBOT_API_KEYS": KEY,
        "OPENAI_API_KEY": "",
        "OPENAI_BASE_URL": "",
        "REFLEX_REDIS_URL": "",
        "CHATBOT_REDIS_URL": "",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with services_from_environment():
        yield


@pytest.fixture
async def http(api_environment: None) -> AsyncIterator[httpx2.AsyncClient]:
    transport = httpx2.ASGITransport(app=create_api())
    async with httpx2.AsyncClient(
        transport=transport, base_url="http://backend", headers={"Authorization": f"Bearer {KEY}"}, timeout=30
    ) as client:
        yield client


@pytest.fixture
async def client(http: httpx2.AsyncClient) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url="http://backend/v1", api_key=KEY, max_retries=0, http_client=http) as sdk:
        yield sdk


def run_calls(calls: list[Any]) -> list[dict[str, Any]]:
    """What the client does with the model's calls: run each function, and answer each call with its result."""
    functions = {"get_weather": get_weather}
    return [
        {
            "role": "tool",
            "tool_call_id": call.id,
            "content": functions[call.function.name](**json.loads(call.function.arguments)),
        }
        for call in calls
    ]


def assert_the_results_went_back(fake: FakeLLMServer, calls: list[Any]) -> None:
    """The second request carried the assistant's calls and the results, in OpenAI's shape, and only the
    client's tools (none of the app's own)."""
    first, second = (r.body for r in fake.chat_requests())
    assert first["tools"] == second["tools"] == [WEATHER]
    sent = second["messages"]
    assert sent[1]["role"] == "assistant" and sent[1]["content"] is None
    assert sent[1]["tool_calls"] == [
        {"id": c.id, "type": "function", "function": {"name": "get_weather", "arguments": c.function.arguments}}
        for c in calls
    ]
    assert sent[2:] == [
        {"role": "tool", "tool_call_id": calls[0].id, "content": "Sunny in Oslo, 21 degrees"},
        {"role": "tool", "tool_call_id": calls[1].id, "content": "Sunny in Lima, 21 degrees"},
    ]


async def test_the_openai_sdks_tool_loop_with_whole_answers(client: openai.AsyncOpenAI, fake: FakeLLMServer) -> None:
    messages: list[Any] = [{"role": "user", "content": ASK}]

    first = await client.chat.completions.create(model="fake-large", messages=messages, tools=[WEATHER])

    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls or []
    assert [(c.type, c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("function", "get_weather", {"city": "Oslo"}),
        ("function", "get_weather", {"city": "Lima"}),
    ]
    assert len({c.id for c in calls}) == 2
    messages += [choice.message, *run_calls(calls)]

    final = await client.chat.completions.create(model="fake-large", messages=messages, tools=[WEATHER])

    assert final.choices[0].message.content == ANSWER
    assert final.choices[0].finish_reason == "stop"
    assert not final.choices[0].message.tool_calls
    assert_the_results_went_back(fake, calls)


async def test_the_openai_sdks_tool_loop_streamed(client: openai.AsyncOpenAI, fake: FakeLLMServer) -> None:
    messages: list[Any] = [{"role": "user", "content": ASK}]

    # The SDK's own stream helper puts the calls together from the deltas.
    async with client.chat.completions.stream(model="fake-large", messages=messages, tools=[WEATHER]) as stream:
        async for _ in stream:
            pass
        first = await stream.get_final_completion()

    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert [json.loads(c.function.arguments) for c in calls] == [{"city": "Oslo"}, {"city": "Lima"}]
    messages += [choice.message, *run_calls(calls)]

    chunks = [
        chunk
        async for chunk in await client.chat.completions.create(
            model="fake-large", messages=messages, tools=[WEATHER], stream=True
        )
    ]

    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert_the_results_went_back(fake, calls)


async def test_streamed_calls_are_in_openais_chunk_shape(http: httpx2.AsyncClient, fake: FakeLLMServer) -> None:
    body = {
        "model": "fake-large",
        "messages": [{"role": "user", "content": ASK}],
        "tools": [WEATHER],
        "stream": True,
        "stream_options": {"include_usage": True},
    }

    response = await http.post("/v1/chat/completions", json=body)

    assert response.status_code == 200
    data = [line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    deltas = [c["choices"][0] for c in chunks if c["choices"]]
    called = [d["delta"]["tool_calls"] for d in deltas if "tool_calls" in d["delta"]]
    assert [[{**call, "id": "?"} for call in calls] for calls in called] == [
        [
            {
                "index": 0,
                "id": "?",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
            }
        ],
        [
            {
                "index": 1,
                "id": "?",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Lima"}'},
            }
        ],
    ]
    assert all(calls[0]["id"].startswith("call_") for calls in called)
    assert deltas[-1] == {"index": 0, "delta": {}, "finish_reason": "tool_calls", "logprobs": None}
    assert chunks[-1]["usage"]["completion_tokens"] > 0


async def test_the_clients_tool_choice_and_parallelism_go_to_the_model(
    client: openai.AsyncOpenAI, fake: FakeLLMServer
) -> None:
    choice = {"type": "function", "function": {"name": "get_weather"}}

    await client.chat.completions.create(
        model="fake-large",
        messages=[{"role": "user", "content": "Weather?"}],
        tools=[WEATHER],
        tool_choice=choice,  # type: ignore[arg-type]
        parallel_tool_calls=False,
    )
    await client.chat.completions.create(model="fake-large", messages=[{"role": "user", "content": "Hi"}])

    offered, plain = (r.body for r in fake.chat_requests())
    assert (offered["tool_choice"], offered["parallel_tool_calls"]) == (choice, False)
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & plain.keys()


TOO_BIG = {"type": "function", "function": {"name": "big", "description": "x" * MAX_TOOLS_BYTES}}


@pytest.mark.parametrize(
    ("change", "param", "words"),
    [
        ({"tools": "get_weather"}, "tools", "must be a list"),
        ({"tools": [WEATHER, 7]}, "tools", "must be a list"),
        ({"tools": [{"function": WEATHER["function"]}]}, "tools", 'each with a "type"'),
        ({"tools": [WEATHER] * (MAX_TOOLS + 1)}, "tools", f"at most {MAX_TOOLS}"),
        ({"tools": [TOO_BIG]}, "tools", "64 kB"),
        ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice", "tool_choice must be"),
        ({"tools": [WEATHER], "tool_choice": 1}, "tool_choice", "tool_choice must be"),
        ({"tools": [WEATHER], "parallel_tool_calls": "yes"}, "parallel_tool_calls", "true or false"),
        (
            {"messages": [{"role": "user", "content": "Hi"}, {"role": "tool", "content": "Sunny"}]},
            "messages",
            "messages[1]: a tool message needs the tool_call_id",
        ),
    ],
)
async def test_bad_tool_input_is_a_400_and_nothing_is_sent(
    http: httpx2.AsyncClient, fake: FakeLLMServer, change: dict[str, Any], param: str, words: str
) -> None:
    body = {"model": "fake-large", "messages": [{"role": "user", "content": "Weather?"}]} | change

    response = await http.post("/v1/chat/completions", json=body)

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, "invalid_request")
    assert words in error["message"]
    assert fake.chat_requests() == []


@pytest.fixture
async def served(api_environment: None) -> AsyncIterator[str]:
    """The API on a loopback port, served from this test's event loop (for a client in another process)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_api(), host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the API did not start"
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def test_the_llm_clis_tool_loop(served: str, fake: FakeLLMServer, tmp_path: Path) -> None:
    llm = Path(sys.executable).with_name("llm")
    if not llm.exists():
        pytest.skip("the llm CLI is not installed")
    home = tmp_path / "llm"
    home.mkdir()
    (home / "extra-openai-models.yaml").write_text(
        f"- model_id: chatbot\n  model_name: fake-large\n  api_base: {served}/v1\n"
        "  api_key_name: chatbot\n  supports_tools: true\n"
    )
    (home / "keys.json").write_text(json.dumps({"chatbot": KEY}))
    functions = (
        "def get_weather(city: str) -> str:\n"
        '    """The weather in a city now."""\n'
        '    return f"Sunny in {city}, 21 degrees"\n'
    )

    process = await asyncio.create_subprocess_exec(
        str(llm),
        "-m",
        "chatbot",
        "--no-log",
        "--functions",
        functions,
        ASK,
        env=os.environ | {"LLM_USER_PATH": str(home)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)

    assert process.returncode == 0, err.decode()
    assert out.decode().strip() == ANSWER
    first, second = (r.body for r in fake.chat_requests())
    assert [t["function"]["name"] for t in first["tools"]] == ["get_weather"]
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "tool", "tool"]
