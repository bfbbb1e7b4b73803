"""Which tools a reply gets: from the model, the conversation's switches and the servers configured.

- Function tools (search in files, MCP servers' tools) go to models known to call functions: those the
  provider's model list says call tools (where it says so), and CHATBOT_TOOL_MODELS; any other model, the
  local one included, gets none, and the page says why.
- With a conversation's Web search on, a Groq model that has them gets Groq's built-in browser search
  (and code interpreter): CHATBOT_BROWSER_SEARCH_MODELS, CHATBOT_CODE_INTERPRETER_MODELS. Groq's compound
  systems search the web on their own: with Web search off they are allowed only their code interpreter.
- MCP servers come from CHATBOT_MCP_SERVERS and from /admin. A conversation turns each on or off;
  unset, the servers marked `default_on` are on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from chatbot_app.config import Settings
from chatbot_app.providers import ProviderRegistry
from chatbot_app.providers.base import ChatProvider, ProviderError
from chatbot_app.services.tools.mcp_servers import McpClients, McpServerConfig, McpUnavailable, parse_mcp_servers
from chatbot_app.services.tools.search_files import search_files_tool
from chatbot_app.services.tools.toolbox import Tool, Toolbox, ToolOutcome
from chatbot_app.storage import mcp_servers as mcp_store
from chatbot_app.storage.database import Database

log = logging.getLogger(__name__)

#: The name a model sees for an MCP tool: "<server>__<tool>", within the 64 characters providers accept.
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
#: A reply waits this long at most for a server's tool list (it is then taken for down).
LIST_TIMEOUT_S = 5.0
#: A server whose tools could not be listed is not asked again for this long (its replies go on without it).
DOWN_RETRY_S = 30.0
NOT_A_TOOL_MODEL = "{model} does not call tools. Models that do: {models}."
NO_WEB_SEARCH = "{model} has no web search. Models with it: {models}."
#: The reasons name this many models at most (a line under the composer, also on a phone).
NAMED_MODELS = 3
#: What a Groq compound system may run with the conversation's Web search off: none of its web tools.
COMPOUND_TOOLS_OFFLINE = ("code_interpreter",)


@dataclass(frozen=True, slots=True)
class ToolAvailability:
    """What the page's switches say for a model: whether each kind of tool can be used, and why not."""

    functions: bool
    web_search: bool
    reason: str = ""


