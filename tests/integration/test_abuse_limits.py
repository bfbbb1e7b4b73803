"""Abuse limits that a new identity, a new key or many parallel calls do not escape (issue 11).

The service-level tests call `ChatService.admit` as the UI state does before every provider call;
the REST tests drive the real API app in process (httpx's ASGI transport sets the client address).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import secrets
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from chatbot_app.api import create_api
from chatbot_app.config import Settings
from chatbot_app.services.actions import Caller
from chatbot_app.services.chat_service import ChatService
from chatbot_app.services.limits import AbuseLimits, LimitReached, client_address
from chatbot_app.services.refusals import RefusalKind, Refused
from chatbot_app.services.reply_jobs import ReplyJobs
from chatbot_app.services.reply_log import Frame, MemoryReplyLog
from chatbot_app.storage.models import MessageStatus
from tests.conftest import TEST_API_KEY, make_service, make_services, services_from_environment, skip_or_fail
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer
from tests.replies import run_reply

#: This suite's own Redis database (shared server; see COMMON.md), keys under a random prefix.
REDIS_URL = "redis://127.0.0.1:6379/2"
ONE_ADDRESS = "203.0.113.7"


async def _redis_or_skip() -> None:
    import redis.asyncio as redis

    client = redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:  # any failure to connect means "no Redis here"
        skip_or_fail(f"Redis is not reachable at {REDIS_URL}: {type(exc).__name__}")
    finally:
        await client.aclose()


@pytest.fixture(params=["memory", "redis"])
async def limited_service(request: pytest.FixtureRequest, settings: Settings, engine) -> AsyncIterator[ChatService]:  # type: ignore[no-untyped-def]
    """A service whose address limit is 10 a minute, counting in memory or in Redis."""
    redis_url = None
    if request.param == "redis":
        await _redis_or_skip()
        redis_url = REDIS_URL
    service = make_service(settings.model_copy(update=dict(address_rate_limit_per_minute=10)), engine)
    if redis_url:  # a prefix of its own, so parallel runs and other suites never share counts
        service.limits = AbuseLimits(
            per_identity=20,
            per_address=10,
            new_identities_per_hour=30,
            imports_per_hour=10,
            active=32,
            waiting=64,
            redis_url=redis_url,
            key_prefix=f"test_{secrets.token_hex(6)}",
        )
        service.slots = service.limits.slots
    yield service
    await service.limits.reset()


def fresh_identity() -> str:
    return secrets.token_urlsafe(24)


# --- the client address --------------------------------------------------------------------------

PROXY = [ipaddress.ip_network("10.0.0.0/8")]


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "trusted", "expected"),
    [
        ("198.51.100.1", None, PROXY, "198.51.100.1"),
        # An untrusted peer's X-Forwarded-For is the client's own claim: ignored.
        ("198.51.100.1", "1.2.3.4", PROXY, "198.51.100.1"),
        ("198.51.100.1", "1.2.3.4", [], "198.51.100.1"),
        # Behind a trusted proxy: the right-most hop that is not a trusted proxy.
        ("10.0.0.2", "1.2.3.4", PROXY, "1.2.3.4"),
        ("10.0.0.2", "6.6.6.6, 1.2.3.4", PROXY, "1.2.3.4"),  # the client prepended a fake hop
        ("10.0.0.2", "1.2.3.4, 10.0.0.9", PROXY, "1.2.3.4"),  # two proxies in a row
        ("10.0.0.2", "not-an-ip", PROXY, "10.0.0.2"),
        (None, None, PROXY, "unknown"),
    ],
)
def test_client_address_believes_forwarded_for_only_from_trusted_proxies(
    peer: str | None, forwarded_for: str | None, trusted: list, expected: str
) -> None:
    assert client_address(peer, forwarded_for, trusted) == expected


# --- service level: fresh identities from one address -------------------------------------------


async def test_fresh_identities_from_one_address_share_its_limit(
    limited_service: ChatService, fake: FakeLLMServer
) -> None:
    service = limited_service
    refusals: list[str] = []
    for _ in range(30):
        owner = fresh_identity()
        if refusal := await service.limits.admit(owner, ONE_ADDRESS):
            refusals.append(refusal.message)
            continue
        turn = await service.start_turn(owner, None, "hello")
        reply, _ = await run_reply(service, turn)
        assert reply.finished is not None and reply.finished.status == MessageStatus.COMPLETE

    assert len(fake.streamed_requests()) <= 10
    assert len(refusals) == 20
    assert all("Too many messages from your network" in message for message in refusals)


async def test_new_identities_per_address_are_bounded(settings: Settings, engine) -> None:  # type: ignore[no-untyped-def]
    service = make_service(
        settings.model_copy(update=dict(new_identities_per_hour=3, address_rate_limit_per_minute=100)), engine
    )
    identities = [fresh_identity() for _ in range(5)]
    results = [await service.limits.admit(identity, ONE_ADDRESS) for identity in identities]
    retried = await service.limits.admit(identities[-1], ONE_ADDRESS)  # a refused new identity stays new
    known = fresh_identity()

    assert [r is None for r in results] == [True, True, True, False, False]
    assert results[-1] is not None and results[-1].limit == "new_identities"
    assert retried is not None and retried.limit == "new_identities"
    assert await service.limits.admit(known, "198.51.100.20") is None  # another address has its own budget
    assert await service.limits.admit(known, "198.51.100.20") is None  # and a known identity is not new again


async def test_summaries_and_titles_count_and_take_a_slot(settings: Settings, fake: FakeLLMServer) -> None:
    built = make_services(settings.model_copy(update=dict(rate_limit_per_minute=2)))
    service, caller = built.chat, Caller(fresh_identity(), ONE_ADDRESS)
    turn = await service.start_turn(caller.owner_id, None, "hello there")
    await run_reply(service, turn)
    before = len(fake.chat_requests())

    assert await built.actions.summarize(caller, turn.conversation_id)
    assert await service.suggest_title(caller.owner_id, turn.conversation_id, address=ONE_ADDRESS)
    with pytest.raises(Refused) as refused:  # the third provider call in the minute
        await built.actions.summarize(caller, turn.conversation_id)
    assert await service.suggest_title(caller.owner_id, turn.conversation_id, address=ONE_ADDRESS) is None

    assert refused.value.kind == RefusalKind.RATE_LIMIT and "Too many messages" in refused.value.message
    assert len(fake.chat_requests()) == before + 2


async def test_summaries_wait_for_a_generation_slot(settings: Settings, engine, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    service = make_service(settings.model_copy(update=dict(max_active_replies=1, max_waiting_replies=0)), engine)
    owner = fresh_identity()
    turn = await service.start_turn(owner, None, "hello there")
    fake.enqueue_stream(Behaviour(tokens=20, tokens_per_s=40))
    jobs = ReplyJobs(service, MemoryReplyLog())
    await jobs.start(turn)
    async for _, events in jobs.follow(turn.reply_id):
        if any(isinstance(e, Frame) and e.text for e in events):
            break  # the reply holds the only slot

    with pytest.raises(LimitReached.__mro__[1]) as busy:  # ProviderError(BUSY)
        await service.summarize(owner, turn.conversation_id)
    assert busy.value.kind == "busy"
    await jobs.aclose()


# --- over the REST API ---------------------------------------------------------------------------


def _keys(count: int) -> list[str]:
    return [f"test-key-{n:03d}-" + secrets.token_hex(12) for n in range(count)]


@contextlib.contextmanager
def api_environment(
    monkeypatch: pytest.MonkeyPatch, fake: FakeLLMServer, database_url: str, **env: str
) -> Iterator[None]:
    """The process-wide settings and service rebuilt from `env` (the routes read them through get_*)."""
    values = {
        "GROQ_API_KEY": TEST_API_KEY,
        "GROQ_BASE_URL": fake.base_url,
        "CHATBOT_MODEL": "fake-large",
        "CHATBOT_LOCAL_MODEL": "off",
        "CHATBOT_DATABASE_URL": database_url,
        "CHATBOT_FRAME_MS": "20",
        "OPENAI_API_KEY": "",
        "OPENAI_BASE_URL": "",
        "REFLEX_REDIS_URL": "",
        "CHATBOT_REDIS_URL": "",
        **env,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    with services_from_environment():
        yield


def client(key: str, address: str = ONE_ADDRESS) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_api(), client=(address, 40000))
    return httpx.AsyncClient(
        transport=transport, base_url="http://backend", headers={"Authorization": f"Bearer {key}"}, timeout=60
    )


async def test_fresh_api_keys_from_one_address_share_its_limit(
    monkeypatch: pytest.MonkeyPatch, fake: FakeLLMServer, database_url: str
) -> None:
    keys = _keys(30)
    with api_environment(
        monkeypatch, fake, database_url, CHATBOT_API_KEYS=",".join(keys), CHATBOT_ADDRESS_RATE_LIMIT_PER_MINUTE="10"
    ):
        statuses: list[int] = []
        details: list[str] = []
        for key in keys:
            async with client(key) as http:
                response = await http.post("/api/chat_batch", json={"message": "hello"})
            statuses.append(response.status_code)
            if response.status_code == 429:
                details.append(response.json()["detail"])

        another = await client(keys[0], "198.51.100.99").__aenter__()
        try:  # the same key from another address still has its own budget
            assert (await another.post("/api/chat_batch", json={"message": "hello"})).status_code == 200
        finally:
            await another.aclose()

    assert statuses.count(200) == 10
    assert statuses.count(429) == 20
    assert all("Too many messages from your network" in d for d in details)
    assert len(fake.chat_requests()) == 11


async def test_parallel_v1_calls_with_one_key_meet_its_limit_and_the_concurrency_cap(
    monkeypatch: pytest.MonkeyPatch, fake: FakeLLMServer, database_url: str
) -> None:
    (key,) = _keys(1)
    fake.default = Behaviour(tokens=8, tokens_per_s=40)  # each reply lasts about 0.2 s
    env = {
        "CHATBOT_API_KEYS": key,
        "CHATBOT_RATE_LIMIT_PER_MINUTE": "30",
        "CHATBOT_ADDRESS_RATE_LIMIT_PER_MINUTE": "1000",
        "CHATBOT_MAX_ACTIVE_REPLIES": "4",
        "CHATBOT_MAX_WAITING_REPLIES": "8",
    }
    with api_environment(monkeypatch, fake, database_url, **env):
        body = {"model": "fake-large", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        async with client(key) as http:
            responses = await asyncio.gather(*(http.post("/v1/chat/completions", json=body) for _ in range(100)))

    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}
    assert statuses.count(200) <= 30  # the key's limit
    assert len(fake.chat_requests()) <= 30
    codes = {r.json()["error"]["code"] for r in responses if r.status_code == 429}
    assert codes <= {"rate_limit_exceeded", "busy"}
    # The cap: no more than 4 upstream streams ever overlapped.
    intervals = sorted(fake.token_times.values())
    assert intervals
    peak = max(sum(1 for s, e in intervals if s <= start <= e) for start, _ in intervals)
    assert peak <= 4


async def test_v1_applies_the_configured_message_limit(
    monkeypatch: pytest.MonkeyPatch, fake: FakeLLMServer, database_url: str
) -> None:
    (key,) = _keys(1)
    with api_environment(monkeypatch, fake, database_url, CHATBOT_API_KEYS=key, CHATBOT_MAX_MESSAGE_CHARS="100"):
        async with client(key) as http:
            long = {"model": "fake-large", "messages": [{"role": "user", "content": "x" * 101}]}
            refused = await http.post("/v1/chat/completions", json=long)
            schema = (await http.get("/openapi.json")).json()["components"]["schemas"]

    assert refused.status_code == 422
    assert "the limit is 100" in refused.json()["error"]["message"]
    assert fake.chat_requests() == []
    assert schema["ChatRequest"]["properties"]["message"]["maxLength"] == 100
    assert "at most 100 characters" in schema["OpenAIMessage"]["properties"]["content"]["description"]


async def test_v1_errors_name_the_provider_that_failed(
    monkeypatch: pytest.MonkeyPatch, fake: FakeLLMServer, database_url: str
) -> None:
    (key,) = _keys(1)
    env = {"CHATBOT_API_KEYS": key, "OPENAI_API_KEY": "sk-test-" + "o" * 24, "OPENAI_BASE_URL": fake.openai_base_url}
    fake.enqueue(Behaviour(status=401, error_message="invalid key"))
    with api_environment(monkeypatch, fake, database_url, **env):
        async with client(key) as http:
            body = {"model": "openai:fake-large", "messages": [{"role": "user", "content": "hi"}]}
            response = await http.post("/v1/chat/completions", json=body)

    message = response.json()["error"]["message"]
    assert "OpenAI-compatible provider rejected the API key" in message
    assert "OPENAI_API_KEY" in message and "GROQ_API_KEY" not in message


def test_a_websocket_handlers_address_comes_from_reflexs_router_headers() -> None:
    from chatbot_app.services.limits import address_from_headers

    # What self.router.headers.raw_headers holds in a Reflex 0.10 handler.
    direct = {"asgi-scope-client": "198.51.100.4", "x-forwarded-for": "6.6.6.6"}
    proxied = {"asgi-scope-client": "10.0.0.2", "x-forwarded-for": "6.6.6.6, 198.51.100.4"}

    assert address_from_headers(direct, "198.51.100.4", ["10.0.0.0/8"]) == "198.51.100.4"
    assert address_from_headers(proxied, "10.0.0.2", ["10.0.0.0/8"]) == "198.51.100.4"
    assert address_from_headers({}, "192.0.2.9", []) == "192.0.2.9"
