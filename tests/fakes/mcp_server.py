"""A real MCP server (the SDK's MCPServer over Streamable HTTP) on loopback, for tests.

It runs in a thread of the test process, like the fake LLM server, so a test can read what it was sent.
Its tools: `lookup` (read-only, a fixed fact per key), `write_note` (not read-only: a model needs the user's
approval), `slow` (read-only, sleeps), `broken` (raises) and `huge` (about 200,000 characters).

`restart()` stops the server and starts a new one on the same port: every session the old one held is gone,
as after a real restart. With `legacy=True` it answers as a 2025-era server does, which knows no
`server/discover` and keeps sessions (`mcp-session-id`); the SDK client then falls back to `initialize`.
`lose_next_session()` makes it forget the next session it sees (or the next `times` sessions), as a server that
restarted just after the handshake does: from then on each request of that session gets 404 with the SDK's
"Session not found" body.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import ToolAnnotations
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tests.e2e.live_app import free_port

#: A name tests resolve to 127.0.0.1 with a resolver double; the server accepts it as a Host header.
TEST_HOST = "mcp.example.test"
FACTS = {"capital-of-france": "Paris", "boiling-point-of-water": "100 °C at sea level"}
HUGE_CHARS = 200_000


@dataclass(frozen=True, slots=True)
class McpRequest:
    """One HTTP request the server got: its JSON-RPC method (None for a GET or DELETE) and headers."""

    http_method: str
    rpc_method: str | None
    headers: dict[str, str]


@dataclass
class FakeMcpServer:
    host: str = "127.0.0.1"
    port: int = 0
    legacy: bool = False
    requests: list[McpRequest] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what write_note wrote
    # While set to an event not yet set, a `tools/list` request waits for it at the server (a listing under way).
    list_gate: threading.Event | None = None
    _sessions_to_lose: int = 0
    _lost_sessions: set[str] = field(default_factory=set)
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/mcp"

    @property
    def running(self) -> bool:
        return self._server is not None

    def rpc_methods(self) -> list[str]:
        return [request.rpc_method for request in self.requests if request.rpc_method]

    def reset(self) -> None:
        self.requests.clear()
        self.notes.clear()
        self._sessions_to_lose = 0
        self._lost_sessions.clear()
        self.list_gate = None

    def lose_next_session(self, times: int = 1) -> None:
        self._sessions_to_lose = times

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> FakeMcpServer:
        self.port = self.port or free_port()
        app = _Recorder(self, self._mcp().streamable_http_app(transport_security=_security()))
        # A stop does not wait for a slow tool's open request: a restart is meant to cut it.
        config = uvicorn.Config(app, host=self.host, port=self.port, log_level="critical", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="fake-mcp-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake MCP server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def restart(self) -> None:
        """A new server on the same port, with a new session manager: every old session is gone."""
        self.stop()
        self.start()

    # -- the MCP server -----------------------------------------------------------------------

    def _mcp(self) -> MCPServer:
        mcp = MCPServer("fake-mcp", log_level="WARNING")
        read_only = ToolAnnotations(readOnlyHint=True)

        @mcp.tool(annotations=read_only)
        def lookup(key: str) -> str:
            """Look up a fact by its key, e.g. capital-of-france."""
            return FACTS.get(key, f"No fact is known for {key!r}.")

        @mcp.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False))
        def write_note(text: str) -> str:
            """Write a note for later."""
            self.notes.append(text)
            return f"Noted ({len(self.notes)} notes)."

        @mcp.tool(annotations=read_only)
        async def slow(seconds: float) -> str:
            """Wait this many seconds, then answer."""
            await asyncio.sleep(seconds)
            return f"Waited {seconds:g} s."

        @mcp.tool(annotations=read_only)
        def broken() -> str:
            """Always fails."""
            raise RuntimeError("the broken tool broke")

        @mcp.tool(annotations=read_only)
        def huge() -> str:
            """A very long answer."""
            line = "All work and no play makes Jack a dull boy.\n"
            return (line * (HUGE_CHARS // len(line) + 1))[:HUGE_CHARS]

        return mcp


def _security() -> TransportSecuritySettings:
    """The SDK's DNS-rebinding protection for loopback, with the test name allowed as well."""
    hosts = ["127.0.0.1", "localhost", "[::1]", TEST_HOST]
    return TransportSecuritySettings(
        allowed_hosts=[f"{host}:*" for host in hosts], allowed_origins=[f"http://{host}:*" for host in hosts]
    )


class _Recorder:
    """ASGI middleware: records each request, and plays a legacy server or a lost session when asked."""

    def __init__(self, fake: FakeMcpServer, app: ASGIApp) -> None:
        self.fake, self.app = fake, app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = b""
        while True:  # the body is read here, then replayed to the app
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
        self.fake.requests.append(McpRequest(scope["method"], _rpc_method(body), headers))
        if (gate := self.fake.list_gate) is not None and _rpc_method(body) == "tools/list":
            await asyncio.to_thread(gate.wait, 30)
        if reply := self._scripted_reply(headers):
            status, error = reply
            await _json_error(send, status, error)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: the disconnect, when the client goes
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def _scripted_reply(self, headers: dict[str, str]) -> tuple[int, str] | None:
        version = headers.get("mcp-protocol-version")
        if self.fake.legacy and version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS:
            return 400, "Bad Request: Missing session ID"  # what a 2025-era server says to server/discover
        session = headers.get("mcp-session-id")
        if session is not None and session not in self.fake._lost_sessions and self.fake._sessions_to_lose:
            self.fake._sessions_to_lose -= 1
            self.fake._lost_sessions.add(session)
        if session in self.fake._lost_sessions:
            return 404, "Session not found"
        return None


def _rpc_method(body: bytes) -> str | None:
    try:
        message = json.loads(body)
    except ValueError:
        return None
    return message.get("method") if isinstance(message, dict) else None


async def _json_error(send: Send, status: int, message: str) -> None:
    """A JSON-RPC error without a request id, as the SDK's session manager answers."""
    payload: dict[str, Any] = {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": message}}
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":  # a manual server: python -m tests.fakes.mcp_server
    server = FakeMcpServer(port=8020).start()
    print(f"fake MCP server on {server.url}", flush=True)
    threading.Event().wait()
