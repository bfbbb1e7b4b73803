"""Many identities call every public event handler at once, in random order, with hostile arguments.

Several websocket clients (as browser tabs speak to the backend) each make a seeded random sequence
of calls: every public handler of every app state, with wrong types, hostile values, missing and
unknown arguments, real ids of other identities' conversations, and now and then a valid message
so that replies run, are stopped, regenerated, edited and cleared while the others call. Afterwards
the database must be consistent (no orphaned rows, no reply left `streaming`, every user message
followed by its reply) and the backend must have logged no Traceback.

The seed is printed (`pytest -s`) and given in every failure; CHATBOT_FUZZ_SEED=<n> replays one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib.metadata
import inspect
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import reflex as rx
import websockets
from reflex_base.constants.state import FIELD_MARKER
from sqlalchemy import text
from sqlmodel import Session

import chatbot_app.chatbot_app  # noqa: F401  (registers every state of the app, pages included)
from chatbot_app.state.library import LibraryState
from chatbot_app.state.reply import ReplyState
from chatbot_app.state.session import SessionState
from chatbot_app.storage.database import make_engine
from tests.conftest import TEST_API_KEY, migrate, new_database, skip_or_fail
from tests.e2e.live_app import Backend, backend_only
from tests.e2e.reflex_client import ReflexClient
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer

pytestmark = pytest.mark.e2e

SEED = int(os.environ.get("CHATBOT_FUZZ_SEED") or random.SystemRandom().randrange(2**32))
CLIENTS = 8
CALLS_PER_CLIENT = 120
#: The whole fuzz phase stops here even if calls remain (then fewer were made; the checks still hold).
FUZZ_SECONDS = 35
#: Replies still running when the calls end must have ended by then.
SETTLE_SECONDS = 30
REDIS_URL = "redis://127.0.0.1:6379/8"  # this suite's own Redis database: flushed before use

IDENTITY_VAR = f"{SessionState.get_full_name()}.identity{FIELD_MARKER}"
SEND = f"{ReplyState.get_full_name()}.send_message"
SEARCH = f"{LibraryState.get_full_name()}.search"
#: The share of calls that are a valid message, so that replies run while everything else is called.
SEND_SHARE = 0.2
#: Up to this long between one client's calls.
PAUSE_S = 0.12

HOSTILE: list[Any] = [
    None,
    True,
    0,
    -1,
    2**63,
    1e308,
    float("nan"),  # json.dumps writes NaN, which Python's json (the server's) reads back
    "",
    "   ",
    "x" * 40_000,
    "nul \x00 byte",
    "half \ud800 pair",
    "../../etc/passwd",
    "<img src=x onerror=alert(1)>",
    "' OR 1=1 --",
    '"; DROP TABLE message; --',
    "%s%n%x",
    "groq:",
    ":",
    [],
    [None, 1, "a"],
    {},
    {"$ne": 1},
    {"__class__": "x", "id": 1},
    [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
]
NOT_HANDLERS = ["owner_id", "show_reply", "chat_settings", "_leave", "_apply", "get_state", "__init__", "nope"]
VAR_NAMES = ["streaming", "identity", "conversation_id", "temperature", "messages", "notice", "_reply_id", "nope"]


def every_app_handler() -> dict[str, list[str]]:
    """Every public event handler of every state the app registers (Reflex's own internals aside),
    by full name, with its parameter names."""

    def walk(cls: type[rx.State]) -> Iterator[type[rx.State]]:
        yield cls
        for sub in cls.get_substates():
            yield from walk(sub)

    handlers = {}
    for cls in walk(rx.State):
        name = cls.get_full_name()
        if name.rsplit(".", 1)[-1].startswith("reflex___"):
            continue
        for handler_name, handler in cls.event_handlers.items():
            params = [p for p in inspect.signature(handler.fn).parameters if p != "self"]
            handlers[f"{name}.{handler_name}"] = params
        # And names that are not handlers: helpers for sibling states, private methods, Reflex's own.
        for not_a_handler in NOT_HANDLERS:
            handlers.setdefault(f"{name}.{not_a_handler}", ["view", "watched_under"])
    return handlers


@dataclass
class Seen:
    """What the clients have seen so far, shared: real ids to aim other identities' calls at."""

    conversation_ids: set[str] = field(default_factory=set)
    message_ids: set[int] = field(default_factory=set)
    identities: set[str] = field(default_factory=set)


def argument(rng: random.Random, param: str, seen: Seen, number: int) -> Any:
    """A value for `param`: mostly hostile, sometimes a real id of anyone's, sometimes valid."""
    roll = rng.random()
    if param in ("conversation_id",) and seen.conversation_ids and roll < 0.4:
        return rng.choice(sorted(seen.conversation_ids))
    if param in ("message_id",) and seen.message_ids and roll < 0.4:
        return rng.choice(sorted(seen.message_ids))
    if param == "form_data" and roll < 0.35:
        return {"message": f"fuzz message {number}", "title": f"title {number}", "preset_name": f"p{number % 3}"}
    if param == "format" and roll < 0.3:
        return rng.choice(["md", "json"])
    if param == "var_name" and roll < 0.6:
        return rng.choice(VAR_NAMES)
    if param == "form_data" and roll < 0.6:
        return {rng.choice(["message", "title", "temperature", "preset_name"]): rng.choice(HOSTILE)}
    return rng.choice(HOSTILE)


def payload_for(rng: random.Random, params: list[str], seen: Seen, number: int) -> dict[str, Any]:
    """Mostly the handler's own parameters; sometimes one missing, or one it does not take."""
    payload = {p: argument(rng, p, seen, number) for p in params}
    roll = rng.random()
    if roll < 0.08 and payload:
        payload.pop(rng.choice(list(payload)))
    elif roll < 0.16:
        payload["unexpected"] = rng.choice(HOSTILE)
    return payload


async def one_client(
    backend_url: str, client_number: int, handlers: dict[str, list[str]], seen: Seen, deadline: float
) -> tuple[str, list[str]]:
    """One identity's random calls; returns its identity and the calls it made (for the failure report)."""
    rng = random.Random(SEED * 1_000 + client_number)
    values: dict[tuple[str, str], Any] = {}
    changed = asyncio.Event()

    def on_update(_at: float, _size: int, update: dict[str, Any]) -> None:
        for state_name, fields in (update.get("delta") or {}).items():
            for var, value in fields.items():
                values[(state_name, var)] = value
            if isinstance(cid := fields.get(f"conversation_id{FIELD_MARKER}"), str) and cid:
                seen.conversation_ids.add(cid)
            if isinstance(messages := fields.get(f"messages{FIELD_MARKER}"), list):
                seen.message_ids.update(m["id"] for m in messages if isinstance(m, dict) and m.get("id"))
        changed.set()

    client = ReflexClient(
        backend_url,
        importlib.metadata.version("reflex"),
        synced_storage=frozenset({IDENTITY_VAR}),
        on_update=on_update,
    )
    await client.connect()
    await asyncio.wait_for(client.hydrated.wait(), 30)
    names = sorted(handlers)
    # Every handler once, in this client's own order, then random picks: each is called many times.
    plan = rng.sample(names, len(names)) + [rng.choice(names) for _ in range(CALLS_PER_CLIENT)]
    made = []
    try:
        for number in range(CALLS_PER_CLIENT):
            if time.monotonic() > deadline:
                break
            if rng.random() < SEND_SHARE:  # replies must run while the rest is called
                name, payload = SEND, {"form_data": {"message": f"fuzz message {number}"}}
            else:
                name = plan.pop(0)
                payload = payload_for(rng, handlers[name], seen, number)
            made.append(f"{name.rsplit('.', 2)[-2].split('____')[-1]}.{name.rsplit('.', 1)[-1]}({payload!r:.80})")
            if rng.random() < 0.05:  # now and then a page navigation, as a link or the back button makes
                client.pathname = rng.choice(["/", *(f"/c/{c}" for c in sorted(seen.conversation_ids)[:3])])
            try:
                await client.emit(name, payload)
            except websockets.ConnectionClosed as exc:
                closed = f"seed {SEED}: the server closed client {client_number}'s websocket after {made[-3:]}"
                raise AssertionError(closed) from exc
            await asyncio.sleep(rng.random() * PAUSE_S)
        # A last, valid call answered means every call before it was handled (a tab's events run in order).
        client.pathname = "/"
        marker = f"fuzz done {client_number}"
        await client.emit(SEARCH, {"query": marker})
        async with asyncio.timeout(30):
            while values.get((LibraryState.get_full_name(), f"search_query{FIELD_MARKER}")) != marker:
                changed.clear()
                await changed.wait()
    finally:
        seen.identities.add(client.local_storage.get(IDENTITY_VAR, ""))
        await client.close()
    return client.local_storage.get(IDENTITY_VAR, ""), made


async def fuzz(backend_url: str, handlers: dict[str, list[str]]) -> tuple[Seen, list[tuple[str, list[str]]]]:
    seen = Seen()
    deadline = time.monotonic() + FUZZ_SECONDS
    results = await asyncio.gather(
        *(one_client(backend_url, n, handlers, seen, deadline) for n in range(CLIENTS)), return_exceptions=True
    )
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        raise failures[0]
    return seen, [r for r in results if not isinstance(r, BaseException)]


def count(session: Session, sql: str) -> int:
    return int(session.execute(text(sql)).scalar_one())


def inconsistencies(database_url: str, identities: set[str], provider_calls: int) -> list[str]:
    """What is wrong with the stored data (an empty list when it is consistent)."""
    engine = make_engine(database_url)
    problems = []
    try:
        with Session(engine) as session:
            orphans = {
                "messages without a conversation": "SELECT count(*) FROM message m "
                "LEFT JOIN conversation c ON c.id = m.conversation_id WHERE c.id IS NULL",
                "attachments without a message": "SELECT count(*) FROM attachment a "
                "LEFT JOIN message m ON m.id = a.message_id WHERE m.id IS NULL",
                # Messages form a tree of turns: a user message follows a reply (or begins), a reply follows
                # a user message of the same conversation, and every user message has a reply.
                "messages that do not follow a message of the other role": "SELECT count(*) FROM message m "
                "LEFT JOIN message p ON p.id = m.parent_id WHERE (m.parent_id IS NULL AND m.role = 'assistant') "
                "OR (m.parent_id IS NOT NULL AND (p.id IS NULL OR p.conversation_id != m.conversation_id "
                "OR p.role = m.role))",
                "user messages without a reply": "SELECT count(*) FROM message u WHERE u.role = 'user' "
                "AND NOT EXISTS (SELECT 1 FROM message a WHERE a.parent_id = u.id)",
                "conversations whose current path ends nowhere": "SELECT count(*) FROM conversation c "
                "LEFT JOIN message l ON l.id = c.current_leaf_id WHERE (c.current_leaf_id IS NULL AND EXISTS "
                "(SELECT 1 FROM message m WHERE m.conversation_id = c.id)) OR (c.current_leaf_id IS NOT NULL "
                "AND (l.id IS NULL OR l.conversation_id != c.id))",
            }
            problems += [f"{n} {what}" for what, sql in orphans.items() if (n := count(session, sql))]
            owners = set(session.execute(text("SELECT DISTINCT owner_id FROM conversation")).scalars())
            if strangers := owners - identities:
                problems.append(f"conversations owned by {sorted(strangers)}, none of the clients' identities")
            answered = count(session, "SELECT count(*) FROM message WHERE role = 'assistant' AND status = 'complete'")
            if answered > provider_calls:
                problems.append(f"{answered} complete replies from only {provider_calls} provider calls")
            rows = session.execute(
                text("SELECT conversation_id, id FROM message WHERE status = 'streaming' ORDER BY conversation_id, id")
            ).all()
        for conversation_id, message_id in rows:
            problems.append(f"conversation {conversation_id}: message {message_id} still streaming")
    finally:
        engine.dispose()
    return problems


def streaming_count(database_url: str) -> int:
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            return count(session, "SELECT count(*) FROM message WHERE status = 'streaming'")
    finally:
        engine.dispose()


def _flush_own_redis_db() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).flushdb()
    except redis.RedisError as exc:
        skip_or_fail(f"Redis at {REDIS_URL} is not reachable: {exc}")


