"""Reply jobs and their logs, below the browser: in process and on Redis, with real peers.

The fake Groq server answers through the real SDK; the Redis log talks to the Redis server on
loopback (each test under a key prefix of its own); a follower "on another process" really is a
second Python process.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, event
from sqlmodel import Session

from chatbot_app.config import PROJECT_ROOT, Settings
from chatbot_app.services.chat_service import ChatService, Turn
from chatbot_app.services.reply_jobs import ReplyJobs, ReplyResult, apply
from chatbot_app.services.reply_log import START, Finished, MemoryReplyLog, RedisReplyLog, ReplyLog, Snapshot
from chatbot_app.services.retry import RetryPolicy
from chatbot_app.storage import conversations as store
from chatbot_app.storage.database import session_scope
from chatbot_app.storage.models import Message, MessageStatus
from tests.conftest import make_service, skip_or_fail
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer
from tests.replies import frames, run_reply

OWNER = "owner-" + "j" * 20
REDIS_URL = "redis://127.0.0.1:6379/0"
#: A bound on waits for conditions (never a timing assertion): generous for a loaded 2-core machine.
BOUND_S = 60


async def redis_log(prefix: str) -> RedisReplyLog:
    log = RedisReplyLog(REDIS_URL, retention_s=60, prefix=prefix)
    try:
        await log._redis.ping()
    except Exception as exc:
        skip_or_fail(f"Redis is not reachable at {REDIS_URL}: {type(exc).__name__}")
    return log


@pytest.fixture(params=["memory", "redis"])
async def reply_log(request: pytest.FixtureRequest) -> AsyncIterator[ReplyLog]:
    if request.param == "memory":
        yield MemoryReplyLog(retention_s=60)
        return
    log = await redis_log(f"test-{secrets.token_hex(6)}")
    yield log
    keys = [key async for key in log._redis.scan_iter(f"{log.prefix}:*")]
    if keys:
        await log._redis.delete(*keys)
    await log.aclose()


@pytest.fixture
async def jobs(service: ChatService, reply_log: ReplyLog) -> AsyncIterator[ReplyJobs]:
    jobs = ReplyJobs(service, reply_log)
    yield jobs
    await jobs.aclose()


async def turn(service: ChatService, text: str = "Tell me a story.") -> Turn:
    return await service.start_turn(OWNER, None, text)


async def run_reply_text(service: ChatService, reply: Turn) -> str:
    """The reply's text as stored once it has ended."""
    async with asyncio.timeout(BOUND_S):
        while (message := await service.load_message(OWNER, reply.conversation_id, reply.reply_id)) is not None:
            if message.status != MessageStatus.STREAMING:
                return message.content
            await asyncio.sleep(0.05)
    raise AssertionError("the reply row is gone")


def stored(engine: Engine, reply_id: int) -> Message:
    with Session(engine) as session:
        message = session.get(Message, reply_id)
        assert message is not None
        return message


async def follow_until(jobs: ReplyJobs, reply_id: int, predicate, cursor: str = START) -> tuple[str, ReplyResult]:  # type: ignore[no-untyped-def]
    """Follow from `cursor` until `predicate(result)` holds; the cursor to go on from, and the result."""
    result = ReplyResult()
    async with asyncio.timeout(BOUND_S):
        async for cursor, events in jobs.follow(reply_id, cursor):  # noqa: B007, B020  (the caller reads on from it)
            apply(result, events)
            if predicate(result):
                break
    return cursor, result


# -- the job and its log -------------------------------------------------------------------------


async def test_a_job_runs_to_its_end_with_nobody_following(
    service: ChatService, jobs: ReplyJobs, engine: Engine, fake: FakeLLMServer
) -> None:
    fake.enqueue(Behaviour(tokens=60, tokens_per_s=600))
    reply = await turn(service)

    await jobs.start(reply)
    async with asyncio.timeout(BOUND_S):
        await jobs.join(reply.reply_id)

    row = stored(engine, reply.reply_id)
    assert row.status == "complete" and len(row.content.split()) == 60


async def test_the_log_holds_each_frames_new_text_then_one_end(
    service: ChatService, jobs: ReplyJobs, fake: FakeLLMServer
) -> None:
    fake.enqueue(Behaviour(tokens=80, tokens_per_s=400))
    reply = await turn(service)

    result, events = await run_reply(service, reply, jobs=jobs)

    shown = frames(events)
    assert len(shown) > 2  # streamed, not all at once
    assert "".join(f.text for f in shown) == result.text  # frames carry only new text
    assert [type(e).__name__ for e in events].count("Finished") == 1 and isinstance(events[-1], Finished)
    assert result.finished is not None and result.finished.status == "complete"


