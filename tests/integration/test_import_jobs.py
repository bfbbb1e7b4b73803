"""Imports as jobs of their own (services/import_jobs.py), on both databases: the door starts one and returns
at once, within the import limits; the job reports conversations and messages stored after each batch,
and how it ended; one runs at a time per identity; a shutdown discards it and says so; and with Redis,
another backend process sees the same progress.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import sqlite3
import uuid
from collections.abc import AsyncIterator

import pytest
import redis
from sqlalchemy import Engine

from chatbot_app.config import Settings
from chatbot_app.services.actions import IMPORTS_UNAVAILABLE, Actions, Caller
from chatbot_app.services.import_jobs import (
    ALREADY_RUNNING,
    DONE,
    FAILED,
    READING,
    STOPPED,
    STORING,
    ImportJobs,
    ImportProgress,
    MemoryImportProgress,
    RedisImportProgress,
)
from chatbot_app.services.library import IMPORT_BATCH_ROWS
from chatbot_app.services.refusals import RefusalKind, Refused
from chatbot_app.storage.transfer import STAGING_PREFIX
from tests.conftest import make_services, skip_or_fail
from tests.e2e.live_app import free_port
from tests.integration.test_import_limits import conversation, export, rows

REDIS_URL = "redis://127.0.0.1:6379/2"
#: Three batches of IMPORT_BATCH_ROWS rows (a conversation and its 9 messages are 10 rows).
CONVERSATIONS, MESSAGES_EACH = 3 * IMPORT_BATCH_ROWS // 10, 9


class RecordedProgress(MemoryImportProgress):
    """The memory store, keeping every progress put into it, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.puts: list[ImportProgress] = []

    async def put(self, owner_id: str, progress: ImportProgress, ttl_s: float) -> None:
        self.puts.append(progress)
        await super().put(owner_id, progress, ttl_s)


def caller() -> Caller:
    return Caller(secrets.token_urlsafe(24), "192.0.2.20")


def large_export() -> bytes:
    return export([conversation(messages=MESSAGES_EACH, title=f"chat {n}") for n in range(CONVERSATIONS)])


async def until_ended(actions: Actions, who: Caller) -> list[ImportProgress | None]:
    return [progress async for progress in actions.watch_import(who)]


def with_store(actions: Actions, store: MemoryImportProgress) -> Actions:
    actions.imports = ImportJobs(actions.library, store)
    return actions


async def test_an_import_job_reports_what_it_has_stored_after_each_batch(settings: Settings, engine: Engine) -> None:
    store = RecordedProgress()
    actions, who = with_store(make_services(settings).actions, store), caller()

    started = await actions.start_import(who, large_export())
    stored_at_start = rows(engine, who.owner_id)
    watched = await until_ended(actions, who)
    puts = [p for n, p in enumerate(store.puts) if n == 0 or p != store.puts[n - 1]]  # less the heartbeats

    assert (started.state, started.ended) == (READING, False)
    assert stored_at_start == (0, 0)  # the door returned before the job stored anything
    assert [p.state for p in puts] == [READING, STORING, STORING, STORING, STORING, DONE]
    counted = [(p.conversations, p.messages) for p in puts[1:5]]
    per_batch = IMPORT_BATCH_ROWS // 10
    assert counted == [(n * per_batch, n * per_batch * MESSAGES_EACH) for n in range(4)]
    assert {(p.total_conversations, p.total_messages) for p in puts[1:]} == {
        (CONVERSATIONS, CONVERSATIONS * MESSAGES_EACH)
    }
    assert [p.percent for p in puts] == [0, 0, 33, 66, 100, 100]
    end = puts[-1]
    assert end.message == f"Imported {CONVERSATIONS} conversations."
    assert watched[-1] == end and all(p is not None for p in watched)
    assert len({p.job_id for p in puts}) == 1
    assert rows(engine, who.owner_id) == (CONVERSATIONS, CONVERSATIONS * MESSAGES_EACH)
    assert await actions.import_progress(who) == end  # a tab that comes back finds how it ended


async def test_a_rejected_file_ends_the_job_with_the_reason_and_stores_nothing(settings: Settings) -> None:
    actions, who = make_services(settings).actions, caller()

    await actions.start_import(who, export([conversation({"temperature": 7})]))
    *_, end = await until_ended(actions, who)

    assert end is not None and end.state == FAILED
    assert end.message.startswith("Nothing was imported: Conversation 1, settings: Temperature must be between 0 and 2")


