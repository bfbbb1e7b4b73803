"""Per-identity message limits (in memory and in Redis) and the bound on concurrent generations."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from chatbot_app.providers.base import ErrorKind, ProviderError
from chatbot_app.services.limits import GenerationSlots, MemoryRateLimiter, RedisRateLimiter
from tests.conftest import skip_or_fail

REDIS_URL = "redis://127.0.0.1:6379/0"


async def test_memory_limiter_refuses_past_the_limit_per_key() -> None:
    limiter = MemoryRateLimiter(per_minute=3)

    assert [await limiter.allow("alice") for _ in range(4)] == [True, True, True, False]
    assert await limiter.allow("bob") is True


async def test_redis_limiter_is_shared_between_workers() -> None:
    first, second = RedisRateLimiter(REDIS_URL, per_minute=3), RedisRateLimiter(REDIS_URL, per_minute=3)
    try:
        await first._redis.ping()
    except Exception as exc:  # any failure to connect means "no Redis here"
        skip_or_fail(f"Redis is not reachable at {REDIS_URL}: {type(exc).__name__}")
    key = f"test-{uuid.uuid4().hex}"

    results = [await first.allow(key), await second.allow(key), await first.allow(key), await second.allow(key)]

    assert results == [True, True, True, False]
    await first._redis.aclose()
    await second._redis.aclose()


async def test_generation_slots_queue_a_bounded_number_then_say_busy() -> None:
    slots = GenerationSlots(active=1, waiting=1)
    holding, release = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with slots.slot():
            holding.set()
            await release.wait()

    async def wait_for_turn() -> str:
        async with slots.slot():
            return "served"

    first = asyncio.create_task(hold())
    await holding.wait()
    queued = asyncio.create_task(wait_for_turn())
    while slots.waiting == 0:  # noqa: ASYNC110  (yield to the loop until the second request has queued)
        await asyncio.sleep(0)

    with pytest.raises(ProviderError) as busy:
        async with slots.slot():
            pass
    assert busy.value.kind is ErrorKind.BUSY

    release.set()
    assert await queued == "served"
    await first