async def test_a_late_follower_gets_the_text_so_far_at_once_then_the_live_tail(
    service: ChatService, jobs: ReplyJobs, fake: FakeLLMServer
) -> None:
    fake.enqueue(Behaviour(tokens=150, tokens_per_s=150))
    reply = await turn(service)
    await jobs.start(reply)
    await follow_until(jobs, reply.reply_id, lambda r: len(r.text.split()) >= 40)  # the asking tab, meanwhile

    late = ReplyResult()
    first_batch: list[object] = []
    async with asyncio.timeout(BOUND_S):
        async for _, events in jobs.follow(reply.reply_id):
            if not first_batch:
                first_batch = list(events)
            apply(late, events)

    so_far = ReplyResult()
    apply(so_far, first_batch)  # type: ignore[arg-type]
    assert len(so_far.text.split()) >= 40  # all the text so far, in one batch
    assert late.finished is not None and len(late.text.split()) == 150
    assert late.text.startswith(so_far.text)


async def test_a_follower_that_leaves_and_rejoins_from_its_cursor_misses_nothing_and_repeats_nothing(
    service: ChatService, jobs: ReplyJobs, fake: FakeLLMServer
) -> None:
    fake.enqueue(Behaviour(tokens=120, tokens_per_s=200))
    reply = await turn(service)
    await jobs.start(reply)

    cursor, before = await follow_until(jobs, reply.reply_id, lambda r: len(r.text.split()) >= 20)
    # Away while the reply goes on: another follower sees it reach 60 words meanwhile.
    await follow_until(jobs, reply.reply_id, lambda r: len(r.text.split()) >= 60)
    _, after = await follow_until(jobs, reply.reply_id, lambda r: r.finished is not None, cursor)

    whole = await run_reply_text(service, reply)
    assert before.text + after.text == whole
    assert len(whole.split()) == 120
    assert after.finished is not None and after.finished.status == "complete"


async def test_a_long_reply_log_is_compacted_behind_a_snapshot(
    settings: Settings, engine: Engine, reply_log: ReplyLog, fake: FakeLLMServer
) -> None:
    service = make_service(settings.model_copy(update=dict(frame_interval_ms=10)), engine)
    compact_every = 20
    jobs = ReplyJobs(service, reply_log, compact_every=compact_every)
    fake.enqueue(Behaviour(tokens=300, tokens_per_s=100))  # about one token per frame
    reply = await turn(service)
    await jobs.start(reply)
    async with asyncio.timeout(BOUND_S):
        await jobs.join(reply.reply_id)

    late = ReplyResult()
    events = []
    async for _, batch in jobs.follow(reply.reply_id):
        events += batch
        apply(late, batch)

    assert any(isinstance(e, Snapshot) for e in events)
    assert len(events) <= compact_every + 1  # the snapshot, what came after it, and the end
    assert late.text == stored(engine, reply.reply_id).content
    await jobs.aclose()


# -- stop, in every phase ------------------------------------------------------------------------


async def stop_once_requested(jobs: ReplyJobs, reply: Turn, fake: FakeLLMServer) -> ReplyResult:
    """Wait until the upstream request is in flight, stop, and follow the reply to its end."""
    await asyncio.to_thread(fake.wait_for_chat_requests, 1, BOUND_S)
    await jobs.stop(reply.reply_id)
    _, result = await follow_until(jobs, reply.reply_id, lambda r: r.finished is not None)
    return result


async def test_stop_while_waiting_for_a_slow_first_token_ends_it_at_once_and_closes_the_upstream(
    service: ChatService, jobs: ReplyJobs, engine: Engine, fake: FakeLLMServer
) -> None:
    fake.enqueue(Behaviour(first_token_delay_s=60, text="never shown"))
    reply = await turn(service)
    await jobs.start(reply)

    result = await stop_once_requested(jobs, reply, fake)

    assert result.finished is not None and result.finished.status == "stopped" and result.text == ""
    assert await asyncio.to_thread(fake.abort_seen.wait, BOUND_S)
    assert (stored(engine, reply.reply_id).status, stored(engine, reply.reply_id).content) == ("stopped", "")


