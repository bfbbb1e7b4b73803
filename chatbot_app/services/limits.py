"""Abuse limits: what one identity, API key or client address may ask of the providers, and how many
replies generate at once.

`AbuseLimits.admit` is the one gate every provider call passes first (chat, regenerate, edit,
summaries, end session, titles, /api and /v1); `AbuseLimits.slot` bounds how many run at once.
Counting uses the `limits` library's moving windows, in Redis when one is configured (so every
worker shares one count), otherwise in this process's memory, where expired windows are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from limits import RateLimitItem, RateLimitItemPerHour, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.exceptions import RedisError

from chatbot_app.config import Settings
from chatbot_app.providers.base import ErrorKind, ProviderError

log = logging.getLogger(__name__)

UNKNOWN_ADDRESS = "unknown"
#: IPv6 clients get a whole /64 each, so counting per address counts them per /64.
IPV6_PREFIX = 64
#: How long an identity counts as "seen" from an address before it would count as new again.
SEEN_IDENTITY_S = 3600


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request was not admitted, in words for the user; `limit` names the limit that applied."""

    limit: str
    message: str


class LimitReached(ProviderError):
    """A call refused by the abuse limits, for callers that handle ProviderError; show `refusal.message`."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(ErrorKind.RATE_LIMIT, f"{refusal.limit} limit reached")
        self.refusal = refusal


class AbuseLimits:
    """Per-identity (or per-key), per-address, new-identity and import limits, plus the concurrency cap."""

    def __init__(
        self,
        *,
        per_identity: int,
        per_address: int,
        new_identities_per_hour: int,
        imports_per_hour: int,
        active: int,
        waiting: int,
        redis_url: str | None = None,
        key_prefix: str = "chatbot_limits",
        address_imports_per_hour: int | None = None,
        tool_calls_per_minute: int = 0,
    ) -> None:
        self._per_identity = RateLimitItemPerMinute(per_identity)
        self._per_address = RateLimitItemPerMinute(per_address)
        self._new_identities = RateLimitItemPerHour(new_identities_per_hour)
        self._imports = RateLimitItemPerHour(imports_per_hour)
        self._address_imports = RateLimitItemPerHour(address_imports_per_hour or imports_per_hour * 3)
        self._tool_calls = RateLimitItemPerMinute(tool_calls_per_minute) if tool_calls_per_minute else None
        # While the shared store (Redis) is unreachable, this process counts alone: each process then admits
        # its own share of a limit, which is far better than admitting everyone or refusing everyone.
        self._local = _Counter(MemoryStorage())
        self._shared = (
            _Counter(RedisStorage(f"async+{redis_url}", implementation="redispy", key_prefix=key_prefix))
            if redis_url
            else None
        )
        self.slots = GenerationSlots(active, waiting)

    @classmethod
    def from_settings(cls, settings: Settings) -> AbuseLimits:
        return cls(
            per_identity=settings.rate_limit_per_minute,
            per_address=settings.address_rate_limit_per_minute,
            new_identities_per_hour=settings.new_identities_per_hour,
            imports_per_hour=settings.imports_per_hour,
            address_imports_per_hour=settings.address_imports_per_hour,
            active=settings.max_active_replies,
            waiting=settings.max_waiting_replies,
            redis_url=settings.redis_url,
            tool_calls_per_minute=settings.tool_calls_per_minute,
        )

    async def admit(self, identity: str, address: str | None, *, new_identity: bool = False) -> Refusal | None:
        """Count one provider call for `identity` from `address`; a Refusal if any limit is reached.

        If the shared store is unreachable (Redis restarting), this process counts on its own until it is back.
        """
        return await self._counted(lambda counter: self._admit(counter, identity, address, new_identity=new_identity))

    async def admit_import(self, identity: str, address: str | None) -> Refusal | None:
        """Count one import for `identity` from `address`: per identity, per address (CHATBOT_IMPORTS_PER_HOUR and
        CHATBOT_ADDRESS_IMPORTS_PER_HOUR), and a new identity counts against its address's new identities."""
        return await self._counted(lambda counter: self._admit_import(counter, identity, address))

    async def admit_tool_call(self, identity: str) -> Refusal | None:
        """Count one tool call for `identity` (CHATBOT_TOOL_CALLS_PER_MINUTE); a Refusal past the limit."""
        item = self._tool_calls
        if item is None:
            return None

        async def check(counter: _Counter) -> Refusal | None:
            if await counter.hit(item, "tools", identity):
                return None
            return Refusal("tools", f"Too many tool calls: the limit is {item.amount} a minute.")

        return await self._counted(check)

    async def _counted(self, check: Callable[[_Counter], Awaitable[Refusal | None]]) -> Refusal | None:
        if self._shared is not None:
            try:
                return await check(self._shared)
            except (StorageError, ConnectionError, OSError, RedisError) as exc:
                log.warning("limits store unreachable, counting in this process: %s", type(exc).__name__)
        return await check(self._local)

    async def _admit(
        self, counter: _Counter, identity: str, address: str | None, *, new_identity: bool
    ) -> Refusal | None:
        """See `admit`.

        An identity not seen from anywhere in the last hour counts against its address's budget of
        new identities (as does `new_identity=True`), so minting identities does not escape the limits.
        `address=None` (the caller cannot know it) applies the per-identity limit alone; an address
        that is given but unreadable ("") is counted as "unknown", shared by all such callers.
        """
        if address is None:
            return await self._identity_refusal(counter, identity)
        address = address_key(address)
        if not await counter.hit(self._per_address, "address", address):
            return Refusal(
                "address",
                f"Too many messages from your network: the limit is {self._per_address.amount} a minute. "
                "Wait a moment, then try again.",
            )
        if refusal := await self._new_identity_refusal(counter, identity, address, new_identity):
            return refusal
        return await self._identity_refusal(counter, identity)

    async def _new_identity_refusal(
        self, counter: _Counter, identity: str, address: str, new_identity: bool
    ) -> Refusal | None:
        if (new_identity or await counter.first_seen(identity)) and not await counter.hit(
            self._new_identities, "new_identity", address
        ):
            await counter.forget_seen(identity)  # still new next time: a retry must not slip through
            return Refusal(
                "new_identities",
                f"Too many new sessions from your network: the limit is {self._new_identities.amount} an hour. "
                "Keep using the session you have, or try again later.",
            )
        return None

    async def _identity_refusal(self, counter: _Counter, identity: str) -> Refusal | None:
        if await counter.hit(self._per_identity, "identity", identity):
            return None
        return Refusal(
            "identity",
            f"Too many messages: the limit is {self._per_identity.amount} a minute. Wait a moment, then try again.",
        )

    async def _admit_import(self, counter: _Counter, identity: str, address: str | None) -> Refusal | None:
        too_many = Refusal(
            "imports", f"Too many imports: the limit is {self._imports.amount} an hour. Try again later."
        )
        if address is not None:
            address = address_key(address)
            if not await counter.hit(self._address_imports, "address_import", address):
                return Refusal(
                    "address_imports",
                    f"Too many imports from your network: the limit is {self._address_imports.amount} an hour. "
                    "Try again later.",
                )
            if refusal := await self._new_identity_refusal(counter, identity, address, False):
                return refusal
        return None if await counter.hit(self._imports, "import", identity) else too_many

    async def claim_once(self, key: str, ttl_s: int) -> bool:
        """True the first time `key` is claimed within `ttl_s` seconds, by any process (a link used once)."""
        if self._shared is not None:
            try:
                return await self._shared.first_claim(key, ttl_s)
            except (StorageError, ConnectionError, OSError, RedisError) as exc:
                log.warning("limits store unreachable, claiming in this process: %s", type(exc).__name__)
        return await self._local.first_claim(key, ttl_s)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the generation slots; raises ProviderError(BUSY) when the queue is full."""
        async with self.slots.slot():
            yield

    async def reset(self) -> None:
        """Forget every count (tests)."""
        for counter in (self._shared, self._local):
            if counter is not None:
                await counter.storage.reset()


class _Counter:
    """Moving windows and "seen" marks over one store (the `limits` library's)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._limiter = MovingWindowRateLimiter(storage)

    async def hit(self, item: RateLimitItem, *keys: str) -> bool:
        return await self._limiter.hit(item, *keys)

    async def first_seen(self, identity: str) -> bool:
        return await self.storage.incr(_seen_key(identity), SEEN_IDENTITY_S) == 1

    async def forget_seen(self, identity: str) -> None:
        await self.storage.clear(_seen_key(identity))

    async def first_claim(self, key: str, ttl_s: int) -> bool:
        return await self.storage.incr(f"once/{key}", ttl_s) == 1


def _seen_key(identity: str) -> str:
    return f"seen/{identity}"


def address_key(address: str | None) -> str:
    """The unit an address is counted in: the address itself, its /64 for IPv6, or "unknown"."""
    try:
        parsed = ipaddress.ip_address((address or "").strip())
    except ValueError:
        return UNKNOWN_ADDRESS
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/{IPV6_PREFIX}", strict=False))
    return str(parsed)


def parse_networks(values: Iterable[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(value.strip(), strict=False) for value in values if value.strip())


def client_address(
    peer: str | None,
    forwarded_for: str | None,
    trusted: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network],
) -> str:
    """The address a request came from.

    The socket's peer, unless that peer is a trusted proxy: then the right-most X-Forwarded-For hop
    that is not itself a trusted proxy (hops further left were written by the client and prove nothing).
    """
    trusted = tuple(trusted)

    def is_trusted(address: str) -> bool:
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(parsed in network for network in trusted)

    peer = (peer or "").strip()
    if not peer or not forwarded_for or not is_trusted(peer):
        return peer or UNKNOWN_ADDRESS
    for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a malformed hop: the proxies' own record stops being trustworthy here
        if not is_trusted(hop):
            return hop
    return peer


def address_from_headers(headers: Mapping[str, str], fallback_ip: str | None, trusted_proxies: Iterable[str]) -> str:
    """The client address of a websocket handler, from Reflex's router data.

    Reflex puts the socket's peer in the raw headers as "asgi-scope-client" (router.session.client_ip
    is the same unless Reflex's own trusted_proxy_hops is set), and passes X-Forwarded-For through.
    """
    peer = headers.get("asgi-scope-client") or fallback_ip
    return client_address(peer, headers.get("x-forwarded-for"), parse_networks(trusted_proxies))


class GenerationSlots:
    """At most `active` replies generate at once in this process; `waiting` more may queue for a slot."""

    def __init__(self, active: int, waiting: int) -> None:
        self._semaphore = asyncio.Semaphore(active)
        self._max_waiting = waiting
        self._waiting = 0

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def full(self) -> bool:
        """No slot is free and the queue is full: a new reply would be refused as BUSY."""
        return self._semaphore.locked() and self._waiting >= self._max_waiting

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a slot; raises ProviderError(BUSY) at once when the queue is full."""
        if self.full:
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
