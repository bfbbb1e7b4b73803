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
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

#: A cursor before the first entry.
START = "0"


@dataclass(frozen=True, slots=True)
class Frame:
    """What is new since the previous frame; `notice` is the transient hint shown now ("" for none)."""

    text: str = ""
    reasoning: str = ""
    notice: str = ""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything so far; it replaces what came before it (the log is compacted behind it)."""

    text: str
    reasoning: str = ""
    notice: str = ""


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


ReplyEvent = Frame | Snapshot | Finished | Titled

_TAGS: dict[str, type[Any]] = {"f": Frame, "s": Snapshot, "e": Finished, "t": Titled}
_TAG_OF = {cls: tag for tag, cls in _TAGS.items()}


def encode(event: ReplyEvent) -> str:
    return json.dumps([_TAG_OF[type(event)], asdict(event)], ensure_ascii=False, separators=(",", ":"))


def decode(data: str | bytes) -> ReplyEvent:
    tag, fields = json.loads(data)
    return _TAGS[tag](**fields)


@dataclass(slots=True)
class Batch:
    """Entries read after a cursor, and the cursor to read on from."""

    cursor: str
    events: list[ReplyEvent] = field(default_factory=list)


class ReplyLog(Protocol):
    #: Whether other processes share this log (then stops may come from them).
    shared: bool

    async def append(self, reply_id: int, event: ReplyEvent, *, compact: bool = False) -> None:
        """Add an entry; with `compact`, drop every entry before it (it must hold all that they did)."""

    async def read(self, reply_id: int, cursor: str, wait_s: float) -> Batch | None:
        """Entries after `cursor`, waiting up to `wait_s` for one; None if there is no such log."""

    async def expire(self, reply_id: int) -> None:
        """Let the log go after the retention time (the reply has ended)."""

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

    def _forget_expired(self) -> None:
        now = time.monotonic()
        for reply_id in [r for r, at in self._expires.items() if at <= now]:
            for table in (self._entries, self._offsets, self._expires, self._changed):
                table.pop(reply_id, None)

    async def append(self, reply_id: int, event: ReplyEvent, *, compact: bool = False) -> None:
        self._forget_expired()
        entries = self._entries.setdefault(reply_id, [])
        if compact:
            self._offsets[reply_id] = self._offsets.get(reply_id, 0) + len(entries)
            entries.clear()
        entries.append(event)
        if changed := self._changed.pop(reply_id, None):
            changed.set()

    async def read(self, reply_id: int, cursor: str, wait_s: float) -> Batch | None:
        self._forget_expired()
        if reply_id not in self._entries:
            return None
        try:
            position = max(int(cursor), 0)
        except ValueError:
            position = 0
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

    async def request_stop(self, reply_id: int) -> None:
        """Nothing to do: with no other process, a job that is not running here is not running."""

    async def listen_for_stops(self, on_stop: Callable[[int], object]) -> None:
        await asyncio.Event().wait()  # no other process can ask


class RedisReplyLog:
    """The log in Redis Streams, shared by every backend process; stops travel over Pub/Sub."""

    shared = True

    def __init__(
        self, url: str, retention_s: float = 300.0, max_entries: int = 10_000, prefix: str = "chatbot"
    ) -> None:
        import redis.asyncio as redis

        self.retention_s = retention_s
        self.max_entries = max_entries
        self.prefix = prefix
        self._redis = redis.from_url(url)

    def key(self, reply_id: int) -> str:
        return f"{self.prefix}:reply:{reply_id}"

    @property
    def stop_channel(self) -> str:
        return f"{self.prefix}:reply-stop"

    async def append(self, reply_id: int, event: ReplyEvent, *, compact: bool = False) -> None:
        key = self.key(reply_id)
        # MAXLEN is a backstop only: the job compacts long before it (see ReplyJobs).
        entry_id = await self._redis.xadd(key, {"e": encode(event)}, maxlen=self.max_entries, approximate=True)
        if compact:
            await self._redis.xtrim(key, minid=entry_id, approximate=False)
        # A log outlives a dead job by the retention time at most.
        await self._redis.expire(key, int(self.retention_s), nx=True)

    async def read(self, reply_id: int, cursor: str, wait_s: float) -> Batch | None:
        key = self.key(reply_id)
        if cursor == START and not await self._redis.exists(key):
            return None
        reply = await self._redis.xread({key: cursor}, block=max(1, int(wait_s * 1000)), count=10_000)
        if not reply:
            return Batch(cursor) if await self._redis.exists(key) else None
        [(_, entries)] = reply
        events = [decode(fields[b"e"]) for _, fields in entries]
        last_id = entries[-1][0]
        return Batch(last_id.decode() if isinstance(last_id, bytes) else last_id, events)

    async def expire(self, reply_id: int) -> None:
        await self._redis.expire(self.key(reply_id), int(self.retention_s))

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
        await self._redis.aclose()