@dataclass
class FuzzedApp:
    backend: Backend
    database_url: str


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def fuzzed_app(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLMServer
) -> Iterator[FuzzedApp]:
    """A backend of its own, in production mode with Redis (states, limits and reply logs shared there)."""
    _flush_own_redis_db()
    workdir: Path = tmp_path_factory.mktemp("fuzzed")
    with contextlib.ExitStack() as stack:
        database_url = stack.enter_context(new_database(request.param, workdir, "chatbot_fuzz"))
        migrate(database_url)
        backend = stack.enter_context(
            backend_only(
                workdir,
                database_url,
                GROQ_API_KEY=TEST_API_KEY,
                GROQ_BASE_URL=fake_llm.base_url,
                CHATBOT_MODEL="fake-large",
                REFLEX_REDIS_URL=REDIS_URL,
                CHATBOT_STALE_REPLY_S="3",
                # High enough that many replies run, low enough that some calls meet each limit.
                CHATBOT_RATE_LIMIT_PER_MINUTE="30",
                CHATBOT_ADDRESS_RATE_LIMIT_PER_MINUTE="150",
            )
        )
        yield FuzzedApp(backend, database_url)


def test_many_identities_calling_every_handler_in_random_order_leave_the_database_consistent(
    fuzzed_app: FuzzedApp, fake: FakeLLMServer
) -> None:
    print(f"fuzz seed {SEED} (CHATBOT_FUZZ_SEED={SEED} replays it)")
    fake.default = Behaviour(tokens=30, tokens_per_s=150)  # replies long enough to be stopped mid-way
    backend, database_url = fuzzed_app.backend, fuzzed_app.database_url
    handlers = every_app_handler()  # here: Reflex's registry is a context variable of this thread
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = fuzz(backend.url, handlers)
        seen, results = pool.submit(asyncio.run, running).result(timeout=FUZZ_SECONDS + 60)
    calls = sum(len(made) for _, made in results)
    print(f"{calls} calls from {len(results)} identities; {len(seen.conversation_ids)} conversations seen")

    deadline = time.monotonic() + SETTLE_SECONDS
    while streaming_count(database_url) and time.monotonic() < deadline:
        time.sleep(0.2)  # polling the condition itself: the replies' jobs end on their own
    problems = inconsistencies(database_url, seen.identities, len(fake.chat_requests()))
    log = backend.log_text()
    context = f"seed {SEED}; last calls: " + "; ".join(made[-1] for _, made in results if made)
    assert problems == [], context
    assert "Traceback" not in log, f"{context}\n{log[log.find('Traceback') - 2000 :][:6000]}"
    assert all(identity for identity, _ in results), context
