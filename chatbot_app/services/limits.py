"""Abuse limits: messages per minute per identity, and how many replies generate at once.

The rate limiter counts in Redis when one is configured, so several backend workers share one
limit; otherwise it counts in this process's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from typing import Protocol

from chatbot_app.providers.base import ErrorKind, ProviderError

WINDOW_S = 60


class RateLimiter(Protocol):
    async def allow(self, key: str) -> bool:
        """Count one event for `key`; False if it is over the limit for the current minute."""
        ...


class MemoryRateLimiter:
    """A sliding one-minute window per key, in this process."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._events: dict[str, deque[float]] = defaultdict(deque)

    async def allow(self, key: str) -> bool:
        now = time.monotonic()
        events = self._events[key]
        while events and events[0] <= now - WINDOW_S:
            events.popleft()
        if len(events) >= self.per_minute:
            return False
        events.append(now)
        return True


class RedisRateLimiter:
    """A fixed one-minute window per key, shared by every worker through Redis."""

    def __init__(self, url: str, per_minute: int) -> None:
        import redis.asyncio as redis

        self.per_minute = per_minute
        self._redis = redis.from_url(url)

    async def allow(self, key: str) -> bool:
        bucket = f"chatbot:rate:{key}:{int(time.time() // WINDOW_S)}"
        async with self._redis.pipeline(transaction=True) as pipe:
            count, _ = await pipe.incr(bucket).expire(bucket, WINDOW_S * 2).execute()
        return int(count) <= self.per_minute


def make_rate_limiter(per_minute: int, redis_url: str | None) -> RateLimiter:
    return RedisRateLimiter(redis_url, per_minute) if redis_url else MemoryRateLimiter(per_minute)


class GenerationSlots:
    """At most `active` replies generate at once in this process; `waiting` more may queue for a slot."""

    def __init__(self, active: int, waiting: int) -> None:
        self._semaphore = asyncio.Semaphore(active)
        self._max_waiting = waiting
        self._waiting = 0

    @property
    def waiting(self) -> int:
        return self._waiting

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a slot; raises ProviderError(BUSY) at once when the queue is full."""
        if self._semaphore.locked() and self._waiting >= self._max_waiting:
            raise ProviderError(ErrorKind.BUSY, f"{self._waiting} replies already waiting")
        self._waiting += 1
        try:
            await self._semaphore.acquire()
        finally:
            self._waiting -= 1
        try:
            yield
        finally:
            self._semaphore.release()
