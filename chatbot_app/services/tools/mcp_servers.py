"""MCP servers as tools: their configuration, their tool lists, and calls to their tools.

The servers speak Streamable HTTP and are reached with the SDK's own `Client`. Nothing stays open between
uses: each listing and each call is one short session (for a 2026-era server, a session is a single POST
anyway), entered and left by the task that awaits it. So a cancelled call (Stop) closes its connection at
once, nothing outlives an event loop, and there is nothing to close at shutdown. Tool lists are kept per
process (one `McpClients`) for `ttl_s`.

Every connection is checked by `url_guard.check_url` and made through its `PinnedTransport`: only to the
address that was checked, and never on to another origin (the SDK follows a redirect only within the
origin; a redirect elsewhere ends the request with an error that names it).

Secrets never sit in the configuration: a server's `headers` map each header to the name of an environment
variable, read when a connection is made.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx2
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import (
    AudioContent,
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    Implementation,
    ResourceLink,
    TextContent,
    TextResourceContents,
    Tool,
)

from chatbot_app.services.tools.toolbox import ToolOutcome, cut
from chatbot_app.services.url_guard import PinnedTransport, RefusedUrl, Resolver, check_url, system_resolve

__all__ = [
    "McpClients",
    "McpServerConfig",
    "McpUnavailable",
    "ToolOutcome",
    "ToolSpec",
    "parse_mcp_servers",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: As stored for a server an admin adds (McpServerRow.url).
MAX_URL_CHARS = 2048
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
#: The `server` of a tool the provider ran on its side (Groq's search, visits and code): no MCP server's name.
PROVIDER_SERVER = "groq"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP token (RFC 9110)
_KEYS = ("name", "url", "headers", "default_on", "trusted", "enabled")
_CLIENT_INFO = Implementation(name="chatbot_app", version="1")
#: A tools/list that pages on and on is cut here rather than followed for ever.
_MAX_LIST_PAGES = 20
#: Connecting takes at most this long (or the whole timeout, when that is shorter).
_CONNECT_TIMEOUT_S = 10.0


# -- configuration -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class McpServerConfig:
    name: str
    url: str
    #: Header name -> the name of the environment variable that holds its value (read at connect time).
    headers: dict[str, str] = field(default_factory=dict)
    default_on: bool = False
    trusted: bool = False  # its tools run without asking the user, read-only or not
    enabled: bool = True


def parse_mcp_servers(text: str) -> list[McpServerConfig]:
    """The servers of CHATBOT_MCP_SERVERS (a JSON list), or ValueError saying what is wrong with it.

    A header's environment variable need not be set yet: that is found out (and said) at connect time.
    """
    if not text.strip():
        return []
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"CHATBOT_MCP_SERVERS is not valid JSON: {exc}.") from None
    if not isinstance(raw, list):
        raise ValueError('CHATBOT_MCP_SERVERS must be a JSON list of servers, like [{"name": ..., "url": ...}].')
    servers = [_parse_server(number, entry) for number, entry in enumerate(raw, start=1)]
    seen: set[str] = set()
    for server in servers:
        if server.name in seen:
            raise ValueError(f"CHATBOT_MCP_SERVERS names the server {server.name!r} twice; names must be unique.")
        seen.add(server.name)
    return servers


def _parse_server(number: int, entry: Any) -> McpServerConfig:
    where = f"CHATBOT_MCP_SERVERS, server {number}"
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: must be an object with at least a name and a url.")
    if unknown := sorted(set(entry) - set(_KEYS)):
        raise ValueError(f"{where}: unknown key {', '.join(map(repr, unknown))}; the keys are {', '.join(_KEYS)}.")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: has no name.")
    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"{where}: the name {name!r} must be 1 to 32 lower-case letters, digits, '-' or '_', "
            "starting with a letter or a digit."
        )
    if name == PROVIDER_SERVER:
        raise ValueError(f"{where}: the name {name!r} is taken by the tools {PROVIDER_SERVER} runs itself.")
    where = f"CHATBOT_MCP_SERVERS, server {name!r}"
    url = entry.get("url")
    if not isinstance(url, str) or not url:
        raise ValueError(f"{where}: has no url.")
    if len(url) > MAX_URL_CHARS:
        raise ValueError(f"{where}: the url is longer than {MAX_URL_CHARS:,} characters.")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{where}: the url {url!r} must be an http(s) URL, like https://mcp.example.com/mcp.")
    return McpServerConfig(
        name=name,
        url=url,
        headers=_parse_headers(where, entry.get("headers", {})),
        default_on=_flag(where, entry, "default_on", False),
        trusted=_flag(where, entry, "trusted", False),
        enabled=_flag(where, entry, "enabled", True),
    )


def _parse_headers(where: str, headers: Any) -> dict[str, str]:
    if not isinstance(headers, dict):
        raise ValueError(f'{where}: headers must be an object, like {{"Authorization": "WIKI_MCP_AUTH"}}.')
    for header, variable in headers.items():
        if not _HEADER_NAME.fullmatch(header):
            raise ValueError(f"{where}: {header!r} is not a header name.")
        if not isinstance(variable, str) or not _ENV_NAME.fullmatch(variable):
            raise ValueError(
                f"{where}: the header {header!r} must name the environment variable that holds its value "
                f"(like WIKI_MCP_AUTH), not {variable!r}."
            )
    return dict(headers)


def _flag(where: str, entry: dict[str, Any], key: str, default: bool) -> bool:
    value = entry.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"{where}: {key} must be true or false.")
    return value


# -- tools ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool a server offers. `read_only` is the server's own claim (its readOnlyHint), not a guarantee."""

    server: str
    name: str
    description: str
    parameters: dict[str, Any]  # the JSON schema of its arguments
    read_only: bool


