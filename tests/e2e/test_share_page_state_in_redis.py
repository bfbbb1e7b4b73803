"""The share page's snapshot is read from the database on each page load, not kept per visitor in Redis.

Visitors of a large share and of a tiny one (each a websocket client, as a browser tab speaks to the
backend) are each shown the whole snapshot; afterwards the state Redis holds for each visitor's tab is
as small for the large share as for the tiny one. Before, every visit kept its own copy of the snapshot
for an hour (10 visits to a 2 MiB share kept 20 MiB).
"""

from __future__ import annotations

import importlib.metadata
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

from chatbot_app.services.shares import ShareLinks
from chatbot_app.state.share import SharePageState
from chatbot_app.storage import conversations as conversation_store
from chatbot_app.storage.database import make_engine, session_scope
from chatbot_app.storage.models import Conversation
from tests.conftest import TEST_API_KEY, migrate, skip_or_fail
from tests.e2e.live_app import Backend, backend_only
from tests.e2e.reflex_client import ReflexClient, in_thread
from tests.fakes.fake_llm_server import FakeLLMServer

pytestmark = pytest.mark.e2e

REDIS_URL = "redis://127.0.0.1:6379/12"  # only this module's visitors' keys are read, by their tokens
VISITS = 10
#: Under CHATBOT_MAX_SHARE_BYTES (1 MiB), as large a share as one may be.
LARGE_CHARS = 900_000
OWNER = "share-visits-" + "v" * 16


@dataclass(frozen=True)
class Shares:
    backend: Backend
    large: str
    tiny: str


def make_share(database_url: str, content: str) -> str:
    engine = make_engine(database_url)
    with session_scope(engine) as session:
        conversation = Conversation(owner_id=OWNER, title="Visited")
        session.add(conversation)
        session.flush()
        conversation_store.add_message(session, conversation, "user", content)
        conversation_id = conversation.id
    token = in_thread(lambda: ShareLinks(engine).create(OWNER, conversation_id))
    engine.dispose()
    return token


@pytest.fixture(scope="module")
def shares(tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLMServer) -> Iterator[Shares]:
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.RedisError as exc:
        skip_or_fail(f"Redis is not reachable at {REDIS_URL}: {exc}")
    workdir = tmp_path_factory.mktemp("share_visits")
    database_url = f"sqlite:///{workdir / 'app.db'}"
    migrate(database_url)
    large, tiny = make_share(database_url, "x" * LARGE_CHARS), make_share(database_url, "hi")
    with backend_only(
        workdir,
        database_url,
        REFLEX_REDIS_URL=REDIS_URL,
        # Each event's state is written to Redis as the event ends, as in `make prod`.
        REFLEX_OPLOCK_ENABLED="false",
        GROQ_API_KEY=TEST_API_KEY,
        GROQ_BASE_URL=fake_llm.base_url,
        CHATBOT_MODEL="fake-large",
        CHATBOT_LOCAL_MODEL="off",
    ) as backend:
        yield Shares(backend, large, tiny)


async def visit(backend_url: str, token: str) -> tuple[str, int]:
    """Open /s/<token> as a new tab; returns the tab's token and how many characters of messages it was shown."""
    tab = ReflexClient(backend_url, importlib.metadata.version("reflex"))
    tab.pathname = f"/s/{token}"
    await tab.connect()
    try:
        await tab.until(lambda: tab.value(SharePageState, "loaded"))
        shown = sum(len(m["content"]) for m in tab.value(SharePageState, "shared_messages"))
    finally:
        await tab.close()
    return tab.token, shown


def stored_bytes(store: redis.Redis, tab: str) -> int:
    """The bytes Redis holds for a tab's states, once the last event has written them.

    The tab saw its page's on_load end, which happens under the tab's lock: once the lock is gone,
    the state that event wrote is in Redis.
    """
    deadline = time.monotonic() + 30
    while store.exists(f"{tab}_lock"):
        assert time.monotonic() < deadline, f"the tab {tab} still holds its state lock"
        time.sleep(0.05)
    keys = list(store.scan_iter(match=f"{tab}_*"))
    assert f"{tab}_{SharePageState.get_full_name()}".encode() in keys  # the page's state was written
    return sum(store.strlen(key) for key in keys)


async def visits(backend_url: str, token: str) -> list[tuple[str, int]]:
    return [await visit(backend_url, token) for _ in range(VISITS)]


def test_visits_to_a_share_keep_no_copy_of_its_snapshot_in_redis(shares: Shares) -> None:
    store = redis.Redis.from_url(REDIS_URL)
    large_visits = in_thread(lambda: visits(shares.backend.url, shares.large))
    tiny_visits = in_thread(lambda: visits(shares.backend.url, shares.tiny))

    large = [stored_bytes(store, tab) for tab, _ in large_visits]
    tiny = [stored_bytes(store, tab) for tab, _ in tiny_visits]
    print(f"\nRedis per visit: large share {max(large)} bytes, tiny share {max(tiny)} bytes")

    assert [shown for _, shown in large_visits] == [LARGE_CHARS] * VISITS  # each visitor saw the whole snapshot
    assert [shown for _, shown in tiny_visits] == [2] * VISITS
    # What a visit leaves in Redis does not grow with the snapshot: as much for 900 KB as for 2 characters,
    # so 10 visits together hold far less than one copy of it.
    assert max(large) <= min(tiny) + 256
    assert sum(large) < LARGE_CHARS // 10
    store.delete(*[key for tab, _ in large_visits + tiny_visits for key in store.scan_iter(match=f"{tab}_*")])
    assert "Traceback" not in shares.backend.log_text()
