"""Replies as jobs that the server owns, not the tab that asked.

A job streams from the provider, appends its frames to the reply's log (services.reply_log),
checkpoints the text to the database every few seconds and writes the final row when it ends.
It runs to its end whether or not anyone follows it. Stop is a command to the job: its task is
cancelled wherever it waits (first token, a retry's pause, a batch request, the local model's
queue), which closes the upstream request. A Stop for a job of another process goes there over
the log's channel and is also written on the reply's row, which that process reads at its next
checkpoint round, so a lost message cannot lose it.

One task per process checkpoints (and so heartbeats) all its running jobs together, in one
transaction per round. A reply whose process died is ended as `interrupted` with everything its
log holds (every character any follower saw; more than the last checkpoint), as soon as it is
known dead: within seconds through services.reply_liveness (by any follower, or the sweep), or
after `stale_reply_s` without a checkpoint (the sweep), whichever comes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial

from sqlalchemy.exc import OperationalError

from chatbot_app.providers.base import (
    ErrorKind,
    ExecutedTool,
    ProviderError,
    ProviderEvent,
    ReasoningDelta,
    TextDelta,
    ToolCall,
    Usage,
)
from chatbot_app.services.chat_service import ChatService, ReplyRequest, Turn
from chatbot_app.services.coalesce import coalesce
from chatbot_app.services.context import context_tokens
from chatbot_app.services.error_messages import describe_retry
from chatbot_app.services.frame_pacing import DEFAULT_MAX_MS, FramePacer
from chatbot_app.services.limits import LimitReached
from chatbot_app.services.quota import QuotaExceeded, Reservation, Spent, prompt_token_bound
from chatbot_app.services.reply_liveness import ReplyLiveness, UnknownLiveness, Verdict
from chatbot_app.services.reply_log import (
    START,
    Finished,
    Frame,
    ReplyEvent,
    ReplyLog,
    Snapshot,
    Titled,
    ToolUpdate,
    follow,
)
from chatbot_app.services.retry import RetryNotice
from chatbot_app.services.tools.runner import RoundContext, ToolRunner
from chatbot_app.storage.models import MessageStatus

log = logging.getLogger(__name__)

#: A streaming reply's text is saved this often, so a crash loses at most this much.
CHECKPOINT_INTERVAL_S = 2.0
#: After this many frames the log is compacted behind a snapshot: a reply's log never holds more entries.
LOG_COMPACT_EVERY = 512


@dataclass(slots=True)
class ReplyProgress:
    """What a reply has produced so far; `add` turns one coalesced batch into a frame."""

    started: float = field(default_factory=time.monotonic)
    text: str = ""
    reasoning: str = ""
    notice: str = ""
    usage: Usage | None = None
    first_token_ms: int | None = None
    #: From the first reasoning to the first answer text (or to the end, if no answer came).
    thinking_ms: int | None = None
    _thinking_from: int | None = None
    #: The calls the model asked for in this round, and the tools the provider ran itself (not yet shown).
    calls: list[ToolCall] = field(default_factory=list)
    executed: list[ExecutedTool] = field(default_factory=list)
    #: Every tool call so far, as its latest update (by call id): a snapshot carries them.
    tools: dict[str, ToolUpdate] = field(default_factory=dict)
    #: The usage of the rounds before this one (a reply with tools calls the model several times).
    earlier_usage: Usage | None = None

    def add(self, items: list[ProviderEvent | RetryNotice]) -> Frame | None:
        text: list[str] = []
        reasoning: list[str] = []
        notice = self.notice
        for item in items:
            match item:
                case TextDelta(delta):
                    text.append(delta)
                case ReasoningDelta(delta):
                    reasoning.append(delta)
                case Usage():
                    self.usage = item
                case ToolCall():
                    self.calls.append(item)
                case ExecutedTool():
                    self.executed.append(item)
                case RetryNotice(kind, next_attempt, attempts, delay_s):
                    notice = describe_retry(kind, delay_s, next_attempt, attempts)
        if text or reasoning:
            notice = ""  # tokens flow again
            if self.first_token_ms is None:
                self.first_token_ms = self.elapsed_ms()
        if reasoning and self._thinking_from is None:
            self._thinking_from = self.elapsed_ms()
        if text and self._thinking_from is not None and self.thinking_ms is None:
            self.thinking_ms = self.elapsed_ms() - self._thinking_from
        if not text and not reasoning and notice == self.notice:
            return None
        frame = Frame("".join(text), "".join(reasoning), notice)
        self.text += frame.text
        self.reasoning += frame.reasoning
        self.notice = notice
        return frame

    def elapsed_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)

    def next_round(self) -> None:
        """The model is called again: this round's usage joins the earlier rounds'."""
        self.earlier_usage, self.usage = self.total_usage(), None
        self.calls = []

    def total_usage(self) -> Usage | None:
        """The usage of every round so far (unknown counts stay unknown)."""
        earlier, now = self.earlier_usage, self.usage
        if earlier is None or now is None:
            return now or earlier
        prompt, completion = (
            _sum(earlier.prompt_tokens, now.prompt_tokens),
            _sum(earlier.completion_tokens, now.completion_tokens),
        )
        return Usage(
            None if prompt is None else int(prompt),
            None if completion is None else int(completion),
            _sum(earlier.completion_time_s, now.completion_time_s),
        )

    def thinking_time_ms(self) -> int | None:
        """How long the model thought; still thinking at the end: until now."""
        if self.thinking_ms is None and self._thinking_from is not None:
            return self.elapsed_ms() - self._thinking_from
        return self.thinking_ms


def _sum(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a + b


@dataclass(slots=True)
class ReplyJob:
    turn: Turn
    batch: bool
    #: Ask the model for a title once a new conversation's first reply is complete.
    suggest_title: bool
    #: The client address the reply was asked from (the title call counts against its limits).
    address: str | None = None
    progress: ReplyProgress = field(default_factory=ReplyProgress)
    task: asyncio.Task[None] | None = None
    #: Why the task was cancelled: "stop" (a user's command), "conflict" (the row was removed), or None.
    cancel_reason: str | None = None
    #: Set when the task begins: a task cancelled before that never runs its handlers.
    begun: bool = False
    #: Set once the job is storing its end: a late stop must not interrupt that.
    finishing: bool = False
    frames: int = 0
    #: The text its last checkpoint stored (None: nothing yet).
    saved: str | None = None
    #: The tokens held against the owner's quota for the provider call, and the prompt's estimate.
    reservation: Reservation | None = None
    prompt_estimate: int = 0
    #: Where the current call of the model began in the text (a reply with tools calls it several times).
    round_start: int = 0
    #: The ids of the tool calls made so far (a model may repeat one in a later round), and the provider's own.
    call_ids: set[str] = field(default_factory=set)
    executed: int = 0

    def unique_calls(self, calls: list[ToolCall], round_number: int) -> list[ToolCall]:
        """The round's calls, each under an id no earlier call of the reply had (approvals name calls by id)."""
        unique = []
        for call in calls:
            if call.id in self.call_ids or not call.id:
                call = ToolCall(f"{call.id or 'call'}-r{round_number}-{len(self.call_ids)}", call.name, call.arguments)
            self.call_ids.add(call.id)
            unique.append(call)
        return unique


