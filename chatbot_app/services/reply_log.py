"""A per-reply event log: what a reply job produced, in order, for any number of followers.

A job appends one entry per frame (only the new text), then one `Finished` entry. A follower reads
from a cursor: from the start it gets the text so far at once, then the live tail. Entries expire
a while after the reply ends. The log lives in this process, or in Redis Streams when Redis is
configured, so that another backend process can follow (and stop) the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

#: A cursor before the first entry.
START = "0"

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Frame:
    """What is new since the previous frame; `notice` is the transient hint shown now ("" for none)."""

    text: str = ""
    reasoning: str = ""
    notice: str = ""


@dataclass(frozen=True, slots=True)
class ToolUpdate:
    """A tool call began, waits for the user's approval, or ended: its whole state now (followers replace
    the call's earlier state with it, by `call_id`). `sources` are [title, url] pairs of web results."""

    call_id: str
    name: str
    status: str
    server: str = ""
    arguments: str = ""
    result: str = ""
    error: str = ""
    duration_ms: int | None = None
    sources: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything so far; it replaces what came before it (the log is compacted behind it)."""

    text: str
    reasoning: str = ""
    notice: str = ""
    #: Every tool call so far, as its latest update.
    tools: tuple[ToolUpdate, ...] = ()


@dataclass(frozen=True, slots=True)
class Finished:
    """The reply's end: its status and what it cost. `conflict` if its row was changed by another writer."""

    status: str
    error_kind: str | None = None
    provider: str | None = None
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    first_token_ms: int | None = None
    duration_ms: int | None = None
    thinking_ms: int | None = None
    conflict: bool = False
    #: A title for the new conversation follows as `Titled`.
    title_pending: bool = False
    #: For a failed reply: what to tell the user (naming the models available now, where that helps).
    error: str = ""


@dataclass(frozen=True, slots=True)
class Titled:
    """The model's title for a new conversation, after its first reply ("" if there is none)."""

    title: str


ReplyEvent = Frame | Snapshot | Finished | Titled | ToolUpdate

_TAGS: dict[str, type[Any]] = {"f": Frame, "s": Snapshot, "e": Finished, "t": Titled, "k": ToolUpdate}
_TAG_OF = {cls: tag for tag, cls in _TAGS.items()}


def encode(event: ReplyEvent) -> str:
    return json.dumps([_TAG_OF[type(event)], asdict(event)], ensure_ascii=False, separators=(",", ":"))


def decode(data: str | bytes) -> ReplyEvent:
    tag, fields = json.loads(data)
    if tag == "s" and fields.get("tools"):
        fields["tools"] = tuple(_tool_update(tool) for tool in fields["tools"])
    if tag == "k":
        return _tool_update(fields)
    return _TAGS[tag](**fields)


def _tool_update(fields: dict[str, Any]) -> ToolUpdate:
    sources = tuple((str(title), str(url)) for title, url in fields.pop("sources", ()))
    return ToolUpdate(**fields, sources=sources)


@dataclass(slots=True)
class Batch:
    """Entries read after a cursor, and the cursor to read on from."""

    cursor: str
    events: list[ReplyEvent] = field(default_factory=list)


class ReplyLog(Protocol):
    #: Whether other processes share this log (then stops may come from them).
    shared: bool

    async def begin(self, reply_id: int) -> None:
        """Start the reply's log with an empty frame, replacing any earlier log under the same id.

        When this returns, every process can follow the log.
        """

    async def append(self, reply_id: int, event: ReplyEvent, *, compact: bool = False) -> None:
        """Add an entry; with `compact`, drop every entry before it (it must hold all that they did)."""

    async def read(self, reply_id: int, cursor: str, wait_s: float) -> Batch | None:
        """Entries after `cursor`, waiting up to `wait_s` for one; None if there is no such log.

        A cursor is the number of entries read so far, whichever process and engine it came from.
        """

    async def expire(self, reply_id: int) -> None:
        """Let the log go after the retention time (the reply has ended)."""

    async def append_last(self, reply_id: int, event: ReplyEvent) -> bool:
        """Add an entry after the log's last one, from any process (for a writer that died).

        False if there is no such log, or another process added one first.
        """

    def lost_entries(self, reply_id: int) -> bool:
        """Whether entries of this reply may be missing from the shared log since the last call (a write
        failed): the writer then appends a compacting snapshot, which makes the log whole again."""

    async def request_stop(self, reply_id: int) -> None:
        """Ask whichever process runs the job to stop it."""

    async def listen_for_stops(self, on_stop: Callable[[int], object]) -> None:
        """Call `on_stop(reply_id)` for each stop requested from any process; runs until cancelled."""