class McpUnavailable(Exception):
    """A server whose tools could not be listed; the message is a sentence for the log and the admin."""


class _MissingSecret(Exception):
    """A header's environment variable is not set: the message is a sentence."""


@dataclass(frozen=True, slots=True)
class _Listing:
    tools: tuple[ToolSpec, ...]
    expires_at: float


_Key = tuple[str, str, tuple[tuple[str, str], ...]]


class McpClients:
    """Lists and calls MCP servers' tools. One per process: the tool lists it keeps are shared by every reply."""

    def __init__(
        self,
        *,
        allow_private: bool,
        ttl_s: float = 300.0,
        timeout_s: float = 60.0,
        max_result_chars: int = 20_000,
        resolve: Resolver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.allow_private = allow_private
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self.max_result_chars = max_result_chars
        self._resolve = resolve or system_resolve
        self._clock = clock
        self._listings: dict[_Key, _Listing] = {}
        #: A listing under way, which replies that need it meanwhile wait for (not one session each).
        self._in_flight: dict[_Key, asyncio.Task[tuple[ToolSpec, ...]]] = {}

    async def tools(self, server: McpServerConfig) -> list[ToolSpec]:
        """The server's tools, asked once per `ttl_s`; McpUnavailable if it cannot be listed."""
        key = (server.name, server.url, tuple(sorted(server.headers.items())))  # a changed config lists anew
        listing = self._listings.get(key)
        if listing is not None and listing.expires_at > self._clock():
            return list(listing.tools)
        task = self._in_flight.get(key)
        if task is None:
            task = self._in_flight[key] = asyncio.create_task(self._list(key, server))
            task.add_done_callback(partial(self._listed, key))
        # Shielded: a reply that is stopped while it waits does not cancel the listing the others wait for.
        return list(await asyncio.shield(task))

    def _listed(self, key: _Key, task: asyncio.Task[tuple[ToolSpec, ...]]) -> None:
        self._in_flight.pop(key, None)
        if not task.cancelled():
            task.exception()  # read: when every reply that waited has given up, nobody else will

    async def _list(self, key: _Key, server: McpServerConfig) -> tuple[ToolSpec, ...]:
        try:
            async with asyncio.timeout(self.timeout_s) as deadline:
                tools = await self._session(server, _list_tools)
        except Exception as exc:
            if isinstance(exc, TimeoutError) and deadline.expired():
                reason = f"The MCP server {server.name} did not answer within {self.timeout_s:g} s."
            else:
                reason = f"The MCP server {server.name} is unavailable. {_reason(exc)}"
            log.warning("mcp server %s: listing its tools failed: %s", server.name, reason)
            raise McpUnavailable(reason) from exc
        specs = tuple(_spec(server.name, tool) for tool in tools)
        self._listings[key] = _Listing(specs, self._clock() + self.ttl_s)
        return specs

    async def call(self, server: McpServerConfig, tool_name: str, arguments: dict[str, Any]) -> ToolOutcome:
        """Run one tool call to its end. Whatever goes wrong is an error outcome the model can explain; only
        cancellation (Stop) raises, and it closes the connection promptly."""
        try:
            async with asyncio.timeout(self.timeout_s) as deadline:
                result = await self._session(server, lambda client: client.call_tool(tool_name, arguments))
        except Exception as exc:
            tool = f"The tool {tool_name} of the MCP server {server.name}"
            if isinstance(exc, TimeoutError) and deadline.expired():
                text = f"{tool} did not answer within {self.timeout_s:g} s."
            else:
                text = f"{tool} could not be run. {_reason(exc)}"
            log.warning("mcp server %s: calling %s failed: %s", server.name, tool_name, text)
            return ToolOutcome(text, is_error=True)
        text = _text_of(result)
        if result.is_error:
            details = text or "It gave no details."
            text = f"The tool {tool_name} of the MCP server {server.name} reported an error: {details}"
        outcome = cut(text, self.max_result_chars)
        return ToolOutcome(outcome.text, is_error=bool(result.is_error), truncated=outcome.truncated)

    # -- one session ----------------------------------------------------------------------------

    async def _session(self, server: McpServerConfig, operation: Callable[[Client], Awaitable[T]]) -> T:
        """`operation` in a new session. If the server says the session is gone (it restarted between the
        handshake and the request), the request was not run, so it is tried once more in a new session."""
        checked = await check_url(server.url, allow_private=self.allow_private, resolve=self._resolve)
        headers = _header_values(server)
        for attempt in (1, 2):
            transport = _SessionWatch(PinnedTransport(checked))
            http = httpx2.AsyncClient(
                transport=transport,
                headers=headers,
                timeout=httpx2.Timeout(self.timeout_s, connect=min(_CONNECT_TIMEOUT_S, self.timeout_s)),
                follow_redirects=False,
                trust_env=False,  # no .netrc credentials or proxies from the environment
            )
            try:
                async with (
                    http,
                    Client(streamable_http_client(checked.url, http_client=http), client_info=_CLIENT_INFO) as client,
                ):
                    return await operation(client)
            except Exception:
                if attempt == 1 and transport.session_lost:
                    log.info("mcp server %s: its session was gone; trying once more in a new one", server.name)
                    continue
                raise
        raise AssertionError("unreachable")


class _SessionWatch(httpx2.AsyncBaseTransport):
    """Notes the spec's sign that a server forgot its session: 404 to a request that carries its id."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self._inner = inner
        self.session_lost = False

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        if response.status_code == 404 and "mcp-session-id" in request.headers:
            self.session_lost = True
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


async def _list_tools(client: Client) -> list[Tool]:
    tools: list[Tool] = []
    cursor: str | None = None
    for _ in range(_MAX_LIST_PAGES):
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


def _spec(server: str, tool: Tool) -> ToolSpec:
    read_only = bool(tool.annotations and tool.annotations.read_only_hint)
    return ToolSpec(server, tool.name, tool.description or "", dict(tool.input_schema), read_only)


def _header_values(server: McpServerConfig) -> dict[str, str]:
    values = {}
    for header, variable in server.headers.items():
        value = os.environ.get(variable)
        if value is None:
            raise _MissingSecret(
                f"It needs the environment variable {variable} for its {header} header, which is not set."
            )
        values[header] = value
    return values


# -- what the model reads --------------------------------------------------------------------------


def _text_of(result: CallToolResult) -> str:
    """The result's text items joined; anything else described in a few words (the model cannot see it)."""
    parts = [_describe(item) for item in result.content]
    if not parts and result.structured_content is not None:
        parts = [json.dumps(result.structured_content, ensure_ascii=False)]
    return "\n".join(parts)


def _describe(item: object) -> str:
    if isinstance(item, TextContent):
        return item.text
    if isinstance(item, ImageContent):
        return f"[An image ({item.mime_type}), not shown here.]"
    if isinstance(item, AudioContent):
        return f"[An audio clip ({item.mime_type}), not shown here.]"
    if isinstance(item, EmbeddedResource):
        resource = item.resource
        if isinstance(resource, TextResourceContents):
            return resource.text
        return f"[A file {resource.uri} ({resource.mime_type or 'binary'}), not shown here.]"
    if isinstance(item, ResourceLink):
        return f"[A link to {item.uri}.]"
    return f"[Content of the type {getattr(item, 'type', 'unknown')}, not shown here.]"


def _reason(exc: BaseException) -> str:
    """A sentence for why a session failed, from the first failure that says something (anyio groups them)."""
    leaves = _leaves(exc)
    for leaf in leaves:
        if isinstance(leaf, RefusedUrl | _MissingSecret):
            return str(leaf)
        if isinstance(leaf, httpx2.ConnectError):
            if "CERTIFICATE_VERIFY_FAILED" in str(leaf):
                return "Its TLS certificate could not be verified."
            return "It could not be reached."
        if isinstance(leaf, httpx2.TimeoutException):
            return "It stopped answering."
        if isinstance(leaf, httpx2.TransportError):
            return "The connection to it failed."
        if isinstance(leaf, MCPError):
            return f"It answered with an error: {leaf.message.rstrip('.')}."
    return f"It failed unexpectedly ({type(leaves[0]).__name__})."


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]
