"""Imports as jobs of their own: the import runs as a task of the backend process, not inside the handler
that took the file, so the tab may move on or reload while it runs.

The job says how far it has got (conversations and messages stored so far) where any tab of its
identity can read it: in this process's memory, or in Redis when Redis is configured (a tab that
reloads onto another backend process finds it there). One import per identity at a time. While it
runs its progress is kept alive by a heartbeat, so the progress of a job whose process died expires
within seconds; once it has ended, how it ended is kept a few minutes for a tab that comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from chatbot_app.services.library import ConversationLibrary, ImportCounts
from chatbot_app.storage.transfer import ImportRejected

log = logging.getLogger(__name__)

#: What a job is doing: reading the file (parsing, checking), storing it, or ended one way or the other.
READING, STORING, DONE, FAILED = "reading", "storing", "done", "failed"
#: A running job's progress lives this long without news: its heartbeat renews it more often than that.
RUNNING_TTL_S = 30.0
HEARTBEAT_S = 5.0
#: How long how an import ended is kept, for a tab that comes back to it.
ENDED_TTL_S = 600.0
#: How often a watcher reads a progress kept elsewhere (Redis); one kept here wakes it at once.
WATCH_POLL_S = 0.5

ALREADY_RUNNING = "An import is already running: wait until it ends."
STOPPED = "The import stopped before it ended (the server restarted): nothing was imported. Import the file again."
FAILED_UNEXPECTEDLY = "The import failed: nothing was imported. Try again in a moment."


class ImportAlreadyRunning(Exception):
    """The identity has an import running; one at a time."""


class ImportsUnavailable(Exception):
    """Where progress is kept (Redis) cannot be reached: no import starts without it."""


@dataclass(frozen=True, slots=True)
class ImportProgress:
    """One import's progress; `message` says how it ended, in words for the user."""

    job_id: str
    state: str = READING
    conversations: int = 0
    messages: int = 0
    total_conversations: int = 0
    total_messages: int = 0
    message: str = ""

    @property
    def ended(self) -> bool:
        return self.state in (DONE, FAILED)

    @property
    def percent(self) -> int:
        """Rows stored of the file's rows (a conversation counts as one), 0 to 100."""
        total = self.total_conversations + self.total_messages
        return 100 if self.state == DONE else (100 * (self.conversations + self.messages)) // total if total else 0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, raw: str | bytes) -> ImportProgress:
        return cls(**json.loads(raw))


class ImportProgressStore(Protocol):
    async def get(self, owner_id: str) -> ImportProgress | None: ...

    async def put(self, owner_id: str, progress: ImportProgress, ttl_s: float) -> None: ...

    async def claim(self, owner_id: str, progress: ImportProgress, ttl_s: float) -> bool:
        """Put `progress` unless an import of the owner is running; whether it did."""
        ...

    async def wait(self, owner_id: str, timeout_s: float) -> None:
        """Return on the owner's next change, or after `timeout_s` (whichever the store can tell)."""
        ...

    async def aclose(self) -> None: ...


class MemoryImportProgress:
    """Progress in this process's memory: enough for one backend process, with no set-up."""

    def __init__(self) -> None:
        self._kept: dict[str, tuple[ImportProgress, float]] = {}
        self._changed: dict[str, asyncio.Event] = {}

    async def get(self, owner_id: str) -> ImportProgress | None:
        kept = self._kept.get(owner_id)
        if kept is None or kept[1] <= time.monotonic():
            self._kept.pop(owner_id, None)
            return None
        return kept[0]

    async def put(self, owner_id: str, progress: ImportProgress, ttl_s: float) -> None:
        now = time.monotonic()
        self._kept = {owner: kept for owner, kept in self._kept.items() if kept[1] > now}
        self._kept[owner_id] = (progress, now + ttl_s)
        if changed := self._changed.pop(owner_id, None):
            changed.set()

    async def claim(self, owner_id: str, progress: ImportProgress, ttl_s: float) -> bool:
        current = await self.get(owner_id)  # no await between the check and the put: nothing comes between
        if current is not None and not current.ended:
            return False
        await self.put(owner_id, progress, ttl_s)
        return True

    async def wait(self, owner_id: str, timeout_s: float) -> None:
        changed = self._changed.setdefault(owner_id, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout_s)

    async def aclose(self) -> None:
        return None


# Put the progress unless the key holds a running import's (one not yet done or failed): atomic in Redis.
_CLAIM = """
local current = redis.call('GET', KEYS[1])
if current then
  local state = cjson.decode(current)['state']
  if state ~= 'done' and state ~= 'failed' then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""


class RedisImportProgress:
    """Progress in Redis, shared by every backend process; keyed by a digest of the identity (never the
    identity itself, which is a credential)."""

    def __init__(self, url: str, prefix: str = "chatbot") -> None:
        import redis.asyncio as redis

        self.prefix = prefix
        self._redis = redis.from_url(url)
        self._claim: Any = self._redis.register_script(_CLAIM)

    def key(self, owner_id: str) -> str:
        return f"{self.prefix}:import:{hashlib.sha256(owner_id.encode()).hexdigest()}"

    async def get(self, owner_id: str) -> ImportProgress | None:
        raw = await self._redis.get(self.key(owner_id))
        return None if raw is None else ImportProgress.from_json(raw)

    async def put(self, owner_id: str, progress: ImportProgress, ttl_s: float) -> None:
        await self._redis.set(self.key(owner_id), progress.to_json(), px=int(ttl_s * 1000))

    async def claim(self, owner_id: str, progress: ImportProgress, ttl_s: float) -> bool:
        return bool(await self._claim(keys=[self.key(owner_id)], args=[progress.to_json(), int(ttl_s * 1000)]))

    async def wait(self, owner_id: str, timeout_s: float) -> None:
        await asyncio.sleep(timeout_s)

    async def aclose(self) -> None:
        await self._redis.aclose()


def import_progress_store(redis_url: str | None) -> ImportProgressStore:
    """Redis when configured (processes share it), else this process's memory."""
    return RedisImportProgress(redis_url) if redis_url else MemoryImportProgress()