async def test_stop_during_a_retry_wait_ends_it_without_another_try(
    settings: Settings, engine: Engine, reply_log: ReplyLog, fake: FakeLLMServer
) -> None:
    policy = RetryPolicy(attempts=3, max_retry_after_s=120)
    service = make_service(settings, engine, retry=policy)
    jobs = ReplyJobs(service, reply_log)
    fake.enqueue(Behaviour(status=429, retry_after="60"), Behaviour(text="too late"))
    reply = await turn(service)
    await jobs.start(reply)

    cursor, waiting = await follow_until(jobs, reply.reply_id, lambda r: bool(r.notice))  # "retrying in 60 s"
    await jobs.stop(reply.reply_id)
    _, result = await follow_until(jobs, reply.reply_id, lambda r: r.finished is not None, cursor)

    assert "retrying" in waiting.notice
    assert result.finished is not None and result.finished.status == "stopped"
    assert len(fake.chat_requests()) == 1
    assert stored(engine, reply.reply_id).status == "stopped"
    await jobs.aclose()


async def test_stop_during_a_batch_request_stores_what_the_page_shows(
    service: ChatService, jobs: ReplyJobs, engine: Engine, fake: FakeLLMServer
) -> None:
    fake.enqueue_batch(Behaviour(first_token_delay_s=60, text="the whole reply"))
    reply = await turn(service)
    await jobs.start(reply, batch=True)

    result = await stop_once_requested(jobs, reply, fake)

    assert result.finished is not None and result.finished.status == "stopped"
    row = stored(engine, reply.reply_id)
    assert (row.status, row.content) == ("stopped", result.text) == ("stopped", "")


@pytest.fixture
async def shared_jobs(service: ChatService) -> AsyncIterator[tuple[ReplyJobs, str]]:
    """Jobs whose log is in Redis under this test's own prefix, as other processes share it."""
    prefix = f"test-{secrets.token_hex(6)}"
    log = await redis_log(prefix)
    jobs = ReplyJobs(service, log)
    yield jobs, prefix
    await jobs.aclose()
    await log.aclose()


async def test_stop_from_another_process_reaches_the_job(
    service: ChatService, shared_jobs: tuple[ReplyJobs, str], engine: Engine, fake: FakeLLMServer
) -> None:
    jobs, prefix = shared_jobs
    fake.enqueue(Behaviour(tokens=2000, tokens_per_s=50))
    reply = await turn(service)
    await jobs.start(reply)
    await follow_until(jobs, reply.reply_id, lambda r: bool(r.text))

    other = await asyncio.to_thread(run_other_process, prefix, reply.reply_id, "stop")

    assert other["finished"] == "stopped"
    assert other["text"] and len(other["text"].split()) < 2000
    row = stored(engine, reply.reply_id)
    assert row.status == "stopped" and row.content.startswith(other["text"][:20])


# -- followers on another process ------------------------------------------------------------------


