"""Word that a conversation's current branch changed, for every tab that shows it, in any process.

A switch of versions is stored (`conversation.current_leaf_id`); this only wakes the tabs open on that
conversation so that they show the new branch at once. With Redis, one pattern subscription per process
carries the word between processes (a tab may be served by any backend); without, this process's memory.
Each conversation has a counter of changes seen here, so a change that comes while a tab is busy
showing the previous one is not missed: the tab waits for a count other than the one it has shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from typing import Any

from redis.exceptions import RedisError

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "chatbot:branch:"
#: Conversations whose counters are kept; the least recently changed go first (a tab that comes back to
#: one forgotten just misses nothing: it reads the branch as it opens the conversation).
MAX_TRACKED = 50_000


class BranchChanges:
    """`announce(id)` after a switch; `await wait(id, seen, timeout)` in a tab that shows conversation `id`."""

    def __init__(self, redis_url: str | None = None) -> None:
        self._redis: Any = None
        if redis_url:
            import redis.asyncio as redis

            # A health check every 30 s: a half-open connection would leave the subscription deaf without a word.
            self._redis = redis.from_url(redis_url, health_check_interval=30)
        self._counts: dict[str, int] = {}
        self._waiters: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self._listener: asyncio.Task[None] | None = None

    def seen(self, conversation_id: str) -> int:
        """How many changes of the conversation this process has heard of (for a tab to wait past)."""
        return self._counts.get(conversation_id, 0)

    async def announce(self, conversation_id: str) -> None:
        """Tell every tab showing the conversation, in every process, that its branch changed."""
        if self._redis is None:
            self._heard(conversation_id)
            return
        try:
            await self._redis.publish(CHANNEL_PREFIX + conversation_id, b"1")
        except (OSError, RedisError) as exc:  # the switch is stored: other tabs show it on their next load
            log.warning("could not announce a switch of versions (%s)", type(exc).__name__)

    async def wait(self, conversation_id: str, seen: int, timeout_s: float, event: asyncio.Event) -> bool:
        """Wait until the conversation has changed past `seen` (True), or `timeout_s` passes or `event` is set by
        someone else (False). The caller owns `event` (it is cleared here), so it can also wake the waiter."""
        self._listen()
        event.clear()
        self._waiters[conversation_id].add(event)
        try:
            if self.seen(conversation_id) != seen:
                return True
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await event.wait()
            return self.seen(conversation_id) != seen
        finally:
            waiters = self._waiters.get(conversation_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[conversation_id]

    def _heard(self, conversation_id: str) -> None:
        self._counts[conversation_id] = self._counts.pop(conversation_id, 0) + 1  # newest last
        while len(self._counts) > MAX_TRACKED:
            del self._counts[next(iter(self._counts))]
        for event in self._waiters.get(conversation_id, ()):
            event.set()

    def _listen(self) -> None:
        if self._redis is not None and (self._listener is None or self._listener.done()):
            self._listener = asyncio.create_task(self._relay())

    async def _relay(self) -> None:
        """This process's one subscription: each switch announced anywhere wakes the tabs here."""
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.psubscribe(CHANNEL_PREFIX + "*")
                async for message in pubsub.listen():
                    if message.get("type") == "pmessage":
                        channel = message["channel"]
                        channel = channel.decode() if isinstance(channel, bytes) else channel
                        self._heard(channel.removeprefix(CHANNEL_PREFIX))
            except (OSError, RedisError) as exc:  # Redis restarted: subscribe again (tabs read on their next load)
                log.warning("lost the switch announcements (%s); subscribing again", type(exc).__name__)
                await asyncio.sleep(1)  # not a condition: a pause between attempts to reach Redis again
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        if self._redis is not None:
            await self._redis.aclose()
