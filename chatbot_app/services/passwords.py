"""Password hashing (Argon2id) on a small thread pool of its own.

One Argon2id hash or check costs tens of milliseconds of CPU and 64 MiB of memory. On the event loop it
stalls every tab of the process; in the database's thread pool it makes other users' queries wait for a
thread. argon2-cffi releases the GIL while it works, so a couple of threads of its own keep it off both.

The queue is bounded: past `max_waiting` waiting requests a new one is refused at once (PasswordsBusy),
so a flood of sign-in attempts from many addresses cannot pile up unbounded work.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

R = TypeVar("R")


class PasswordsBusy(Exception):
    """Too many password checks are already waiting; the caller should refuse this one ("try again")."""


class PasswordHashing:
    """Argon2id hashes and checks, run on `workers` threads of its own (never the loop's or the database's)."""

    def __init__(self, workers: int = 2, max_waiting: int = 32, hasher: PasswordHasher | None = None) -> None:
        # Argon2id with argon2-cffi's current recommended costs (RFC 9106's low-memory profile).
        self.hasher = hasher or PasswordHasher()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="argon2")
        self._capacity = workers + max_waiting
        self._in_flight = 0
        self._lock = threading.Lock()  # the count is shared by every event loop that uses this object

    async def _run(self, work: Callable[[], R]) -> R:
        with self._lock:
            if self._in_flight >= self._capacity:
                raise PasswordsBusy
            self._in_flight += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, work)
        finally:
            with self._lock:
                self._in_flight -= 1

    async def hash(self, password: str) -> str:
        return await self._run(lambda: self.hasher.hash(password))

    async def verify(self, stored_hash: str, password: str) -> bool:
        """Whether `password` matches `stored_hash`; False (never an exception) for a malformed hash."""

        def check() -> bool:
            try:
                return self.hasher.verify(stored_hash, password)
            except (VerificationError, InvalidHashError):
                return False

        return await self._run(check)

    def needs_rehash(self, stored_hash: str) -> bool:
        """Whether the hash was made with older costs (reads its parameters only: cheap)."""
        try:
            return self.hasher.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return False

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