class ToolCatalog:
    def __init__(
        self, settings: Settings, db: Database, clients: McpClients, providers: ProviderRegistry | None = None
    ) -> None:
        self.settings = settings
        self._db = db
        self.clients = clients
        self._providers = providers
        self._configured = parse_mcp_servers(settings.mcp_servers) if settings.mcp_servers.strip() else []
        self._down_until: dict[str, float] = {}

    # -- servers ------------------------------------------------------------------------------

    def is_configured(self, name: str) -> bool:
        """Whether the server comes from CHATBOT_MCP_SERVERS (then only the environment changes it)."""
        return any(server.name == name for server in self._configured)

    async def servers(self) -> list[McpServerConfig]:
        """Every MCP server: the environment's, then the admins' (a name in both is the environment's)."""
        rows = await self._db.run(mcp_store.all_servers)
        names = {server.name for server in self._configured}
        added = [
            McpServerConfig(
                name=row.name,
                url=row.url,
                headers=json.loads(row.headers or "{}"),
                default_on=row.default_on,
                trusted=row.trusted,
                enabled=row.enabled,
            )
            for row in rows
            if row.name not in names
        ]
        return [*self._configured, *added]

    async def enabled_servers(self, chosen: str | None) -> list[McpServerConfig]:
        """The servers a conversation has on: those it names, or (never chosen) the default ones."""
        servers = [server for server in await self.servers() if server.enabled]
        if chosen is None:
            return [server for server in servers if server.default_on]
        names = set(chosen.split(","))
        return [server for server in servers if server.name in names]

    # -- what a model gets ----------------------------------------------------------------------

    def _provider(self, name: str) -> ChatProvider | None:
        """The provider of that name; None if none is configured (or no registry is, as in some tests)."""
        if self._providers is None:
            return None
        try:
            return self._providers.get(name)
        except ProviderError:
            return None

    def _catalog_tool_models(self, provider: str) -> frozenset[str]:
        """The models the provider's model list says call tools."""
        chat_provider = self._provider(provider)
        return chat_provider.catalog_tool_models if chat_provider is not None else frozenset()

    async def _read_catalog(self, provider: str) -> None:
        """Read the provider's model list (cached by the provider) when it can say which models call tools: a
        process that has not shown the picker yet (restarted, or the one a moved tab's reply runs on) decides
        as every other does."""
        chat_provider = self._provider(provider)
        if chat_provider is not None and chat_provider.lists_tool_support:
            with contextlib.suppress(ProviderError):  # no list now: the setting decides
                await chat_provider.list_models()

    def calls_functions(self, provider: str, model: str) -> bool:
        """Whether the model gets function tools: CHATBOT_TOOL_MODELS, or its provider's list, says it calls them."""
        return model in self.settings.tool_models or model in self._catalog_tool_models(provider)

    def availability(self, provider: str, model: str) -> ToolAvailability:
        settings = self.settings
        functions = self.calls_functions(provider, model)
        web = provider == "groq" and (model in settings.browser_search_models or _is_compound(model))
        reason = ""
        if not functions:
            known = self._catalog_tool_models(provider).difference(settings.tool_models)
            models = (*settings.tool_models, *sorted(known))
            reason = NOT_A_TOOL_MODEL.format(model=model, models=_named(models))
        elif not web:
            reason = NO_WEB_SEARCH.format(model=model, models=_named(settings.browser_search_models))
        return ToolAvailability(functions, web, reason)

    async def toolbox(
        self, owner_id: str, provider: str, model: str, *, web_search: bool, mcp_servers: str | None
    ) -> Toolbox:
        """The tools of one reply (empty for a model that takes none)."""
        settings = self.settings
        box = Toolbox(result_chars=settings.tool_result_chars, timeout_s=settings.tool_timeout_s)
        if web_search and provider == "groq":
            builtins = []
            if model in settings.browser_search_models:
                builtins.append({"type": "browser_search"})
            if model in settings.code_interpreter_models:
                builtins.append({"type": "code_interpreter"})
            box.builtins = tuple(builtins)
        if provider == "groq" and _is_compound(model) and not web_search:
            box.compound_tools = COMPOUND_TOOLS_OFFLINE  # unasked, a compound system searches the web
        if model not in settings.tool_models:
            await self._read_catalog(provider)
        if not self.calls_functions(provider, model):
            return box
        search = search_files_tool(self._db, owner_id)
        if box.builtins:  # with the web at hand, what the user's files hold leaves only with their yes
            search = replace(search, needs_approval=True)
        box.functions[search.name] = search
        listed = await asyncio.gather(*(self._server_tools(s) for s in await self.enabled_servers(mcp_servers)))
        for tools in listed:
            for tool in tools:
                box.functions.setdefault(tool.name, tool)
        return box

    async def _server_tools(self, server: McpServerConfig) -> list[Tool]:
        """The server's tools; none while it is known down (a dead server must not slow every reply)."""
        if self._down_until.get(server.name, 0.0) > time.monotonic():
            return []
        try:
            async with asyncio.timeout(LIST_TIMEOUT_S):
                specs = await self.clients.tools(server)
        except (McpUnavailable, TimeoutError) as exc:  # the reply goes on without this server's tools
            log.warning("mcp server %s unavailable: %s", server.name, exc)
            self._down_until[server.name] = time.monotonic() + DOWN_RETRY_S
            return []
        self._down_until.pop(server.name, None)
        return [
            Tool(
                name=tool_name(server.name, spec.name),
                description=(spec.description or spec.name)[:1024],
                parameters=spec.parameters or {"type": "object", "properties": {}},
                run=partial(self._call, server, spec.name),
                server=server.name,
                remote_name=spec.name,
                needs_approval=not (spec.read_only or server.trusted),
            )
            for spec in specs
        ]

    async def _call(self, server: McpServerConfig, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        outcome = await self.clients.call(server, name, arguments)
        return ToolOutcome(outcome.text, outcome.is_error, outcome.truncated)


def _is_compound(model: str) -> bool:
    """Groq's compound systems (groq/compound, groq/compound-mini), which run their built-in tools themselves."""
    return model.startswith("groq/compound")


def _named(models: tuple[str, ...]) -> str:
    if not models:
        return "none are configured"
    more = len(models) - NAMED_MODELS
    return ", ".join(models[:NAMED_MODELS]) + (f" and {more} more" if more > 0 else "")


def tool_name(server: str, tool: str) -> str:
    return f"{server}__{_UNSAFE.sub('_', tool)}"[:64]
