"""The tools one reply may call: what the model is offered, and how each call is run.

A Toolbox is assembled per reply (services.tools.catalog) and knows nothing of the reply job, the
database or Reflex: it turns a model's call into a ToolOutcome, always, whatever the tool does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from chatbot_app.providers.base import ChatMessage, GenerationOptions

#: The most arguments a model's call may carry (the model writes them; a runaway one is refused).
MAX_ARGUMENT_CHARS = 32_000


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """What a call gave back: the text the model reads, whether it failed, and whether it was cut."""

    text: str
    is_error: bool = False
    truncated: bool = False
    #: Web results it used, as (title, url) pairs: shown under the answer as numbered sources.
    sources: tuple[tuple[str, str], ...] = ()


def cut(text: str, max_chars: int) -> ToolOutcome:
    """A result within `max_chars`, saying so (to the model, and so to the user) when it was cut."""
    if len(text) <= max_chars:
        return ToolOutcome(text)
    note = f"\n[The result was cut here: {max_chars:,} of {len(text):,} characters.]"
    return ToolOutcome(text[:max_chars] + note, truncated=True)


Runner = Callable[[dict[str, Any]], Awaitable[ToolOutcome]]


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model is offered. `name` is unique within a reply (an MCP tool's is prefixed with its
    server's name); `remote_name` is what its server calls it."""

    name: str
    description: str
    parameters: dict[str, Any]
    run: Runner
    server: str = ""
    remote_name: str = ""
    #: Not marked read-only by its server, and the server is not trusted: the user approves each call.
    needs_approval: bool = False

    def schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


@dataclass(slots=True)
class Toolbox:
    """The tools of one reply: functions we run, and the provider's built-ins it runs itself."""

    functions: dict[str, Tool] = field(default_factory=dict)
    #: Provider built-ins in the wire shape, e.g. {"type": "browser_search"}.
    builtins: tuple[dict[str, Any], ...] = ()
    #: The built-in tools a Groq compound system may run; None: Groq's default (all of them, the web included).
    compound_tools: tuple[str, ...] | None = None
    result_chars: int = 20_000
    timeout_s: float = 60.0

    def __bool__(self) -> bool:
        return bool(self.functions or self.builtins)

    def schemas(self) -> tuple[dict[str, Any], ...]:
        return (*self.builtins, *(tool.schema() for tool in self.functions.values()))

    def offered_in(self, options: GenerationOptions) -> GenerationOptions:
        """`options` with these tools offered: the schemas (when there are any) and a compound system's tools."""
        if self:
            options = replace(options, tools=self.schemas())
        if self.compound_tools is not None:
            options = replace(options, compound_tools=self.compound_tools)
        return options

    def resendable(self) -> set[str]:
        """The tools whose earlier calls may go back to the model with the conversation: all of them, but with
        a built-in at hand (the web) none that needs the user's yes (search_files then does: what the user's
        files said leaves only with it)."""
        return {name for name, tool in self.functions.items() if not (self.builtins and tool.needs_approval)}

    def get(self, name: str) -> Tool | None:
        return self.functions.get(name)

    async def run(self, tool: Tool | None, name: str, arguments: str) -> ToolOutcome:
        """Run one call to its end: an unknown tool, bad arguments, a timeout or a failure is an error
        outcome the model can explain, never an exception (but cancellation, which Stop uses)."""
        if tool is None:
            return ToolOutcome(f"There is no tool named {name!r}.", is_error=True)
        parsed = parse_arguments(arguments)
        if isinstance(parsed, str):
            return ToolOutcome(parsed, is_error=True)
        try:
            async with asyncio.timeout(self.timeout_s):
                outcome = await tool.run(parsed)
        except TimeoutError:
            return ToolOutcome(f"The tool {name} did not answer within {self.timeout_s:g} s.", is_error=True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a tool's own failure: the model is told, the reply goes on
            return ToolOutcome(f"The tool {name} failed: {type(exc).__name__}.", is_error=True)
        if len(outcome.text) > self.result_chars:
            shortened = cut(outcome.text, self.result_chars)
            return ToolOutcome(shortened.text, outcome.is_error, True, outcome.sources)
        return outcome


def parse_arguments(arguments: str) -> dict[str, Any] | str:
    """The call's arguments as an object, or the sentence that says why they are not one."""
    if len(arguments) > MAX_ARGUMENT_CHARS:
        return f"The arguments are too long ({len(arguments):,} characters; at most {MAX_ARGUMENT_CHARS:,})."
    try:
        parsed = json.loads(arguments or "{}")
    except ValueError:
        return "The arguments are not valid JSON."
    if not isinstance(parsed, dict):
        return "The arguments must be a JSON object."
    return parsed


def fit(answers: Sequence[ChatMessage], room_chars: int) -> list[ChatMessage]:
    """Tool answers cut so that together they fit `room_chars`, each told where it was cut. The shortest go
    first: those that fit whole stay whole, and the room they leave goes to the longer ones."""
    texts = [answer.content for answer in answers]
    if sum(map(len, texts)) <= room_chars:
        return list(answers)
    left, remaining = room_chars, len(texts)
    for i in sorted(range(len(texts)), key=lambda i: len(texts[i])):
        share = max(left // remaining, 200)
        if len(texts[i]) > share:
            texts[i] = cut(texts[i], share).text
        left, remaining = left - len(texts[i]), remaining - 1
    return [replace(answer, content=text) for answer, text in zip(answers, texts, strict=True)]
