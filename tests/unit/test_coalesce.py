"""coalesce(): the first item at once, then at most one batch per interval.

These tests run on an event loop with a virtual clock: whenever nothing is ready to run, the
clock jumps straight to the next timer. A 10 s interval therefore costs no real time, and the
loop's time shows exactly how long the coalescer made its consumer wait.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from chatbot_app.services.coalesce import coalesce

T = TypeVar("T")
INTERVAL_S = 10.0
_END = object()


class _VirtualClockSelector(selectors.DefaultSelector):
    def __init__(self, loop: VirtualClockLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            # Nothing is scheduled and nothing is ready: on a real loop this would hang forever.
            raise RuntimeError("deadlock: the test awaits something nothing will ever provide")
        self._loop.now += timeout
        return super().select(0)


class VirtualClockLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.now = 0.0
        super().__init__(_VirtualClockSelector(self))

    def time(self) -> float:
        return self.now


def run_virtual(scenario: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        return runner.run(scenario)


class ScriptedSource:
    """An async iterator fed item by item from the test; it records whether it was closed."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._taken = asyncio.Event()
        self.closed = False

    def __aiter__(self) -> ScriptedSource:
        return self

    async def __anext__(self) -> object:
        item = await self._queue.get()
        self._taken.set()
        if item is _END:
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            raise item
        return item

    async def aclose(self) -> None:
        self.closed = True

    def put(self, *items: object) -> None:
        for item in items:
            self._queue.put_nowait(item)

    async def deliver(self, item: object) -> None:
        """Hand over one item and return once the consumer of this source has taken it."""
        self._taken.clear()
        self.put(item)
        await self._taken.wait()


class Boom(Exception):
    pass


def test_first_item_is_yielded_at_once() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        source = ScriptedSource()
        frames = coalesce(source, INTERVAL_S)
        source.put("first")

        assert await anext(frames) == ["first"]
        assert loop.time() == 0.0  # not a moment of the interval was waited
        await frames.aclose()

    run_virtual(scenario())


def test_items_arriving_within_the_interval_are_batched() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        source = ScriptedSource()
        frames = coalesce(source, INTERVAL_S)
        source.put(1)
        assert await anext(frames) == [1]

        async def feed_one_at_a_time() -> None:
            for item in (2, 3, 4):
                await source.deliver(item)

        feeder = asyncio.create_task(feed_one_at_a_time())
        batch = await anext(frames)
        await feeder

        assert batch == [2, 3, 4]
        assert loop.time() == pytest.approx(INTERVAL_S)  # and not one batch sooner than the interval
        await frames.aclose()

    run_virtual(scenario())


def test_a_callable_interval_is_asked_after_each_batch() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        intervals = iter([1.0, 5.0])
        source = ScriptedSource()
        frames = coalesce(source, lambda: next(intervals))
        source.put("a")
        assert await anext(frames) == ["a"]
        source.put("b")
        assert await anext(frames) == ["b"]
        assert loop.time() == pytest.approx(1.0)
        source.put("c")
        assert await anext(frames) == ["c"]
        assert loop.time() == pytest.approx(6.0)
        await frames.aclose()

    run_virtual(scenario())


def test_the_last_batch_goes_out_when_the_source_ends_not_after_the_interval() -> None:
    """A reply's last words, or the tool calls that end a model's turn, are not held back by the interval."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        source = ScriptedSource()
        frames = coalesce(source, INTERVAL_S)
        source.put("a")
        assert await anext(frames) == ["a"]

        source.put("last", _END)
        assert await anext(frames) == ["last"]
        assert loop.time() == 0.0
        with pytest.raises(StopAsyncIteration):
            await anext(frames)

    run_virtual(scenario())


def test_an_end_during_the_interval_flushes_what_is_pending_at_once() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        source = ScriptedSource()
        frames = coalesce(source, INTERVAL_S)
        source.put("a")
        assert await anext(frames) == ["a"]

        async def feed() -> None:
            await source.deliver("b")
            await asyncio.sleep(INTERVAL_S / 4)
            source.put(_END)

        feeder = asyncio.create_task(feed())
        assert await anext(frames) == ["b"]
        await feeder
        assert loop.time() == pytest.approx(INTERVAL_S / 4)

    run_virtual(scenario())


def test_closing_the_frames_closes_the_source() -> None:
    async def scenario() -> None:
        source = ScriptedSource()
        frames = coalesce(source, INTERVAL_S)
        source.put("a")
        assert await anext(frames) == ["a"]

        await frames.aclose()

        assert source.closed

    run_virtual(scenario())


def test_a_source_error_is_raised_after_the_items_before_it() -> None:
    async def scenario() -> None:
        source = ScriptedSource()
        source.put(1, 2, Boom("upstream failed"))
        received: list[object] = []

        with pytest.raises(Boom, match="upstream failed"):
            async for batch in coalesce(source, INTERVAL_S):
                received.extend(batch)

        assert received == [1, 2]
        assert source.closed

    run_virtual(scenario())


def test_a_source_error_after_a_delivered_batch_still_propagates() -> None:
    async def scenario() -> None:
        source = ScriptedSource()
        frames = coalesce(source, INTERVAL_S)
        source.put("a")
        assert await anext(frames) == ["a"]

        source.put(Boom("cut"))
        with pytest.raises(Boom, match="cut"):
            await anext(frames)

    run_virtual(scenario())


def test_an_empty_source_yields_nothing() -> None:
    async def scenario() -> None:
        source = ScriptedSource()
        source.put(_END)

        batches = [batch async for batch in coalesce(source, INTERVAL_S)]

        assert batches == []
        assert source.closed

    run_virtual(scenario())
