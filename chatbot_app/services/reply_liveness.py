"""Whether the process running a reply's job is alive, known within seconds of its death.

With Redis, each process that runs reply jobs keeps a key `<prefix>:worker:<id>` with a short
expiry, renewed every second from a thread of its own (so a busy event loop never lets it lapse, and
a dead process's key is gone within WORKER_TTL_S), and lists its running replies in the hash
`<prefix>:running` (reply id -> worker id). A reply listed under a worker whose key is gone is dead.

A reply that is not listed has an unknown fate, never a dead one: Redis restarted and lost the hash
(each live process lists its replies again at its next checkpoint round), or it is not running at
all. For those, and for setups without Redis, the database heartbeat decides, as before
(ChatService.stale_replies: no checkpoint for `stale_reply_s`).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import threading
import uuid
from collections.abc import Collection
from typing import Any, Protocol

log = logging.getLogger(__name__)

#: How long a worker's key outlives its last renewal: the time a death takes to be seen.
WORKER_TTL_S = 3.0
#: How often the key is renewed.
WORKER_RENEW_S = 1.0


class Verdict(enum.StrEnum):
    ALIVE = "alive"
    DEAD = "dead"
    UNKNOWN = "unknown"


class ReplyLiveness(Protocol):
    async def register(self, reply_ids: Collection[int]) -> None:
        """These replies' jobs run in this process (again, every checkpoint round: Redis may have restarted)."""

    async def unregister(self, reply_id: int) -> None:
        """This reply's job has ended."""

    async def verdicts(self, reply_ids: Collection[int]) -> dict[int, Verdict]:
        """Whether the process running each reply is alive."""

    async def dead_replies(self) -> list[int]:
        """Every listed reply whose process has died."""

    async def aclose(self) -> None: ...


class UnknownLiveness:
    """Without Redis: nothing is known here, so the database heartbeat decides every reply's fate."""

    async def register(self, reply_ids: Collection[int]) -> None:
        pass

    async def unregister(self, reply_id: int) -> None:
        pass

    async def verdicts(self, reply_ids: Collection[int]) -> dict[int, Verdict]:
        return dict.fromkeys(reply_ids, Verdict.UNKNOWN)

    async def dead_replies(self) -> list[int]:
        return []

    async def aclose(self) -> None:
        pass


class RedisLiveness:
    """Worker keys and the hash of running replies in Redis (see the module's docstring)."""

    def __init__(
        self, url: str, prefix: str = "chatbot", ttl_s: float = WORKER_TTL_S, renew_s: float = WORKER_RENEW_S
    ) -> None:
        import redis.asyncio as redis

        self.url = url
        self.prefix = prefix
        self.ttl_ms = int(ttl_s * 1000)
        self.renew_s = renew_s
        self.worker_id = uuid.uuid4().hex
        self._redis = redis.from_url(url)
        self._renewer: threading.Thread | None = None
        self._closing = threading.Event()

    @property
    def running_key(self) -> str:
        return f"{self.prefix}:running"

    def worker_key(self, worker_id: str) -> str:
        return f"{self.prefix}:worker:{worker_id}"

    async def register(self, reply_ids: Collection[int]) -> None:
        self._start_renewing()
        # The worker's key with the listing, on one connection in order: no one sees a listing without it.
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(self.worker_key(self.worker_id), 1, px=self.ttl_ms)
        if reply_ids:
            pipe.hset(self.running_key, mapping=dict.fromkeys(map(str, reply_ids), self.worker_id))
        await pipe.execute()

    async def unregister(self, reply_id: int) -> None:
        await self._redis.hdel(self.running_key, str(reply_id))

    async def verdicts(self, reply_ids: Collection[int]) -> dict[int, Verdict]:
        ids = list(reply_ids)
        if not ids:
            return {}
        workers = [_text(w) for w in await self._redis.hmget(self.running_key, [str(i) for i in ids])]
        return await self._judge(dict(zip(ids, workers, strict=True)))

    async def dead_replies(self) -> list[int]:
        listed = {int(k): _text(w) for k, w in (await self._redis.hgetall(self.running_key)).items()}
        return [reply_id for reply_id, verdict in (await self._judge(listed)).items() if verdict == Verdict.DEAD]

    async def _judge(self, workers: dict[int, str | None]) -> dict[int, Verdict]:
        known = sorted({w for w in workers.values() if w})
        pipe = self._redis.pipeline(transaction=False)
        for worker in known:
            pipe.exists(self.worker_key(worker))
        alive = {worker for worker, found in zip(known, await pipe.execute(), strict=True) if found}
        if len(alive) < len(known) and await self._restarted_lately():
            alive = set(known)  # keys read back from disk may have lapsed while it was down: wait a renewal
        return {
            reply_id: Verdict.UNKNOWN if not worker else Verdict.ALIVE if worker in alive else Verdict.DEAD
            for reply_id, worker in workers.items()
        }

    async def _restarted_lately(self) -> bool:
        info: dict[str, Any] = await self._redis.info("server")
        return int(info.get("uptime_in_seconds", 0)) < self.ttl_ms / 1000 + 2 * self.renew_s

    def _start_renewing(self) -> None:
        if self._renewer is None or not self._renewer.is_alive():
            self._closing.clear()
            self._renewer = threading.Thread(target=self._renew, name="reply-worker-key", daemon=True)
            self._renewer.start()

    def _renew(self) -> None:
        """The thread: renew this worker's key until closed (Redis errors are retried at the next turn)."""
        import redis

        client = redis.Redis.from_url(self.url, socket_timeout=self.renew_s, socket_connect_timeout=self.renew_s)
        failing = False
        try:
            while not self._closing.wait(self.renew_s):
                try:
                    client.set(self.worker_key(self.worker_id), 1, px=self.ttl_ms)
                except Exception as exc:
                    if not failing:
                        log.warning("could not renew this worker's key in Redis (%s); trying on", type(exc).__name__)
                    failing = True
                else:
                    failing = False
        finally:
            client.close()

    async def aclose(self) -> None:
        self._closing.set()
        if self._renewer is not None:
            await asyncio.to_thread(self._renewer.join, 5)
        try:  # this process is going: its key goes with it, so its replies are seen at once
            await self._redis.delete(self.worker_key(self.worker_id))
        except Exception:
            log.debug("could not delete this worker's key", exc_info=True)
        await self._redis.aclose()


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def liveness_for(redis_url: str | None) -> ReplyLiveness:
    """Worker keys in Redis when Redis is configured (processes share it); else nothing is known."""
    return RedisLiveness(redis_url) if redis_url else UnknownLiveness()
