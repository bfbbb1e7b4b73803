"""Tools through the REST API (a backend process, the fake Groq server, the real MCP server on loopback): the
conversation's tools set by the body, `event: tool` in the stream, and approval by its owner only."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.live_app import Backend
from tests.fakes.fake_llm_server import FakeLLMServer
from tests.fakes.mcp_server import FakeMcpServer
from tests.integration.test_api import KEY_A, KEY_B, _start_backend, parse_sse


@pytest.fixture(scope="module")
def backend(
    tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLMServer, mcp_server: FakeMcpServer
) -> Iterator[Backend]:
    backend = _start_backend(
        tmp_path_factory.mktemp("tools_api"),
        fake_llm,
        CHATBOT_API_KEYS=f"{KEY_A}, {KEY_B}",
        CHATBOT_TOOL_MODELS="fake-large",
        CHATBOT_MCP_SERVERS=json.dumps([{"name": "facts", "url": mcp_server.url}]),  # off unless turned on
        CHATBOT_MCP_ALLOW_PRIVATE="true",
    )
    try:
        yield backend
    finally:
        backend.stop()


@pytest.fixture
def clients(backend: Backend, fake: FakeLLMServer, mcp_fake: FakeMcpServer) -> Iterator[tuple[httpx.Client, ...]]:
    with (
        httpx.Client(base_url=backend.url, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30) as a,
        httpx.Client(base_url=backend.url, headers={"Authorization": f"Bearer {KEY_B}"}, timeout=30) as b,
    ):
        yield a, b


def offered(fake: FakeLLMServer) -> set[str]:
    return {tool["function"]["name"] for tool in fake.chat_requests()[-1].body.get("tools", []) if "function" in tool}


def test_the_body_turns_a_servers_tools_on_and_the_stream_carries_each_call_and_its_approval(
    clients: tuple[httpx.Client, httpx.Client], fake: FakeLLMServer, mcp_fake: FakeMcpServer
) -> None:
    owner, stranger = clients
    off = owner.post("/api/chat_batch", json={"message": "Hello"})
    assert off.status_code == 200 and offered(fake) == {"search_files"}  # the server is off by default

    body = {"message": 'call facts__write_note {"text": "from the API"}', "mcp_servers": ["facts"]}
    with owner.stream("POST", "/api/chat", json=body, headers={"Accept": "text/event-stream"}) as response:
        lines = []
        for line in response.iter_lines():
            lines.append(line)
            if line.startswith("data:") and '"awaiting-approval"' in line:
                waiting = json.loads(line.removeprefix("data:"))
                path = f"/api/replies/{waiting['message_id']}/tool_calls/{waiting['call_id']}"
                assert stranger.post(path, json={"approve": True}).status_code == 404  # not theirs
                assert owner.post(path, json={"approve": "yes"}).status_code == 422
                assert owner.post(path, json={"approve": True}).status_code == 204
                assert owner.post(path, json={"approve": True}).status_code == 404  # answered already
        events = parse_sse("\n".join(lines) + "\n\n")

    tools = [data for event, data in events if event == "tool"]
    assert [t["status"] for t in tools] == ["awaiting-approval", "running", "done"]
    assert tools[-1]["name"] == "facts__write_note" and tools[-1]["server"] == "facts"
    assert mcp_fake.notes == ["from the API"]
    assert events[-1][0] == "done" and events[-1][1]["status"] == "complete"
    assert tools[0]["message_id"] == events[-1][1]["message_id"]
    assert "facts__write_note" in offered(fake)  # the body turned the server on for this conversation


def test_bad_tool_settings_in_the_body_are_refused_before_anything_is_sent(
    clients: tuple[httpx.Client, httpx.Client], fake: FakeLLMServer
) -> None:
    owner, _ = clients
    for bad in ({"web_search": "on"}, {"mcp_servers": "facts"}, {"mcp_servers": ["a,b"]}, {"mcp_servers": [""]}):
        response = owner.post("/api/chat_batch", json={"message": "Hi", **bad})
        assert response.status_code == 422, bad
    assert fake.chat_requests() == []
