"""Per-identity message limits (in memory and in Redis) and the bound on concurrent generations."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis

from chatbot_app.providers.base import ErrorKind, ProviderError
from chatbot_app.services.limits import AbuseLimits, GenerationSlots
from tests.conftest import skip_or_fail
from tests.e2e.live_app import free_port

REDIS_URL = "redis://127.0.0.1:6379/2"


def _limits(redis_url: str | None = None, prefix: str = "") -> AbuseLimits:
    return AbuseLimits(
        per_identity=3,
        per_address=100,
        new_identities_per_hour=100,
        imports_per_hour=2,
        active=1,
        waiting=0,
        redis_url=redis_url,
        key_prefix=prefix or f"test_{uuid.uuid4().hex}",
    )


async def test_memory_limits_refuse_past_the_limit_per_identity() -> None:
    limits = _limits()

    assert [await limits.admit("alice", "192.0.2.1") is None for _ in range(4)] == [True, True, True, False]
    assert await limits.admit("bob", "192.0.2.1") is None


async def test_redis_limits_are_shared_between_workers() -> None:
    prefix = f"test_{uuid.uuid4().hex}"
    first, second = _limits(REDIS_URL, prefix), _limits(REDIS_URL, prefix)
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:  # any failure to connect means "no Redis here"
        skip_or_fail(f"Redis is not reachable at {REDIS_URL}: {type(exc).__name__}")
    assert await first.admit_import("probe", None) is None

    results = [await (first if n % 2 else second).admit("key", "192.0.2.1") is None for n in range(4)]

    assert results == [True, True, True, False]
    assert await second.admit_import("probe", None) is None  # the second of two imports an hour
    assert await first.admit_import("probe", None) is not None
    await first.reset()


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


async def test_while_redis_is_down_each_process_counts_on_its_own_instead_of_admitting_everyone() -> None:
    """The review saw 200 of 200 calls admitted against a limit of 20 while Redis was down."""
    unreachable = f"redis://127.0.0.1:{free_port()}"  # nothing listens there
    limits = _limits(unreachable)

    calls = [await limits.admit("key", "192.0.2.1") for _ in range(5)]
    imports = [await limits.admit_import("key", None) for _ in range(3)]

    assert [refusal is None for refusal in calls] == [True, True, True, False, False]
    assert calls[-1] is not None and calls[-1].limit == "identity"
    assert [refusal is None for refusal in imports] == [True, True, False]
