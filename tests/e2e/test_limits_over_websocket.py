"""The per-address limit holds over the websocket, where a script can mint a fresh identity per message.

Thirty websocket clients (as thirty browser tabs with empty storage would) each get a new identity
from one address and send one message, all within a minute, with the address limit at 10: at most
10 calls reach the provider, and every other client is told the limit's message.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.metadata
from collections.abc import Iterator
from typing import Any

import pytest
from reflex_base.constants.state import FIELD_MARKER

from chatbot_app.state.reply import ReplyState
from chatbot_app.state.session import SessionState
from tests.conftest import TEST_API_KEY, migrate
from tests.e2e.live_app import Backend, backend_only
from tests.e2e.reflex_client import ReflexClient
from tests.fakes.fake_llm_server import FakeLLMServer

pytestmark = pytest.mark.e2e

ADDRESS_LIMIT = 10
IDENTITIES = 30
SESSION = SessionState.get_full_name()
IDENTITY_VAR = f"{SESSION}.identity{FIELD_MARKER}"
ADDRESS_REFUSAL = f"Too many messages from your network: the limit is {ADDRESS_LIMIT} a minute."


@pytest.fixture(scope="module")
def limited_backend(tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLMServer) -> Iterator[Backend]:
    workdir = tmp_path_factory.mktemp("address_limit")
    database_url = f"sqlite:///{workdir / 'app.db'}"
    migrate(database_url)
    with backend_only(
        workdir,
        database_url,
        GROQ_API_KEY=TEST_API_KEY,
        GROQ_BASE_URL=fake_llm.base_url,
        CHATBOT_MODEL="fake-large",
        CHATBOT_ADDRESS_RATE_LIMIT_PER_MINUTE=str(ADDRESS_LIMIT),
    ) as backend:
        yield backend


async def fresh_identity_sends_one_message(backend_url: str, number: int) -> tuple[str, str]:
    """A new tab with empty storage sends one message; returns (its identity, "stored" or the notice)."""
    values: dict[tuple[str, str], Any] = {}
    changed = asyncio.Event()

    def on_update(_at: float, _size: int, update: dict[str, Any]) -> None:
        for state_name, fields in (update.get("delta") or {}).items():
            for var, value in fields.items():
                values[(state_name, var)] = value
        changed.set()

    client = ReflexClient(
        backend_url, importlib.metadata.version("reflex"), synced_storage=frozenset({IDENTITY_VAR}), on_update=on_update
    )
    await client.connect()
    try:
        await asyncio.wait_for(client.hydrated.wait(), 30)
        await client.emit(f"{ReplyState.get_full_name()}.send_message", {"form_data": {"message": f"hello {number}"}})
        async with asyncio.timeout(30):
            while True:
                if values.get((SESSION, f"conversation_id{FIELD_MARKER}")):
                    outcome = "stored"
                    break
                if notice := values.get((SESSION, f"notice{FIELD_MARKER}")):
                    outcome = str(notice)
                    break
                changed.clear()
                await changed.wait()
    finally:
        await client.close()
    return client.local_storage.get(IDENTITY_VAR, ""), outcome


async def thirty_fresh_identities(backend_url: str) -> list[tuple[str, str]]:
    return await asyncio.gather(*(fresh_identity_sends_one_message(backend_url, n) for n in range(IDENTITIES)))


def test_thirty_fresh_identities_from_one_address_get_at_most_the_address_limit_of_provider_calls(
    limited_backend: Backend, fake: FakeLLMServer
) -> None:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        outcomes = pool.submit(asyncio.run, thirty_fresh_identities(limited_backend.url)).result(timeout=120)

    identities = {identity for identity, _ in outcomes}
    assert len(identities) == IDENTITIES and "" not in identities  # each tab really was a new identity
    stored = [o for _, o in outcomes if o == "stored"]
    refused = [o for _, o in outcomes if o != "stored"]
    assert 1 <= len(stored) <= ADDRESS_LIMIT
    assert refused and all(ADDRESS_REFUSAL in o for o in refused), refused
    assert len(stored) + len(refused) == IDENTITIES
    fake.wait_for_chat_requests(len(stored))  # each stored message's reply has reached the provider
    # Every call that reached the provider was counted: replies and the titles that follow them.
    assert 1 <= len(fake.streamed_requests()) <= len(fake.chat_requests()) <= ADDRESS_LIMIT
    assert "Traceback" not in limited_backend.log_text()