class ReplyJobs:
    """This process's running reply jobs, and the way to start, stop and follow any job."""

    def __init__(
        self,
        service: ChatService,
        reply_log: ReplyLog,
        compact_every: int = LOG_COMPACT_EVERY,
        liveness: ReplyLiveness | None = None,
    ) -> None:
        self.service = service
        self.log = reply_log
        self.liveness = liveness or UnknownLiveness()
        self.compact_every = compact_every
        settings = service.settings
        ms = settings.frame_interval_ms
        # One pacer per process: frames every CHATBOT_FRAME_MS, spaced out as more replies stream.
        self.pacer = FramePacer(ms, max(ms, DEFAULT_MAX_MS), frames_per_s=settings.frames_per_s or None)
        # Heartbeat well inside the stale window, so a live job is never taken for a dead one.
        self._heartbeat_s = min(CHECKPOINT_INTERVAL_S, settings.stale_reply_s / 3)
        self._jobs: dict[int, ReplyJob] = {}
        self.tools = ToolRunner(service.database, service.limits, settings.tool_approval_s)
        self._listener: asyncio.Task[None] | None = None
        self._checkpointer: asyncio.Task[None] | None = None

    # -- commands ---------------------------------------------------------------------------

    async def start(
        self, turn: Turn, *, batch: bool = False, suggest_title: bool = False, address: str | None = None
    ) -> None:
        """Run the reply to `turn` as a job of this process (titling a new conversation, if asked).

        Its log exists when this returns, so a follower never finds it missing.
        """
        self._listen_for_stops()
        job = ReplyJob(turn, batch, suggest_title and turn.created_conversation, address)
        self._jobs[turn.reply_id] = job
        if self._checkpointer is None or self._checkpointer.done():
            self._checkpointer = asyncio.get_running_loop().create_task(self._checkpoint(), name="reply-checkpoints")
        try:
            await self.log.begin(turn.reply_id)
        except Exception:  # the log's engine is down: the job goes on (the database has the reply)
            log.warning("could not begin the reply log of %s", turn.reply_id, exc_info=True)
        await self._list([turn.reply_id])
        job.task = asyncio.get_running_loop().create_task(self._run(job), name=f"reply-{turn.reply_id}")

    async def stop(self, reply_id: int) -> None:
        """Stop a reply wherever its job runs: at once in this process; in another one through the log's
        channel, and (should that message be lost) through the row, read at the job's next checkpoint."""
        if self.stop_here(reply_id):
            return
        try:
            await self.log.request_stop(reply_id)
        except Exception as exc:  # e.g. Redis is down: the row carries the stop
            log.warning("could not send a stop for reply %s (%s)", reply_id, type(exc).__name__)
            await self.service.request_stop(reply_id)  # the only way left: its failure is the caller's
            return
        try:
            await self.service.request_stop(reply_id)
        except OperationalError as exc:  # the message went: the stop is not lost for this
            log.warning("could not write a stop on reply %s (%s)", reply_id, type(exc).__name__)

    def stop_here(self, reply_id: int) -> bool:
        """Stop a job of this process at once; False if it does not run here."""
        return self._stop_here(reply_id, "stop")

    async def stop_and_wait(self, reply_ids: list[int], timeout_s: float = 10.0) -> None:
        """Stop these replies and wait (bounded) until each has stored its end, and a job of this process has
        ended whole: a caller that then deletes the rows frees their ids, which SQLite gives to the next
        messages, and a new job must not meet the old one's log writes under the same id."""
        for reply_id in reply_ids:
            await self.stop(reply_id)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                for reply_id in reply_ids:
                    async for _ in self.follow(reply_id, until_finished=True):
                        pass
                    await self.join(reply_id)

    def is_running_here(self, reply_id: int) -> bool:
        return reply_id in self._jobs

    async def join(self, reply_id: int) -> None:
        """Wait until a job of this process has ended, its log written (at once if it is not running here)."""
        job = self._jobs.get(reply_id)
        if job is not None and job.task is not None:
            await asyncio.wait([job.task])

    async def follow(
        self, reply_id: int, cursor: str = START, *, until_finished: bool = False
    ) -> AsyncIterator[tuple[str, list[ReplyEvent]]]:
        """(cursor, events) batches of a reply's log; see reply_log.follow. Empty batches mean "no news".

        At each silence, whether the job's process is known dead is asked too: then the reply is ended
        here, and its end is the log's next entry.
        """
        async for batch in follow(self.log, reply_id, cursor):
            if not batch.events and await self.end_if_dead(reply_id):
                continue
            yield batch.cursor, batch.events
            if until_finished and any(isinstance(e, Finished) for e in batch.events):
                return

    # -- replies whose process died ------------------------------------------------------------

    async def end_if_dead(self, reply_id: int) -> bool:
        """End the reply if the process running its job is known dead (a follower asks, when the log is
        silent); True if it was, and its end is then in its log (or its row, when it has no log)."""
        if self.is_running_here(reply_id):
            return False
        try:
            verdict = (await self.liveness.verdicts([reply_id])).get(reply_id)
        except Exception as exc:  # Redis is down: not known, the database heartbeat decides
            log.debug("no liveness for reply %s (%s)", reply_id, type(exc).__name__)
            return False
        if verdict != Verdict.DEAD:
            return False
        await self.end_dead(reply_id)
        return True

    async def sweep(self) -> int:
        """End every reply whose process is known dead (see services.reply_liveness), and those whose
        database heartbeat stopped `stale_reply_s` ago; how many were ended now."""
        dead: set[int] = set()
        with contextlib.suppress(Exception):  # Redis is down: the database heartbeat still decides
            dead.update(await self.liveness.dead_replies())
        try:
            dead.update(await self.service.stale_replies())
        except OperationalError as exc:  # the database is busy or restarting: Redis's verdicts still count
            log.warning("no stale replies this round (%s)", type(exc).__name__)
        ended = 0
        for reply_id in sorted(dead - set(self._jobs)):
            ended += await self.end_dead(reply_id)
        return ended

    async def end_dead(self, reply_id: int) -> bool:
        """End a reply whose job died as `interrupted`, with every character its log holds; tell its
        followers (the log's last entry). False if it had ended already."""
        result = ReplyResult()
        try:
            if (batch := await self.log.read(reply_id, START, 0.001)) is not None:
                apply(result, batch.events)
        except Exception as exc:  # the log's engine is down: the last checkpoint is all there is
            log.warning("could not read the log of dead reply %s (%s)", reply_id, type(exc).__name__)
        ended = await self.service.interrupt_reply(reply_id, result.text, result.reasoning)
        if ended:
            log.info("reply_interrupted", extra={"request_id": f"reply-{reply_id}", "chars": len(result.text)})
            if result.finished is None:
                with contextlib.suppress(Exception):
                    await self.log.append_last(reply_id, Finished(status=MessageStatus.INTERRUPTED))
        await self._unlist(reply_id)
        return ended

    async def _list(self, reply_ids: list[int]) -> None:
        try:
            await self.liveness.register(reply_ids)
        except Exception as exc:  # Redis is down: the database heartbeat covers these replies meanwhile
            log.debug("could not list replies %s as running (%s)", reply_ids, type(exc).__name__)

    async def _unlist(self, reply_id: int) -> None:
        with contextlib.suppress(Exception):
            await self.liveness.unregister(reply_id)

    def _stop_here(self, reply_id: int, reason: str) -> bool:
        job = self._jobs.get(reply_id)
        if job is None or job.task is None:
            return False
        if job.cancel_reason is None and not job.finishing:
            job.cancel_reason = reason
            if job.begun:  # otherwise _run sees the reason as it begins
                job.task.cancel()
        return True

    def _listen_for_stops(self) -> None:
        """With a shared log, stops may come from other processes: listen (once per process)."""
        if self.log.shared and (self._listener is None or self._listener.done()):
            self._listener = asyncio.get_running_loop().create_task(self._stop_listener(), name="reply-stop-listener")

    async def _stop_listener(self) -> None:
        while True:
            try:
                await self.log.listen_for_stops(self.stop_here)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # e.g. Redis restarted: listen again shortly
                log.warning("stop listener lost its connection (%s); listening again", type(exc).__name__)
            await asyncio.sleep(1.0)

    async def aclose(self) -> None:
        """Shut down: stop listening, and let each job that is still finishing store its end."""
        for task in (self._listener, self._checkpointer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        tasks = [job.task for job in self._jobs.values() if job.task is not None]
        for task in tasks:
            task.cancel()  # a running job stores its text as `interrupted`
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.liveness.aclose()

    # -- the job ----------------------------------------------------------------------------

    async def _run(self, job: ReplyJob) -> None:
        job.begun = True
        progress, reply_id = job.progress, job.turn.reply_id
        status, error, provider, model = MessageStatus.COMPLETE, None, None, None
        cancelled = False
        try:
            if job.cancel_reason is not None:  # stopped before it began
                raise asyncio.CancelledError
            request = await self.service.prepare_reply(job.turn)
            provider, model = request.provider.name, request.options.model
            request = await self._reserve(job, request)
            # A slot is held while the model is called, never while tools run or wait for an approval.
            async with self.service.slots.slot():
                await self._stream(job, request)
            for round_number in range(1, self.service.settings.max_tool_rounds + 1):
                if not progress.calls:
                    break
                request = await self._tool_round(job, request, round_number)
                async with self.service.slots.slot():
                    await self._stream(job, request)
        except ProviderError as exc:
            status, error = MessageStatus.ERROR, exc
            log.warning("provider_error", extra={"request_id": f"reply-{reply_id}", "kind": str(exc.kind)})
        except QuotaExceeded:
            status, error = MessageStatus.ERROR, ProviderError(ErrorKind.QUOTA, "daily token quota spent")
        except asyncio.CancelledError:
            cancelled = job.cancel_reason is None  # shutdown, not a command: re-raised once stored
            status = MessageStatus.INTERRUPTED if cancelled else MessageStatus.STOPPED
        except Exception:
            log.exception("reply_failed", extra={"request_id": f"reply-{reply_id}"})
            status, error = MessageStatus.ERROR, ProviderError(ErrorKind.SERVER, "internal error")
        finally:
            job.finishing = True
        try:
            finished = await self._finish(job, status, error, provider, model)
            if finished.title_pending:
                await self._append(reply_id, Titled(await self._title(job)))
            await self._expire(reply_id)
        finally:
            self._jobs.pop(reply_id, None)
            await self._unlist(reply_id)
        if cancelled:
            raise asyncio.CancelledError

    async def _reserve(self, job: ReplyJob, request: ReplyRequest) -> ReplyRequest:
        """Hold the owner's quota for one call of the model; the request, cut to what the quota leaves."""
        job.prompt_estimate = context_tokens(request.context)
        job.reservation = await self.service.quota.reserve(
            job.turn.owner_id,
            prompt_token_bound(request.context, request.options.tools),
            request.options.max_tokens,
        )
        return request.limited_to(job.reservation.max_tokens)

    async def _stream(self, job: ReplyJob, request: ReplyRequest) -> None:
        """One call of the model, its frames into the log; the tools it asks for stay in `progress.calls`."""
        progress = job.progress
        job.round_start = len(progress.text)
        source = request.events(batch=job.batch, retry=self.service.retry)
        with self.pacer.stream() as interval_s:
            async with contextlib.aclosing(coalesce(source, interval_s)) as batches:
                async for items in batches:
                    if (frame := progress.add(items)) is not None:
                        await self._append_frame(job, frame)
                    if progress.executed:
                        await self._show_executed(job)

    async def _tool_round(self, job: ReplyJob, request: ReplyRequest, round_number: int) -> ReplyRequest:
        """Run the calls of one round; the next request, its quota held (the round's own settled)."""
        progress, turn = job.progress, job.turn
        calls = job.unique_calls(progress.calls, round_number)
        context = RoundContext(turn.owner_id, turn.reply_id, round_number, partial(self._show_tool, job))
        answers = await self.tools.run_round(request.toolbox, calls, context)
        await self._settle(job, request.options.model)
        # Each further call of the model counts against the rate limits as a message does.
        if (refusal := await self.service.limits.admit(turn.owner_id, None)) is not None:
            raise LimitReached(refusal)
        text = progress.text[job.round_start :]
        progress.next_round()
        last = round_number == self.service.settings.max_tool_rounds
        return await self._reserve(job, request.after_tools(text, calls, answers, last=last))

    async def _show_tool(self, job: ReplyJob, update: ToolUpdate) -> None:
        job.progress.tools[update.call_id] = update
        await self._append(job.turn.reply_id, update)

    async def _show_executed(self, job: ReplyJob) -> None:
        """Tools the provider ran itself (Groq's compound models): stored and shown as done calls."""
        executed, job.progress.executed = job.progress.executed, []
        context = RoundContext(job.turn.owner_id, job.turn.reply_id, 0, partial(self._show_tool, job))
        for tool in executed:
            job.executed += 1
            await self.tools.record_executed(tool, f"groq-{job.executed}", context)

    async def _settle(self, job: ReplyJob, model: str) -> None:
        """Count a call of the model against the owner's quota: what it used, or else what it streamed."""
        if job.reservation is None:
            return
        progress = job.progress
        spent = Spent.of(
            job.reservation,
            model,
            progress.usage,
            prompt_estimate=job.prompt_estimate,
            streamed=progress.text[job.round_start :] + progress.reasoning,
        )
        reservation, job.reservation = job.reservation, None
        try:  # per-user accounting must never lose the reply itself
            await self.service.quota.settle(reservation, spent)
        except Exception:
            log.exception("could not settle the quota of reply %d", job.turn.reply_id)

    async def _title(self, job: ReplyJob) -> str:
        """The model's title for a new conversation; "" if there is none (the first words stay)."""
        try:
            title = await self.service.suggest_title(job.turn.owner_id, job.turn.conversation_id, address=job.address)
        except Exception:  # a title is a nicety: never let it fail the reply
            log.warning("no title for reply %s", job.turn.reply_id, exc_info=True)
            return ""
        return title or ""

    async def _append_frame(self, job: ReplyJob, frame: Frame) -> None:
        job.frames += 1
        # A snapshot also after a failed write (Redis restarted, say): the shared log is whole again.
        if job.frames % self.compact_every == 0 or self.log.lost_entries(job.turn.reply_id):
            progress = job.progress
            event = Snapshot(progress.text, progress.reasoning, progress.notice, tuple(progress.tools.values()))
            await self._append(job.turn.reply_id, event, compact=True)
        else:
            await self._append(job.turn.reply_id, frame)

    async def _append(self, reply_id: int, event: ReplyEvent, *, compact: bool = False) -> None:
        """Append to the log; if the log's engine is down, the job goes on (the database has the reply)."""
        try:
            await self.log.append(reply_id, event, compact=compact)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("could not append to the reply log of %s", reply_id, exc_info=True)

    async def _expire(self, reply_id: int) -> None:
        with contextlib.suppress(Exception):
            await self.log.expire(reply_id)

    async def _checkpoint(self) -> None:
        """While jobs run here: every round, checkpoint the text of each (if it grew) and mark its row alive.

        A job whose row was removed is stopped, and so is one whose row asks for a stop. The jobs are
        listed as running again (after a Redis restart, the listing is gone). Ends when no job runs
        (`start` starts it again).
        """
        while self._jobs:
            await asyncio.sleep(self._heartbeat_s)
            running = {job.turn.reply_id: (job, job.progress.text) for job in self._jobs.values() if not job.finishing}
            if not running:
                continue
            checkpoints = {reply_id: text if text != job.saved else None for reply_id, (job, text) in running.items()}
            await self._list(list(running))
            try:
                checked = await self.service.checkpoint_replies(checkpoints)
            except OperationalError:
                log.warning("checkpoint of %d replies failed; trying again", len(checkpoints))
                continue
            for reply_id, (job, text) in running.items():
                job.saved = text
                if reply_id in checked.gone:
                    log.warning("reply_conflict", extra={"request_id": f"reply-{reply_id}"})
                    self._stop_here(reply_id, "conflict")
                elif reply_id in checked.stop_requested:
                    self._stop_here(reply_id, "stop")

    async def _finish(
        self,
        job: ReplyJob,
        status: MessageStatus,
        error: ProviderError | None,
        provider: str | None,
        model: str | None,
    ) -> Finished:
        """Store the final row (retried while the database is busy), then append the log's last entry."""
        progress, reply_id = job.progress, job.turn.reply_id
        usage = progress.total_usage()
        fields = {
            "provider": provider,
            "model": model,
            "error_kind": error.kind.value if error else None,
            "prompt_tokens": usage.prompt_tokens if usage else None,
            "completion_tokens": usage.completion_tokens if usage else None,
            "first_token_ms": progress.first_token_ms,
            "duration_ms": progress.elapsed_ms(),
            "thinking_ms": progress.thinking_time_ms(),
        }
        stored = await self.service.save_final_reply(
            reply_id, progress.text, status, reasoning=progress.reasoning or None, **fields
        )
        conflict = job.cancel_reason == "conflict" or not stored
        record = {"request_id": f"reply-{reply_id}", "status": str(status), "conflict": conflict, **fields}
        if progress.tools:  # names and timings; arguments and results are content
            record["tools"] = [[t.name, t.status, t.duration_ms] for t in progress.tools.values()]
        if self.service.settings.log_content:
            record["content"] = progress.text
        log.info("provider_call", extra=record)
        await self._settle(job, model or "")
        message = await self.service.describe_failure(error.kind, provider) if error is not None else ""
        finished = Finished(
            status=status,
            conflict=conflict,
            error=message,
            title_pending=job.suggest_title and status == MessageStatus.COMPLETE and not conflict,
            **fields,  # type: ignore[arg-type]
        )
        await self._append(reply_id, finished)
        return finished


@dataclass(slots=True)
class ReplyResult:
    """A whole reply as a follower saw it: its text and its end."""

    text: str = ""
    reasoning: str = ""
    notice: str = ""
    finished: Finished | None = None
    title: str | None = None
    frames: int = 0
    tools: dict[str, ToolUpdate] = field(default_factory=dict)


def apply(result: ReplyResult, events: list[ReplyEvent]) -> None:
    """Fold log events into `result` (as every follower does)."""
    for event in events:
        match event:
            case Frame(text, reasoning, notice):
                result.text += text
                result.reasoning += reasoning
                result.notice = notice
                result.frames += bool(text or reasoning or notice)
            case Snapshot(text, reasoning, notice, tools):
                result.text, result.reasoning, result.notice = text, reasoning, notice
                result.tools = {tool.call_id: tool for tool in tools}
                result.frames += 1
            case ToolUpdate():
                result.tools[event.call_id] = event
            case Finished():
                result.finished = event
            case Titled(title):
                result.title = title


async def run_to_end(jobs: ReplyJobs, turn: Turn, *, batch: bool = False) -> ReplyResult:
    """Start a job and follow it to its end (and its title, if one comes): for the API and tests."""
    await jobs.start(turn, batch=batch)
    result = ReplyResult()
    async for _, events in jobs.follow(turn.reply_id):
        apply(result, events)
    return result
