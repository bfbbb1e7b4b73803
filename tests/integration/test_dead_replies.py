"""Replies whose process died, and stops that must not be lost, below the browser, with real peers.

A job "in another process" really is one (tests/integration/reply_runner.py), killed with SIGKILL;
Redis is the server on loopback (each test under a key prefix of its own), the database both SQLite
and PostgreSQL, and the fake Groq server holds the reply open where the test needs it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from chatbot_app.config import Settings
from chatbot_app.services.chat_service import ChatService
from chatbot_app.services.reply_jobs import ReplyJobs, ReplyResult, apply
from chatbot_app.services.reply_liveness import RedisLiveness, Verdict
from chatbot_app.services.reply_log import Frame, RedisReplyLog
from chatbot_app.storage.models import MessageStatus
from tests.conftest import make_service
from tests.e2e.live_app import free_port
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer, Hold
from tests.integration.test_reply_jobs import BOUND_S, OWNER, REDIS_URL, redis_log, stored, turn

RUNNER = Path(__file__).with_name("reply_runner.py")


@dataclasses.dataclass
class Shared:
    """The Redis pieces every process of one test shares: the log and the liveness, under one prefix."""

    prefix: str
    log: RedisReplyLog
    liveness: RedisLiveness


@pytest.fixture
async def shared() -> AsyncIterator[Shared]:
    prefix = f"test-{secrets.token_hex(6)}"
    log = await redis_log(prefix)
    liveness = RedisLiveness(REDIS_URL, prefix=prefix)
    yield Shared(prefix, log, liveness)
    await liveness.aclose()
    keys = [key async for key in log._redis.scan_iter(f"{prefix}:*")]
    if keys:
        await log._redis.delete(*keys)
    await log.aclose()


@pytest.fixture
async def jobs(service: ChatService, shared: Shared) -> AsyncIterator[ReplyJobs]:
    """This process's jobs: a follower (and the sweep) for replies whose jobs run elsewhere."""
    jobs = ReplyJobs(service, shared.log, liveness=shared.liveness)
    yield jobs
    await jobs.aclose()


async def follow_to_end(jobs: ReplyJobs, reply_id: int) -> ReplyResult:
    result = ReplyResult()
    async with asyncio.timeout(BOUND_S):
        async for _, events in jobs.follow(reply_id, until_finished=True):
            apply(result, events)
    return result


async def test_a_reply_whose_process_is_killed_ends_interrupted_with_every_word_its_followers_saw(
    settings: Settings, jobs: ReplyJobs, shared: Shared, engine: Engine, fake: FakeLLMServer
) -> None:
    hold = Hold(after_tokens=40)
    fake.enqueue(Behaviour(tokens=80, hold=hold))
    runner = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, str(RUNNER), settings.database_url, REDIS_URL, shared.prefix, fake.base_url, OWNER],
        stdout=subprocess.PIPE,
    )
    try:
        assert runner.stdout is not None
        started = json.loads(await asyncio.to_thread(runner.stdout.readline))
        reply_id = started["reply_id"]
        assert await asyncio.to_thread(hold.reached.wait, BOUND_S)
        seen = ReplyResult()
        async with asyncio.timeout(BOUND_S):  # a follower here sees the 40 words the job wrote there
            async for _, events in jobs.follow(reply_id):
                apply(seen, events)
                if len(seen.text.split()) == 40:
                    break
        assert (await shared.liveness.verdicts([reply_id]))[reply_id] == Verdict.ALIVE

        runner.send_signal(signal.SIGKILL)
        await asyncio.to_thread(runner.wait)
        result = await follow_to_end(jobs, reply_id)  # silent from now on: the follower finds it dead
    finally:
        runner.kill()
        await asyncio.to_thread(runner.wait)

    assert result.finished is not None and result.finished.status == MessageStatus.INTERRUPTED
    assert result.text == seen.text
    row = stored(engine, reply_id)
    assert (row.status, row.content) == (MessageStatus.INTERRUPTED, seen.text)
    assert await asyncio.to_thread(fake.abort_seen.wait, BOUND_S)  # its upstream request died with it
    assert (await shared.liveness.verdicts([reply_id]))[reply_id] == Verdict.UNKNOWN  # no longer listed