class ImportJobs:
    """Runs imports as tasks of this process and reports their progress through the store."""

    def __init__(self, library: ConversationLibrary, store: ImportProgressStore) -> None:
        self.library = library
        self.store = store
        # The running jobs: each task, and whose import it is.
        self._tasks: dict[asyncio.Task[None], tuple[str, ImportProgress]] = {}

    async def running(self, owner_id: str) -> bool:
        """Whether the owner has an import running; raises ImportsUnavailable."""
        try:
            current = await self.store.get(owner_id)
        except Exception as exc:
            raise ImportsUnavailable(type(exc).__name__) from exc
        return current is not None and not current.ended

    async def start(self, owner_id: str, data: bytes) -> ImportProgress:
        """Start importing `data` for `owner_id` and return its first progress at once (the import's
        limits are checked before, by the door); raises ImportAlreadyRunning or ImportsUnavailable."""
        progress = ImportProgress(secrets.token_hex(8))
        try:
            claimed = await self.store.claim(owner_id, progress, RUNNING_TTL_S)
        except Exception as exc:
            raise ImportsUnavailable(type(exc).__name__) from exc
        if not claimed:
            raise ImportAlreadyRunning(ALREADY_RUNNING)
        task = asyncio.get_running_loop().create_task(self._run(owner_id, data, progress), name="import")
        self._tasks[task] = (owner_id, progress)
        task.add_done_callback(lambda done: self._tasks.pop(done, None))
        return progress

    async def _run(self, owner_id: str, data: bytes, progress: ImportProgress) -> None:
        latest = progress

        async def report(counts: ImportCounts) -> None:
            nonlocal latest
            latest = dataclasses.replace(latest, state=STORING, **dataclasses.asdict(counts))
            await self._put(owner_id, latest, RUNNING_TTL_S)

        async def heartbeat() -> None:
            while True:
                await asyncio.sleep(HEARTBEAT_S)
                await self._put(owner_id, latest, RUNNING_TTL_S)

        beating = asyncio.create_task(heartbeat())
        stopped = False
        try:
            summary = await self.library.import_file(owner_id, data, report)
            end = dataclasses.replace(latest, state=DONE, message=summary.message)
        except ImportRejected as exc:
            end = dataclasses.replace(latest, state=FAILED, message=f"Nothing was imported: {exc}")
        except asyncio.CancelledError:  # the process is shutting down: what was staged is discarded
            end, stopped = dataclasses.replace(latest, state=FAILED, message=STOPPED), True
        except Exception:
            log.exception("an import failed")
            end = dataclasses.replace(latest, state=FAILED, message=FAILED_UNEXPECTEDLY)
        finally:
            beating.cancel()
        # Ended before the end is written: a heartbeat's write still on its way would replace it.
        await asyncio.gather(beating, return_exceptions=True)
        await self._put(owner_id, end, ENDED_TTL_S)
        if stopped:
            raise asyncio.CancelledError

    async def _put(self, owner_id: str, progress: ImportProgress, ttl_s: float) -> None:
        """Keep the progress; a store that cannot be reached costs the display, never the import."""
        try:
            await self.store.put(owner_id, progress, ttl_s)
        except Exception as exc:
            log.warning("could not keep an import's progress: %s", type(exc).__name__)

    async def progress(self, owner_id: str) -> ImportProgress | None:
        """The owner's import: running, or ended a short while ago; None for none."""
        return await self.store.get(owner_id)

    async def watch(self, owner_id: str) -> AsyncIterator[ImportProgress | None]:
        """Each new progress of the owner's import, until it ends (or its progress is gone: its process died)."""
        shown: ImportProgress | None = None
        while True:
            current = await self.store.get(owner_id)
            if current != shown:
                yield current
                shown = current
            if current is None or current.ended:
                return
            await self.store.wait(owner_id, WATCH_POLL_S)

    async def aclose(self) -> None:
        """Stop the running imports (each discards what it staged and says so), then the store."""
        jobs = dict(self._tasks)
        for task in jobs:
            task.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
        for owner_id, started in jobs.values():  # a job cancelled before it began said nothing yet
            try:
                current = await self.store.get(owner_id)
            except Exception as exc:  # its progress expires on its own
                log.warning("could not end an import's progress: %s", type(exc).__name__)
                continue
            if current is not None and current.job_id == started.job_id and not current.ended:
                await self._put(owner_id, dataclasses.replace(current, state=FAILED, message=STOPPED), ENDED_TTL_S)
        await self.store.aclose()