def run_other_process(prefix: str, reply_id: int, action: str, cursor: str = START) -> dict[str, object]:
    """Follow (and with action "stop", first stop) a reply from a second Python process, through Redis."""
    follower = str(Path(__file__).with_name("reply_follower.py"))
    completed = subprocess.run(
        [sys.executable, follower, REDIS_URL, prefix, str(reply_id), action, cursor],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=BOUND_S * 2,
        check=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


async def test_a_follower_on_another_process_sees_the_whole_reply(
    service: ChatService, shared_jobs: tuple[ReplyJobs, str], engine: Engine, fake: FakeLLMServer
) -> None:
    jobs, prefix = shared_jobs
    fake.enqueue(Behaviour(tokens=200, tokens_per_s=200))
    reply = await turn(service)
    await jobs.start(reply)

    other = await asyncio.to_thread(run_other_process, prefix, reply.reply_id, "follow")

    assert other["finished"] == "complete"
    assert other["text"] == stored(engine, reply.reply_id).content
    assert other["frames"] > 2  # it followed live, frame by frame


async def test_a_cursor_read_in_the_jobs_process_reads_on_from_redis_in_another(
    service: ChatService, shared_jobs: tuple[ReplyJobs, str], engine: Engine, fake: FakeLLMServer
) -> None:
    # As when a tab's websocket moves to another backend mid-reply: its cursor means the same there.
    jobs, prefix = shared_jobs
    fake.enqueue(Behaviour(tokens=300, tokens_per_s=150))
    reply = await turn(service)
    await jobs.start(reply)
    cursor, here = await follow_until(jobs, reply.reply_id, lambda r: len(r.text.split()) >= 30)

    there = await asyncio.to_thread(run_other_process, prefix, reply.reply_id, "follow", cursor)

    assert there["finished"] == "complete"
    assert here.text + str(there["text"]) == stored(engine, reply.reply_id).content
    assert len(stored(engine, reply.reply_id).content.split()) == 300


async def xread_calls(log: RedisReplyLog) -> int:
    """XREADs the Redis server has answered so far (its own command statistics)."""
    return int((await log._redis.info("commandstats")).get("cmdstat_xread", {}).get("calls", 0))


async def test_a_follower_in_the_jobs_own_process_reads_its_memory_not_redis(
    service: ChatService, shared_jobs: tuple[ReplyJobs, str], fake: FakeLLMServer
) -> None:
    jobs, _ = shared_jobs
    assert isinstance(jobs.log, RedisReplyLog)
    fake.enqueue(Behaviour(tokens=200, tokens_per_s=400))
    reply = await turn(service)
    before = await xread_calls(jobs.log)

    result, _ = await run_reply(service, reply, jobs=jobs)

    assert result.finished is not None and len(result.text.split()) == 200
    assert result.frames > 2
    assert await xread_calls(jobs.log) == before


# -- liveness: heartbeats, not tokens ---------------------------------------------------------------


async def test_a_slow_but_live_job_is_never_swept_and_a_dead_ones_reply_is(
    settings: Settings, engine: Engine, reply_log: ReplyLog, fake: FakeLLMServer
) -> None:
    quick = settings.model_copy(update=dict(stale_reply_s=1))  # heartbeats every third of a second
    service = make_service(quick, engine)
    jobs = ReplyJobs(service, reply_log)
    fake.enqueue(Behaviour(first_token_delay_s=4, text="slow but alive"))
    live = await turn(service, "Take your time.")
    await jobs.start(live)
    # A reply left `streaming` by a process that died: no job heartbeats it.
    dead = await turn(service, "Nobody is writing this one.")

    async with asyncio.timeout(BOUND_S):
        while stored(engine, dead.reply_id).status == MessageStatus.STREAMING:
            await jobs.sweep()
            assert stored(engine, live.reply_id).status == MessageStatus.STREAMING
            await asyncio.sleep(0.2)
        _, result = await follow_until(jobs, live.reply_id, lambda r: r.finished is not None)

    assert stored(engine, dead.reply_id).status == MessageStatus.INTERRUPTED
    assert result.finished is not None and result.finished.status == "complete"
    assert stored(engine, live.reply_id).status == MessageStatus.COMPLETE
    await jobs.aclose()


async def test_one_transaction_checkpoints_every_running_reply_of_the_process(
    settings: Settings, engine: Engine, fake: FakeLLMServer
) -> None:
    quick = settings.model_copy(update=dict(stale_reply_s=1))  # a checkpoint round every third of a second
    service = make_service(quick, engine)
    jobs = ReplyJobs(service, MemoryReplyLog())
    statements: dict[int, int] = {}  # checkpoint UPDATEs per open transaction, by connection
    rounds: list[int] = []  # checkpoint UPDATEs in each committed transaction that had any
    two_rounds = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_statement(connection, _cursor, statement: str, *_args) -> None:  # type: ignore[no-untyped-def]
        setting = statement.split(" WHERE ")[0]
        if setting.startswith("UPDATE message SET") and "status" not in setting:  # not a final save
            statements[id(connection)] = statements.get(id(connection), 0) + 1

    def on_commit(connection) -> None:  # type: ignore[no-untyped-def]
        if count := statements.pop(id(connection), 0):
            rounds.append(count)
            if len(rounds) >= 2:
                loop.call_soon_threadsafe(two_rounds.set)

    fake.enqueue(*[Behaviour(tokens=400, tokens_per_s=40) for _ in range(6)])
    replies = [await turn(service, f"Story {n}.") for n in range(6)]
    event.listen(engine, "before_cursor_execute", on_statement)
    event.listen(engine, "commit", on_commit)
    try:
        for reply in replies:
            await jobs.start(reply)
        async with asyncio.timeout(BOUND_S):
            await two_rounds.wait()
    finally:
        event.remove(engine, "before_cursor_execute", on_statement)
        event.remove(engine, "commit", on_commit)
        await jobs.aclose()

    assert rounds[:2] == [6, 6]  # each round: one transaction, one UPDATE for each of the six replies


async def test_a_checkpoint_never_revives_an_ended_reply(service: ChatService, engine: Engine) -> None:
    dead = await turn(service)
    with session_scope(engine) as session:
        assert store.interrupt_reply(session, dead.reply_id)

    assert await service.checkpoint_reply(dead.reply_id, "late text") is True  # the row is there
    assert stored(engine, dead.reply_id).status == MessageStatus.INTERRUPTED


async def test_a_reply_whose_row_was_removed_stops_and_reports_the_conflict(
    settings: Settings, engine: Engine, reply_log: ReplyLog, fake: FakeLLMServer
) -> None:
    quick = settings.model_copy(update=dict(stale_reply_s=1))
    service = make_service(quick, engine)
    jobs = ReplyJobs(service, reply_log)
    fake.enqueue(Behaviour(tokens=4000, tokens_per_s=100))
    reply = await turn(service)
    await jobs.start(reply)
    cursor, _ = await follow_until(jobs, reply.reply_id, lambda r: bool(r.text))

    with session_scope(engine) as session:  # another writer removes the row without telling the job
        session.delete(session.get(Message, reply.reply_id))

    _, result = await follow_until(jobs, reply.reply_id, lambda r: r.finished is not None, cursor)
    assert result.finished is not None and result.finished.conflict
    assert await asyncio.to_thread(fake.abort_seen.wait, BOUND_S)  # the upstream request was closed
    await jobs.aclose()


async def test_regenerate_stops_a_running_reply_before_replacing_it(
    service: ChatService, jobs: ReplyJobs, engine: Engine, fake: FakeLLMServer
) -> None:
    fake.enqueue(Behaviour(tokens=4000, tokens_per_s=100), Behaviour(text="A new answer."))
    first = await turn(service)
    await jobs.start(first)
    await follow_until(jobs, first.reply_id, lambda r: bool(r.text))

    running = await service.streaming_replies(OWNER, first.conversation_id)
    await jobs.stop_and_wait(running)
    again = await service.start_regeneration(OWNER, first.conversation_id)
    result, _ = await run_reply(service, again, jobs=jobs)

    assert running == [first.reply_id]
    assert result.text == "A new answer."
    _, messages = await service.load_conversation(OWNER, first.conversation_id)
    assert [(m.role, m.content, m.status) for m in messages][1:] == [("assistant", "A new answer.", "complete")]


async def test_stop_while_queued_behind_the_local_model_ends_it_and_leaves_the_running_one_alone(
    engine: Engine, database_url: str
) -> None:
    local = Settings(database_url=database_url, groq_api_key=None, local_model="", max_reply_tokens=300)
    service = make_service(local, engine)
    jobs = ReplyJobs(service, MemoryReplyLog())
    running, queued = await turn(service, "Write a long poem."), await turn(service, "And another one.")
    await jobs.start(running)
    await follow_until(jobs, running.reply_id, lambda r: bool(r.text))  # the model is busy with the first
    await jobs.start(queued)

    await jobs.stop(queued.reply_id)
    _, result = await follow_until(jobs, queued.reply_id, lambda r: r.finished is not None)

    assert result.finished is not None and (result.finished.status, result.text) == ("stopped", "")
    assert jobs.is_running_here(running.reply_id)  # the generation in progress goes on
    await jobs.stop(running.reply_id)
    _, first = await follow_until(jobs, running.reply_id, lambda r: r.finished is not None)
    assert first.finished is not None and first.finished.status == "stopped" and first.text


# -- opening a page: a fixed number of queries, whatever ?m= holds ------------------------------------


@pytest.mark.parametrize("target", ["first", "middle", "older than the first", "foreign", "unknown", "none"])
async def test_opening_a_conversation_takes_a_fixed_number_of_queries_whatever_the_target(
    service: ChatService, engine: Engine, target: str
) -> None:
    first = await service.start_turn(OWNER, None, "message 0")
    for number in range(1, 120):  # more than one window of messages
        await service.start_turn(OWNER, first.conversation_id, f"message {number}")
    other = await service.start_turn("stranger-" + "s" * 20, None, "not yours")
    _, messages = await service.load_conversation(OWNER, first.conversation_id)
    ids = [m.id or 0 for m in messages]
    at = {
        "first": ids[0],
        "middle": ids[len(ids) // 2],
        "older than the first": 1 if ids[0] > 1 else 0,
        "foreign": other.user_message_id,
        "unknown": 10**9,
        "none": 0,
    }[target]
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        opened = await service.open_conversation(OWNER, first.conversation_id, window=50, at_message=at, cap=2_000)
    finally:
        event.remove(engine, "before_cursor_execute", count)

    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) <= 6, selects  # owner check, newest window, target, from the target, one older, totals
    shown = [m.id for m in opened.messages]
    assert shown[-1] == ids[-1]  # always the newest
    if target in ("first", "middle"):
        assert shown[0] == at and opened.has_earlier is (target == "middle")
    else:
        assert len(shown) == 50 and opened.has_earlier
