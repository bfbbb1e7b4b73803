"""One round of a reply's tool calls: each stored, shown, approved where it must be, run, and answered.

The calls of a round run concurrently. Every call's start and end become ToolUpdates that the reply job
puts in its log (so every follower sees them live) and rows that a reload reads. A call that needs the
user's approval waits for it without holding anything but its task: the job's heartbeat goes on, so it
is never taken for dead. Stop cancels the round: a running call is stored as stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from chatbot_app.providers.base import ChatMessage, ExecutedTool, ToolCall
from chatbot_app.services.limits import AbuseLimits
from chatbot_app.services.reply_log import ToolUpdate
from chatbot_app.services.tools.mcp_servers import PROVIDER_SERVER
from chatbot_app.services.tools.toolbox import Toolbox, ToolOutcome
from chatbot_app.services.validation import storable
from chatbot_app.storage import tool_calls as store
from chatbot_app.storage.database import Database
from chatbot_app.storage.models import ToolCallRecord, ToolCallStatus

#: While a call waits for approval from another process, its row is read this often (an answer given in
#: this process wakes it at once).
APPROVAL_POLL_S = 0.5
DENIED = "The user denied this call; it did not run. Do not call it again unless they ask."
NO_ANSWER = "The user did not approve this call within {s:g} s; it did not run."
STOPPED = "Stopped by the user."

#: Calls of one round that run; a model that asks for more is told so for the rest.
MAX_CALLS_PER_ROUND = 16
TOO_MANY = ToolOutcome(f"Not run: at most {MAX_CALLS_PER_ROUND} tool calls run in one round.", is_error=True)

Emit = Callable[[ToolUpdate], Awaitable[None]]


@dataclass(slots=True)
class RoundContext:
    """Who the round is for, and where its news goes."""

    owner_id: str
    reply_id: int
    round: int
    emit: Emit


class ToolRunner:
    """Runs rounds of tool calls for this process's reply jobs; answers approvals given here at once."""

    def __init__(self, db: Database, limits: AbuseLimits, approval_s: float) -> None:
        self._db = db
        self._limits = limits
        self.approval_s = approval_s
        self._waiting: dict[tuple[int, str], asyncio.Event] = {}

    async def run_round(self, toolbox: Toolbox, calls: Sequence[ToolCall], context: RoundContext) -> list[ChatMessage]:
        """The `tool` messages that answer `calls`, in their order. Past MAX_CALLS_PER_ROUND, calls are answered
        with an error and never run or stored; a call that fails to be stored ends the round (and its siblings)."""
        calls = [ToolCall(c.id, storable(c.name), storable(c.arguments)) for c in calls]
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._one(toolbox, call, context)) for call in calls[:MAX_CALLS_PER_ROUND]]
        outcomes = [task.result() for task in tasks] + [TOO_MANY] * len(calls[MAX_CALLS_PER_ROUND:])
        return [
            ChatMessage("tool", outcome.text, tool_call_id=call.id)
            for call, outcome in zip(calls, outcomes, strict=True)
        ]

    async def record_executed(self, tool: ExecutedTool, call_id: str, context: RoundContext) -> None:
        """A tool the provider ran itself: stored and shown as a finished call, its web results as sources."""
        record = ToolCallRecord(
            reply_id=context.reply_id,
            call_id=call_id,
            round=context.round,
            name=storable(tool.name[:128]),
            server=PROVIDER_SERVER,
            arguments=storable(tool.arguments),
            status=ToolCallStatus.DONE,
        )
        row_id = await self._db.run(lambda session: store.add_call(session, record))
        update = ToolUpdate(call_id, record.name, ToolCallStatus.DONE, PROVIDER_SERVER, record.arguments)
        await self._end(
            row_id, update, ToolCallStatus.DONE, ToolOutcome(tool.output, sources=tool.sources), 0.0, context
        )

    def answered(self, reply_id: int, call_id: str) -> None:
        """An answer to a call's approval was stored: wake its wait, if it runs here."""
        if (event := self._waiting.get((reply_id, call_id))) is not None:
            event.set()

    async def _one(self, toolbox: Toolbox, call: ToolCall, context: RoundContext) -> ToolOutcome:
        tool = toolbox.get(call.name)
        status = (
            ToolCallStatus.AWAITING_APPROVAL if tool is not None and tool.needs_approval else ToolCallStatus.RUNNING
        )
        update = ToolUpdate(call.id, call.name, status, tool.server if tool else "", call.arguments)
        record = ToolCallRecord(
            reply_id=context.reply_id,
            call_id=call.id[:128],
            round=context.round,
            name=call.name[:128],
            server=update.server,
            arguments=call.arguments,
            status=status,
        )
        row_id = await self._db.run(lambda session: store.add_call(session, record))
        await context.emit(update)
        started = time.monotonic()
        try:
            outcome, status = await self._approved_run(toolbox, call, context, row_id, status)
        except asyncio.CancelledError:
            await self._end(row_id, update, ToolCallStatus.ERROR, ToolOutcome(STOPPED, is_error=True), started, context)
            raise
        await self._end(row_id, update, status, outcome, started, context)
        return outcome

    async def _approved_run(
        self, toolbox: Toolbox, call: ToolCall, context: RoundContext, row_id: int, status: str
    ) -> tuple[ToolOutcome, str]:
        # Counted before any wait for an approval: calls left waiting count too.
        if (refusal := await self._limits.admit_tool_call(context.owner_id)) is not None:
            return ToolOutcome(refusal.message, is_error=True), ToolCallStatus.ERROR
        if status == ToolCallStatus.AWAITING_APPROVAL:
            answer = await self._approval(context.reply_id, call.id, row_id)
            if answer != ToolCallStatus.RUNNING:
                text = DENIED if answer == ToolCallStatus.DENIED else NO_ANSWER.format(s=self.approval_s)
                return ToolOutcome(text, is_error=True), ToolCallStatus.DENIED
            await context.emit(ToolUpdate(call.id, call.name, ToolCallStatus.RUNNING, "", call.arguments))
        outcome = await toolbox.run(toolbox.get(call.name), call.name, call.arguments)
        return outcome, ToolCallStatus.ERROR if outcome.is_error else ToolCallStatus.DONE

    async def _approval(self, reply_id: int, call_id: str, row_id: int) -> str | None:
        """The owner's answer (RUNNING for approved, DENIED), or None when the wait ran out (the row is then
        marked denied, unless an answer came at the last moment)."""
        key = (reply_id, call_id)
        event = self._waiting[key] = asyncio.Event()
        deadline = time.monotonic() + self.approval_s
        try:
            while (left := deadline - time.monotonic()) > 0:
                status = await self._db.run(lambda session: store.status_of(session, row_id))
                if status != ToolCallStatus.AWAITING_APPROVAL:
                    return status
                event.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), min(APPROVAL_POLL_S, left))
        finally:
            self._waiting.pop(key, None)
        expired = await self._db.run(lambda session: store.expire_approval(session, row_id))
        return None if expired else await self._db.run(lambda session: store.status_of(session, row_id))

    async def _end(
        self, row_id: int, update: ToolUpdate, status: str, outcome: ToolOutcome, started: float, context: RoundContext
    ) -> None:
        ms = int((time.monotonic() - started) * 1000) if started else 0
        text = storable(outcome.text)  # a fetched page may hold a NUL
        error = text if outcome.is_error else None
        result = "" if outcome.is_error else text
        await self._db.run(lambda session: store.end_call(session, row_id, status, result, error, ms, outcome.sources))
        await context.emit(
            ToolUpdate(
                update.call_id,
                update.name,
                status,
                update.server,
                update.arguments,
                result,
                error or "",
                ms,
                outcome.sources,
            )
        )