async def test_the_sweep_ends_a_dead_reply_with_its_log_when_the_log_holds_more_than_the_checkpoint(
    service: ChatService, jobs: ReplyJobs, shared: Shared, engine: Engine
) -> None:
    dead, live = await turn(service), await turn(service)
    await service.checkpoint_replies({dead.reply_id: "The first words", live.reply_id: "Still"})
    for reply, text in ((dead, "The first words of an answer"), (live, "Still going")):
        await shared.log.begin(reply.reply_id)
        await shared.log.append(reply.reply_id, Frame(text))
    # The dead reply is listed under a worker whose key has lapsed; the live one under this process.
    await shared.log._redis.hset(shared.liveness.running_key, str(dead.reply_id), "a-worker-that-died")
    await shared.liveness.register([live.reply_id])

    assert await jobs.sweep() == 1

    row = stored(engine, dead.reply_id)
    assert (row.status, row.content) == (MessageStatus.INTERRUPTED, "The first words of an answer")
    assert stored(engine, live.reply_id).status == MessageStatus.STREAMING
    result = await follow_to_end(jobs, dead.reply_id)  # its followers get its end from the log
    assert result.text == "The first words of an answer"
    assert result.finished is not None and result.finished.status == MessageStatus.INTERRUPTED
    assert await jobs.sweep() == 0  # once


async def test_a_reply_that_is_not_listed_is_left_to_the_database_heartbeat(
    settings: Settings, engine: Engine, shared: Shared
) -> None:
    quick = settings.model_copy(update=dict(stale_reply_s=1))
    service = make_service(quick, engine)
    jobs = ReplyJobs(service, shared.log, liveness=shared.liveness)
    reply = await turn(service)  # as after a Redis restart: nobody lists it, and nothing heartbeats it
    await service.checkpoint_replies({reply.reply_id: "So far"})

    assert (await shared.liveness.verdicts([reply.reply_id]))[reply.reply_id] == Verdict.UNKNOWN
    assert not await jobs.end_if_dead(reply.reply_id)
    async with asyncio.timeout(BOUND_S):
        while not await jobs.sweep():  # noqa: ASYNC110  (a second must pass without a checkpoint)
            await asyncio.sleep(0.2)
    assert (stored(engine, reply.reply_id).status, stored(engine, reply.reply_id).content) == ("interrupted", "So far")
    await jobs.aclose()


async def test_a_stop_reaches_a_job_of_another_process_when_the_message_carrying_it_is_lost(
    settings: Settings, engine: Engine, shared: Shared, fake: FakeLLMServer
) -> None:
    quick = settings.model_copy(update=dict(stale_reply_s=1))  # a checkpoint round every third of a second
    running_here = ReplyJobs(make_service(quick, engine), shared.log, liveness=shared.liveness)
    # The other process's channel to this one is down (a Redis blip): its stop message goes nowhere.
    unreachable = RedisReplyLog(f"redis://127.0.0.1:{free_port()}", prefix=shared.prefix)
    elsewhere = ReplyJobs(make_service(quick, engine), unreachable)
    hold = Hold(after_tokens=5)
    fake.enqueue(Behaviour(tokens=400, hold=hold))
    reply = await turn(running_here.service)
    await running_here.start(reply)
    assert await asyncio.to_thread(hold.reached.wait, BOUND_S)

    await elsewhere.stop(reply.reply_id)
    async with asyncio.timeout(BOUND_S):
        await running_here.join(reply.reply_id)

    assert stored(engine, reply.reply_id).status == MessageStatus.STOPPED
    assert await asyncio.to_thread(fake.abort_seen.wait, BOUND_S)  # the upstream request was closed
    await running_here.aclose()
    await elsewhere.aclose()
    await unreachable.aclose()


async def test_a_worker_is_alive_while_its_key_is_renewed_and_dead_once_it_lapses(shared: Shared) -> None:
    short = RedisLiveness(REDIS_URL, prefix=shared.prefix, ttl_s=0.6, renew_s=0.2)
    await short.register([1, 2])
    assert await shared.liveness.verdicts([1, 2, 3]) == {1: Verdict.ALIVE, 2: Verdict.ALIVE, 3: Verdict.UNKNOWN}
    await asyncio.sleep(1.0)  # what is tested is time passing: past the key's first expiry, renewals keep it
    assert await shared.liveness.verdicts([1]) == {1: Verdict.ALIVE}

    short._closing.set()  # the renewing thread stops, as it does when the process dies
    await asyncio.to_thread(short._renewer.join, 5)  # type: ignore[union-attr]
    async with asyncio.timeout(BOUND_S):
        while await shared.liveness.verdicts([1]) != {1: Verdict.DEAD}:  # noqa: ASYNC110  (a key in Redis lapses)
            await asyncio.sleep(0.1)
    assert sorted(await shared.liveness.dead_replies()) == [1, 2]
    await short.unregister(2)
    assert await shared.liveness.dead_replies() == [1]
    await short.aclose()