async def follow(
    log: ReplyLog, reply_id: int, cursor: str = START, idle_s: float = 1.0, title_wait_s: float = 20.0
) -> AsyncIterator[Batch]:
    """Batches from `cursor` until `Finished` (and `Titled`, if one is pending, for up to `title_wait_s`).

    Yields an empty batch after `idle_s` without news, so the caller can decide whether it still
    wants to follow. Ends at once if the log does not exist (the job is gone or expired).
    """
    title_deadline: float | None = None
    while True:
        batch = await log.read(reply_id, cursor, idle_s)
        if batch is None:
            return
        cursor = batch.cursor
        yield batch
        for event in batch.events:
            match event:
                case Finished(title_pending=pending):
                    if not pending:
                        return
                    title_deadline = time.monotonic() + title_wait_s
                case Titled():
                    return
        if title_deadline is not None and time.monotonic() > title_deadline:
            return  # the title is late: the reply itself is whole, stop here


class MemoryReplyLog:
    """The log in this process's memory: enough for one backend process, with no set-up."""

    shared = False

    def __init__(self, retention_s: float = 300.0) -> None:
        self.retention_s = retention_s
        self._entries: dict[int, list[ReplyEvent]] = {}
        self._offsets: dict[int, int] = {}  # sequence number of each log's first kept entry
        self._expires: dict[int, float] = {}
        self._changed: dict[int, asyncio.Event] = {}

    def __contains__(self, reply_id: int) -> bool:
        self._forget_expired()
        return reply_id in self._entries

    def _forget_expired(self) -> None:
        now = time.monotonic()
        for reply_id in [r for r, at in self._expires.items() if at <= now]:
            for table in (self._entries, self._offsets, self._expires, self._changed):
                table.pop(reply_id, None)

    async def begin(self, reply_id: int) -> None:
        self.add(reply_id, Frame(), new=True)

    async def append(self, reply_id: int, event: ReplyEvent, *, compact: bool = False) -> None:
        self.add(reply_id, event, compact=compact)

    def add(self, reply_id: int, event: ReplyEvent, *, compact: bool = False, new: bool = False) -> int:
        """Append, and return the entry's sequence number (from 1); `new` starts the log afresh."""
        self._forget_expired()
        if new:
            self._entries[reply_id], self._offsets[reply_id] = [], 0
            self._expires.pop(reply_id, None)
        entries = self._entries.setdefault(reply_id, [])
        if compact:
            self._offsets[reply_id] = self._offsets.get(reply_id, 0) + len(entries)
            entries.clear()
        entries.append(event)
        if changed := self._changed.pop(reply_id, None):
            changed.set()
        return self._end(reply_id)

    async def read(self, reply_id: int, cursor: str, wait_s: float) -> Batch | None:
        self._forget_expired()
        if reply_id not in self._entries:
            return None
        position = _position(cursor)
        if position >= self._end(reply_id):
            changed = self._changed.setdefault(reply_id, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), wait_s)
            if reply_id not in self._entries:
                return None
        offset = self._offsets.get(reply_id, 0)
        entries = self._entries[reply_id]
        # A cursor from before a compaction reads on from the snapshot, which holds everything.
        events = entries[max(position - offset, 0) :]
        return Batch(str(self._end(reply_id)), list(events))

    def _end(self, reply_id: int) -> int:
        return self._offsets.get(reply_id, 0) + len(self._entries.get(reply_id, ()))

    async def expire(self, reply_id: int) -> None:
        self._expires[reply_id] = time.monotonic() + self.retention_s

    async def append_last(self, reply_id: int, event: ReplyEvent) -> bool:
        if reply_id not in self:
            return False
        self.add(reply_id, event)
        return True

    def lost_entries(self, reply_id: int) -> bool:
        return False  # nothing is written anywhere else

    async def request_stop(self, reply_id: int) -> None:
        """Nothing to do: with no other process, a job that is not running here is not running."""

    async def listen_for_stops(self, on_stop: Callable[[int], object]) -> None:
        await asyncio.Event().wait()  # no other process can ask


