"""FramePacer: 50 ms frames while few replies stream, stretched so the process's frames/s stay bounded."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from chatbot_app.services.coalesce import coalesce
from chatbot_app.services.frame_pacing import FramePacer


def with_streams(pacer: FramePacer, count: int) -> contextlib.ExitStack:
    stack = contextlib.ExitStack()
    for _ in range(count):
        stack.enter_context(pacer.stream())
    return stack


def test_few_streams_get_the_base_interval() -> None:
    pacer = FramePacer(50, frames_per_s=200)

    for count in (1, 5, 10):
        with with_streams(pacer, count):
            assert pacer.interval_s() == 0.050


def test_more_streams_stretch_the_interval_so_total_frames_stay_at_the_budget() -> None:
    pacer = FramePacer(50, frames_per_s=200)

    for count in (20, 30, 40, 50):
        with with_streams(pacer, count):
            assert pacer.interval_s() == pytest.approx(count / 200)
            assert count / pacer.interval_s() == pytest.approx(200)


def test_the_interval_never_passes_the_maximum() -> None:
    pacer = FramePacer(50, max_ms=250, frames_per_s=200)

    with with_streams(pacer, 500):
        assert pacer.interval_s() == 0.250


def test_the_interval_follows_the_load_as_streams_come_and_go() -> None:
    pacer = FramePacer(50, frames_per_s=100)

    with pacer.stream() as interval:
        assert interval() == 0.050
        with with_streams(pacer, 19):
            assert pacer.active == 20
            assert interval() == pytest.approx(0.200)  # the interval callable reads the load at each call
        assert interval() == 0.050
    assert pacer.active == 0


def test_a_stream_that_fails_is_no_longer_counted() -> None:
    pacer = FramePacer(50)

    with pytest.raises(RuntimeError), pacer.stream():
        raise RuntimeError("upstream failed")

    assert pacer.active == 0


def test_the_fixed_policy_ignores_the_load() -> None:
    pacer = FramePacer(50, frames_per_s=None)

    with with_streams(pacer, 100):
        assert pacer.interval_s() == 0.050


def test_no_interval_means_every_arrival_is_a_frame_whatever_the_load() -> None:
    pacer = FramePacer(0)

    with with_streams(pacer, 100):
        assert pacer.interval_s() == 0


@pytest.mark.parametrize(
    ("base_ms", "max_ms", "frames_per_s"), [(-1, 250, 200), (300, 250, 200), (50, 250, 0), (50, 250, -5)]
)
def test_bad_settings_are_refused_with_a_clear_message(base_ms: int, max_ms: int, frames_per_s: int) -> None:
    with pytest.raises(ValueError, match="frame"):
        FramePacer(base_ms, max_ms, frames_per_s)


async def test_the_first_frame_goes_out_at_once_whatever_the_interval() -> None:
    """With coalesce: the pacer sets the interval between frames, never a wait before the first."""
    pacer = FramePacer(50, max_ms=250, frames_per_s=1)  # 2+ streams: 250 ms between frames
    release = asyncio.Event()

    async def tokens() -> AsyncIterator[str]:
        yield "first"
        await release.wait()
        yield "second"
        await asyncio.Event().wait()  # still streaming: an ending would go out at once (coalesce)

    loop = asyncio.get_running_loop()
    with with_streams(pacer, 10), pacer.stream() as interval:
        assert interval() == 0.250
        frames = coalesce(tokens(), interval)
        started = loop.time()
        assert await anext(frames) == ["first"]
        assert loop.time() - started < 0.05
        release.set()
        assert await anext(frames) == ["second"]
        assert loop.time() - started >= 0.249
        await frames.aclose()
