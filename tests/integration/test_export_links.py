"""Export links: tokens that cannot be forged, altered, read or used late; one secret for every backend.

(The links over HTTP are in test_api.py, against a production backend.)
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator

import pytest
import redis

from chatbot_app.config import Settings
from chatbot_app.services.export_links import ExportLinks, ExportTicket, LinksUnavailable
from tests.conftest import skip_or_fail

REDIS_URL = "redis://127.0.0.1:6379/2"
OWNER = "secret-identity-" + "s" * 24
TICKET = ExportTicket(OWNER, None, "json")


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def redis_key() -> Iterator[str]:
    """A key of the test's own in the shared Redis (database 2), deleted afterwards."""
    key = f"test_export_links:{uuid.uuid4().hex}"
    client = redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        skip_or_fail(f"Redis is not reachable at {REDIS_URL}: {type(exc).__name__}")
    yield key
    client.delete(key)
    client.close()


async def test_a_token_opens_until_it_expires_and_hides_what_it_names() -> None:
    clock = Clock()
    links = ExportLinks(Settings(secret_key="k" * 32, export_link_ttl_s=300), clock)

    token = await links.token(TICKET)

    assert await links.open(token) == TICKET
    assert OWNER not in token and OWNER.encode() not in base64.urlsafe_b64decode(token + "==")
    clock.now += 300
    assert await links.open(token) == TICKET
    clock.now += 1
    assert await links.open(token) is None


async def test_a_forged_altered_or_malformed_token_opens_nothing() -> None:
    links = ExportLinks(Settings(secret_key="k" * 32))
    other_deployment = ExportLinks(Settings(secret_key="o" * 32))
    token = await links.token(TICKET)
    altered = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]

    assert await links.open(await other_deployment.token(TICKET)) is None
    assert await links.open(altered) is None
    for junk in ("", "x" * 100, "é" * 60, token + "=="):
        assert await links.open(junk) is None


async def test_backends_sharing_redis_accept_each_others_links(redis_key: str) -> None:
    settings = Settings(redis_url=REDIS_URL)  # no CHATBOT_SECRET_KEY: the secret is made once, in Redis
    first, second = ExportLinks(settings, redis_key=redis_key), ExportLinks(settings, redis_key=redis_key)
    alone = ExportLinks(Settings())  # no Redis either: a secret of its own

    token = await first.token(TICKET)

    assert await second.open(token) == TICKET
    assert await first.open(await second.token(TICKET)) == TICKET
    assert await alone.open(token) is None


async def test_after_redis_lost_the_secret_the_backends_agree_again(redis_key: str) -> None:
    settings = Settings(redis_url=REDIS_URL)
    old, other = ExportLinks(settings, redis_key=redis_key), ExportLinks(settings, redis_key=redis_key)
    await old.token(TICKET)
    await other.token(TICKET)
    redis.from_url(REDIS_URL).delete(redis_key)  # Redis restarted without persistence

    newcomer = ExportLinks(settings, redis_key=redis_key)  # a backend started since: its secret is written
    from_newcomer = await newcomer.token(TICKET)
    from_old = await old.token(TICKET)  # reads the secret afresh: the newcomer's

    assert await other.open(from_newcomer) == TICKET  # refused with its old secret, so it reads it again
    assert await newcomer.open(from_old) == TICKET


async def test_without_redis_no_link_is_made_rather_than_one_other_backends_refuse() -> None:
    links = ExportLinks(Settings(redis_url="redis://127.0.0.1:9/0"))  # nothing listens on the discard port

    with pytest.raises(LinksUnavailable):
        await links.token(TICKET)
