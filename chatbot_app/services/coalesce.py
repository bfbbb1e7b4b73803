"""Group a fast stream of items into frames: the first at once, then at most one per interval.

Sending every token as its own UI update costs a websocket message per token; batching
bounds the message rate without delaying the first token.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

T = TypeVar("T")


async def coalesce(
    source: AsyncIterator[T],
    interval_s: Callable[[], float] | float,
) -> AsyncIterator[list[T]]:
    """Yield lists of items from `source`.

    A batch is yielded as soon as an item is ready, but never sooner than `interval_s`
    after the previous batch (a callable lets the caller adapt it as the reply grows).
    The last batch goes out as soon as the source ends: an ending (a reply's last words, or
    the tool calls a model asked for) is never held back by the interval.
    Closing this iterator closes `source`, which closes the upstream request.
    """
    pending: list[T] = []
    ready = asyncio.Event()
    ended = asyncio.Event()
    finished = False
    failure: BaseException | None = None

    async def pump() -> None:
        nonlocal finished, failure
        try:
            async for item in source:
                pending.append(item)
                ready.set()
        except Exception as exc:
            failure = exc
        finally:
            finished = True
            ready.set()
            ended.set()

    loop = asyncio.get_running_loop()
    flushed_at = float("-inf")
    task = asyncio.create_task(pump())
    try:
        while True:
            await ready.wait()
            ready.clear()
            if pending:
                batch = pending.copy()
                pending.clear()
                flushed_at = loop.time()
                yield batch
            if finished and not pending:
                break
            interval = interval_s() if callable(interval_s) else interval_s
            if (wait := flushed_at + interval - loop.time()) > 0 and not finished:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await ended.wait()
        if failure is not None:
            raise failure
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()