async def test_one_import_runs_at_a_time_per_identity_within_the_import_limits(settings: Settings) -> None:
    actions = make_services(settings.model_copy(update=dict(imports_per_hour=2, max_import_bytes=2**20))).actions
    who, other = caller(), caller()

    await actions.start_import(who, large_export())
    with pytest.raises(Refused) as busy:  # the job has not run yet: this store answers without waiting
        await actions.start_import(who, export([conversation()]))
    await actions.start_import(other, export([conversation()]))  # another identity is not held up
    await until_ended(actions, who)
    await actions.start_import(who, export([conversation()]))
    await until_ended(actions, who)
    with pytest.raises(Refused) as limited:
        await actions.start_import(who, export([conversation()]))
    await until_ended(actions, other)
    with pytest.raises(Refused) as too_large:
        await actions.start_import(other, b" " * (2**20 + 1))

    assert (busy.value.kind, busy.value.message) == (RefusalKind.BUSY, ALREADY_RUNNING)
    assert limited.value.code == "imports"  # the refused second start did not count: two imports did
    assert too_large.value.kind == RefusalKind.TOO_LARGE and "imports are limited to 1 MB" in too_large.value.message


async def test_a_shutdown_discards_a_running_import_and_says_so(settings: Settings, engine: Engine) -> None:
    actions, who = make_services(settings).actions, caller()

    await actions.start_import(who, large_export())
    async for progress in actions.watch_import(who):
        if progress is not None and progress.state == STORING and progress.conversations > 0:
            break  # a batch is stored (staged) by now
    await actions.imports.aclose()

    end = await actions.imports.store.get(who.owner_id)
    assert end is not None and (end.state, end.message) == (FAILED, STOPPED)
    assert rows(engine, who.owner_id) == (0, 0)
    assert rows(engine, STAGING_PREFIX) == (0, 0)


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of the test's own in the shared Redis (database 2), its keys deleted afterwards."""
    prefix = f"test-import-{uuid.uuid4().hex[:10]}"
    client = redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        skip_or_fail(f"Redis is not reachable at {REDIS_URL}: {type(exc).__name__}")
    yield prefix
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
    client.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_with_redis_another_process_follows_the_import_and_cannot_start_a_second(
    settings: Settings, redis_prefix: str
) -> None:
    """Two sets of services stand for two backend processes: the tab reloads onto the second."""
    first, second = make_services(settings).actions, make_services(settings).actions
    for actions in (first, second):
        actions.imports = ImportJobs(actions.library, RedisImportProgress(REDIS_URL, prefix=redis_prefix))
    who = caller()

    # Another writer holds SQLite's write lock meanwhile: the import cannot end before the second start.
    writer = sqlite3.connect(settings.database_url.removeprefix("sqlite:///"), isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        started = await first.start_import(who, large_export())
        with pytest.raises(Refused, match="already running"):
            await second.start_import(who, export([conversation()]))
    finally:
        writer.execute("COMMIT")
        writer.close()
    seen = await until_ended(second, who)
    await asyncio.gather(first.imports.aclose(), second.imports.aclose())

    assert seen[0] is not None and seen[0].job_id == started.job_id
    end = seen[-1]
    assert end is not None and dataclasses.astuple(end)[1:] == (
        DONE,
        CONVERSATIONS,
        CONVERSATIONS * MESSAGES_EACH,
        CONVERSATIONS,
        CONVERSATIONS * MESSAGES_EACH,
        f"Imported {CONVERSATIONS} conversations.",
    )
    assert who.owner_id not in str(redis.from_url(REDIS_URL).keys(f"{redis_prefix}:*"))  # keyed by a digest


async def test_without_the_redis_that_keeps_progress_no_import_starts_and_none_is_counted(settings: Settings) -> None:
    actions = make_services(settings.model_copy(update=dict(imports_per_hour=1))).actions
    working = actions.imports
    actions.imports = ImportJobs(actions.library, RedisImportProgress(f"redis://127.0.0.1:{free_port()}"))
    who = caller()

    with pytest.raises(Refused) as refused:
        await actions.start_import(who, export([conversation()]))
    await actions.imports.aclose()
    actions.imports = working  # Redis is back: the refused start did not count against the limit
    await actions.start_import(who, export([conversation()]))
    *_, end = await until_ended(actions, who)

    assert (refused.value.kind, refused.value.message) == (RefusalKind.UNAVAILABLE, IMPORTS_UNAVAILABLE)
    assert end is not None and end.state == DONE
