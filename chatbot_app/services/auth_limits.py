"""The throttles in front of passwords: failed sign-ins, and sign-ups.

Moving windows from the `limits` library (the same as services/limits.py), counted in Redis when one is
configured, so that every backend process counts together. While Redis cannot be reached they count in
this process instead: a Redis outage neither stops people from signing in nor opens the door to guessing.

The address is the client's, as services/limits.py `client_address` reads it (the socket's peer, or the
X-Forwarded-For hop a trusted proxy appended): behind nginx, never the proxy's own.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.exceptions import RedisError

from chatbot_app.services.limits import address_key

log = logging.getLogger(__name__)

#: How long a call waits for Redis before it counts in the process instead.
REDIS_TIMEOUT_S = 1.0


class SharedCounter:
    """A moving-window limiter in Redis (shared by every process), falling back to this process's memory."""

    def __init__(self, storage_uri: str | None, key_prefix: str) -> None:
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._shared: MovingWindowRateLimiter | None = None
        self._outage = False
        if storage_uri and storage_uri.startswith(("redis://", "rediss://", "unix://")):
            storage = RedisStorage(
                f"async+{storage_uri}",
                implementation="redispy",
                key_prefix=key_prefix,
                socket_timeout=REDIS_TIMEOUT_S,
                socket_connect_timeout=REDIS_TIMEOUT_S,
            )
            self._shared = MovingWindowRateLimiter(storage)

    async def _call(self, use: Callable[[MovingWindowRateLimiter], Awaitable[bool]]) -> bool:
        if self._shared is not None:
            try:
                answer = await use(self._shared)
            except (StorageError, RedisError, ConnectionError, OSError, TimeoutError) as exc:
                if not self._outage:  # one line per outage, not one per attempt
                    log.warning("sign-in limits: Redis unreachable, counting in this process (%s)", type(exc).__name__)
                self._outage = True
            else:
                if self._outage:
                    log.info("sign-in limits: Redis is back, counting there again")
                self._outage = False
                return answer
        return await use(self._local)

    async def test(self, item: RateLimitItem, *identifiers: str) -> bool:
        """Whether one more hit would still be within the limit (counts nothing)."""
        return await self._call(lambda limiter: limiter.test(item, *identifiers))

    async def hit(self, item: RateLimitItem, *identifiers: str) -> bool:
        """Count one hit; False if the limit was already reached (then nothing is counted)."""
        return await self._call(lambda limiter: limiter.hit(item, *identifiers))

    async def reset(self) -> None:
        """Forget every count (tests)."""
        await self._local.storage.reset()
        if self._shared is not None:
            await self._shared.storage.reset()


class SignInThrottle:
    """Failed sign-ins, counted per account and per client address.

    An account with `per_account` failures is closed to every address for the window (guessing one
    person's password); an address with `per_address` failures is closed for every account (guessing
    many people's).
    """

    def __init__(
        self,
        storage_uri: str | None = None,
        per_account: str = "10/15 minutes",
        per_address: str = "30/15 minutes",
        key_prefix: str = "chatbot_signin",
    ) -> None:
        self.counter = SharedCounter(storage_uri, key_prefix)
        self.per_account: RateLimitItem = parse(per_account)
        self.per_address: RateLimitItem = parse(per_address)

    async def allowed(self, account: str, address: str) -> bool:
        return await self.counter.test(self.per_account, "account", account) and await self.counter.test(
            self.per_address, "address", address_key(address)
        )

    async def failed(self, account: str, address: str) -> None:
        await self.counter.hit(self.per_account, "account", account)
        await self.counter.hit(self.per_address, "address", address_key(address))


class SignUpThrottle:
    """Sign-up attempts (each costs an Argon2 hash and may add a row), per client address and overall."""

    def __init__(
        self,
        storage_uri: str | None = None,
        per_address: str = "10/hour",
        overall: str = "100/hour",
        key_prefix: str = "chatbot_signup",
    ) -> None:
        self.counter = SharedCounter(storage_uri, key_prefix)
        self.per_address: RateLimitItem = parse(per_address)
        self.overall: RateLimitItem = parse(overall)

    async def admit(self, address: str) -> bool:
        """Count one attempt from `address`; False when this address, or everyone together, is over the limit."""
        if not await self.counter.hit(self.per_address, "address", address_key(address)):
            return False
        return await self.counter.hit(self.overall, "everyone")