def _position(cursor: str) -> int:
    """Entries already read: a cursor is their count ("0" before the first)."""
    try:
        return max(int(cursor), 0)
    except ValueError:
        return 0


class RedisReplyLog:
    """The log in Redis Streams, shared by every backend process; stops travel over Pub/Sub.

    The entries of this process's own jobs are also kept in its memory for a while: its followers
    (nearly always the tab that asked, on the same websocket) read them there, with no XREAD. An entry
    shows there only once its write to Redis has been answered, so no tab ever sees a character that
    a process dying right after would leave out of Redis (and so out of the text its reply is ended
    with, see ReplyJobs). Entry n gets the stream id `0-n`, so a cursor reads on from the same place in
    memory or in Redis, as when a tab's websocket moves to another process. Writes to Redis go out in
    the background, every entry queued meanwhile (by any job) in one pipeline, in order.
    """

    shared = True

    def __init__(
        self,
        url: str,
        retention_s: float = 300.0,
        max_entries: int = 10_000,
        prefix: str = "chatbot",
        local_retention_s: float = 10.0,
    ) -> None:
        import redis.asyncio as redis

        self.retention_s = retention_s
        self.max_entries = max_entries
        self.prefix = prefix
        self._redis = redis.from_url(url)
        self._local = MemoryReplyLog(local_retention_s)
        # The stream id of each running log's last entry (0-n), counted here: entries reach memory later.
        self._last: dict[int, int] = {}
        # Replies some of whose entries a failed write left out of Redis (see lost_entries).
        self._lost: set[int] = set()
        # Queued writes: a function adding commands to a pipeline, and what to do once it is answered.
        self._queued: list[tuple[Callable[[Any], None], Callable[[], None] | None, int | None]] = []
        self._flushed: asyncio.Future[None] | None = None  # the next flush's outcome
        self._writer: asyncio.Task[None] | None = None
        self._failing = False  # the last write failed (said once, until writes succeed again)

    def key(self, reply_id: int) -> str:
        return f"{self.prefix}:reply:{reply_id}"

    @property
    def stop_channel(self) -> str:
        return f"{self.prefix}:reply-stop"

    async def begin(self, reply_id: int) -> None:
        key, fields = self.key(reply_id), _fields(Frame())
        self._last[reply_id] = 1
        self._lost.discard(reply_id)
        # An earlier log under this id (SQLite reuses ids) goes first: ids restart at 0-1.
        await self._write(
            lambda pipe: pipe.delete(key).xadd(key, fields, id="0-1").expire(key, int(self.retention_s)),
            then=lambda: self._local.add(reply_id, Frame(), new=True),
            reply_id=reply_id,
        )

    async def append(self, reply_id: int, event: ReplyEvent, *, compact: bool = False) -> None:
        key, fields = self.key(reply_id), _fields(event)
        self._last[reply_id] = number = self._last.get(reply_id, 0) + 1
        entry_id = f"0-{number}"

        def write(pipe: Any) -> None:
            if not compact:  # MAXLEN is a backstop only: the job compacts long before it (see ReplyJobs)
                pipe.xadd(key, fields, id=entry_id, maxlen=self.max_entries, approximate=True)
                return
            pipe.xadd(key, fields, id=entry_id).xtrim(key, minid=entry_id, approximate=False)
            pipe.expire(key, int(self.retention_s))  # a long reply's log lives on from its last compaction

        self._queue(write, then=lambda: self._local.add(reply_id, event, compact=compact), reply_id=reply_id)

    async def append_last(self, reply_id: int, event: ReplyEvent) -> bool:
        from redis.exceptions import ResponseError

        key = self.key(reply_id)
        last = await self._redis.xrevrange(key, count=1)
        if not last:
            return False
        last_id = last[0][0].decode() if isinstance(last[0][0], bytes) else last[0][0]
        try:  # refused if another process added an entry meanwhile: the log has its end then
            await self._redis.xadd(key, _fields(event), id=f"0-{_position(last_id.split('-')[1]) + 1}")
        except ResponseError:
            return False
        await self._redis.expire(key, int(self.retention_s))
        if reply_id in self._local:  # its followers here read their memory
            self._local.add(reply_id, event)
        return True

    def lost_entries(self, reply_id: int) -> bool:
        if reply_id in self._lost:
            self._lost.discard(reply_id)
            return True
        return False

    async def read(self, reply_id: int, cursor: str, wait_s: float) -> Batch | None:
        if reply_id in self._local and (batch := await self._local.read(reply_id, cursor, wait_s)) is not None:
            return batch
        key = self.key(reply_id)
        if cursor == START and not await self._redis.exists(key):
            return None
        position = _position(cursor)
        reply = await self._redis.xread({key: f"0-{position}"}, block=max(1, int(wait_s * 1000)), count=10_000)
        if not reply:
            return Batch(str(position)) if await self._redis.exists(key) else None
        [(_, entries)] = reply
        events = [decode(fields[b"e"]) for _, fields in entries]
        last_id = entries[-1][0]
        return Batch((last_id.decode() if isinstance(last_id, bytes) else last_id).split("-")[1], events)

    async def expire(self, reply_id: int) -> None:
        await self._local.expire(reply_id)
        self._last.pop(reply_id, None)
        self._lost.discard(reply_id)
        key, ttl = self.key(reply_id), int(self.retention_s)
        await self._write(lambda pipe: pipe.expire(key, ttl))

    async def request_stop(self, reply_id: int) -> None:
        await self._redis.publish(self.stop_channel, str(reply_id))

    async def listen_for_stops(self, on_stop: Callable[[int], object]) -> None:
        pubsub = self._redis.pubsub()
        try:
            await pubsub.subscribe(self.stop_channel)
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    with contextlib.suppress(ValueError):
                        on_stop(int(message["data"]))
        finally:
            await pubsub.aclose()

    async def aclose(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await self._write(lambda pipe: None)  # what is queued goes out first
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        await self._redis.aclose()

    # -- writing in the background ---------------------------------------------------------

    def _queue(
        self, command: Callable[[Any], None], then: Callable[[], None] | None = None, reply_id: int | None = None
    ) -> asyncio.Future[None]:
        """Queue commands for the next pipeline, and `then` for when Redis has answered it (or failed to);
        the future says how it went."""
        self._queued.append((command, then, reply_id))
        if self._flushed is None:
            self._flushed = asyncio.get_running_loop().create_future()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_queued(), name="reply-log-writer")
        return self._flushed

    async def _write(
        self, command: Callable[[Any], None], then: Callable[[], None] | None = None, reply_id: int | None = None
    ) -> None:
        """Queue commands, and wait until they (and all queued before them) are in Redis; raises its error."""
        await asyncio.shield(self._queue(command, then, reply_id))

    async def _write_queued(self) -> None:
        """Write what is queued, one pipeline at a time, until nothing is (then end; `_queue` starts it again)."""
        while self._queued:
            queued, self._queued = self._queued, []
            flushed, self._flushed = self._flushed, None
            pipe = self._redis.pipeline(transaction=False)
            for command, _, _ in queued:
                command(pipe)
            try:
                await pipe.execute()
            except Exception as exc:  # Redis is down: the jobs go on, the database has their replies
                if not self._failing:
                    log.warning("could not write to the reply logs in Redis (%s); trying on", type(exc).__name__)
                self._failing = True
                self._lost.update(reply_id for _, _, reply_id in queued if reply_id is not None)
                if flushed is not None and not flushed.done():
                    flushed.set_exception(exc)
                    flushed.exception()  # retrieved: nobody may be waiting for it
                continue
            finally:  # this process's followers see the entries now (also when Redis is down: nothing better)
                for _, then, _ in queued:
                    if then is not None:
                        then()
            if self._failing:
                log.info("writing to the reply logs in Redis again")
            self._failing = False
            if flushed is not None and not flushed.done():
                flushed.set_result(None)


def _fields(event: ReplyEvent) -> dict[str, str]:
    return {"e": encode(event)}
