"""Jobs for the file-check pool's tests: module-level, so that a worker process can import them."""

from __future__ import annotations

import os
import signal
import time


def process_id() -> int:
    return os.getpid()


def spin_forever() -> None:
    """Burn CPU until stopped (by the budget's SIGXCPU)."""
    while True:
        pass


def spin_deaf_to_the_budget() -> None:
    """Burn CPU with SIGXCPU blocked, as C code that never returns to Python would: only a kill stops it."""
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGXCPU])
    while True:
        pass


def idle_then_answer(seconds: float, answer: str) -> str:
    """A job that takes a while without using CPU (it holds its worker), then answers."""
    time.sleep(seconds)
    return answer


def idle_span(seconds: float) -> tuple[float, float]:
    """`idle_then_answer` that answers when it ran (CLOCK_MONOTONIC: one clock for every process)."""
    start = time.monotonic()
    time.sleep(seconds)
    return start, time.monotonic()


def allocate(mib: int) -> int:
    return len(bytearray(mib * 2**20))
