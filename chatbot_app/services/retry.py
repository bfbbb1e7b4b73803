"""Retry a provider request that fails before its first token, with backoff and jitter.

Once a token has been shown, a failure is not retried here (the partial text is kept and the
user gets a one-click Retry): re-running silently would show the reply twice.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TypeVar

from chatbot_app.providers.base import ErrorKind, ProviderError

T = TypeVar("T")

RETRYABLE = frozenset({ErrorKind.RATE_LIMIT, ErrorKind.SERVER, ErrorKind.TIMEOUT, ErrorKind.CONNECTION})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 3  # tries in all, the first included
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    # A retry-after longer than this is not waited for: the user is told to try later instead.
    max_retry_after_s: float = 20.0

    def delay(self, failed_attempt: int, retry_after_s: float | None) -> float | None:
        """Seconds to wait before the next try, or None if it should not be retried."""
        if retry_after_s is not None:
            return retry_after_s if retry_after_s <= self.max_retry_after_s else None
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** (failed_attempt - 1))
        return random.uniform(ceiling / 2, ceiling)  # "equal jitter": spread out, never near zero


@dataclass(frozen=True, slots=True)
class RetryNotice:
    """Emitted in the stream before waiting, so the UI can say "retrying…"."""

    kind: ErrorKind
    next_attempt: int
    attempts: int
    delay_s: float


async def with_retries(
    open_stream: Callable[[], AsyncIterator[T]], policy: RetryPolicy
) -> AsyncIterator[T | RetryNotice]:
    """Items of `open_stream()`, re-opened after a retryable failure that came before any item."""
    attempt = 1
    while True:
        started = False
        try:
            async for item in open_stream():
                started = True
                yield item
            return
        except ProviderError as exc:
            delay = policy.delay(attempt, exc.retry_after_s) if exc.kind in RETRYABLE else None
            if started or delay is None or attempt >= policy.attempts:
                raise
            attempt += 1
            yield RetryNotice(exc.kind, attempt, policy.attempts, delay)
            await asyncio.sleep(delay)
