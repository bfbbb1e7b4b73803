"""A kill loop in `make prod`'s topology, with accounts on: a backend SIGKILLed mid-reply loses nothing shown;
and a Redis restart and a PostgreSQL restart during a reply lose nothing either.

Twelve kills, each a test (tests/e2e/backend_kills.py does one): the killed backend holds the reply's
job and the tab's websocket, the job only, or the tab only; before the reply's first token or
mid-stream. Each checks that the tab keeps its user and its conversation, that every word it had
shown is kept (on the page and in the database), that a reply whose job died shows `interrupted`
within 10 s of the kill (one whose job lived goes on to `complete`), and that the composer sends
again, with no connection toast left over it. The killed backend is started again after each kill,
as a service manager would. Then Redis and PostgreSQL (private servers) are each restarted while a
reply is held open: the reply ends `complete` in the tab with no one acting, and nothing stored is lost.

The topology runs with CHATBOT_AUTH=local. The account and its session are made in the database (as
the sign-up page would make them) and the session cookie is given to the browser: signing in through
nginx is tested with the pages themselves (tests/e2e/test_prod_topology.py, test_accounts_in_browser.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from deploy.run_prod import Topology
from tests.conftest import skip_or_fail
from tests.e2e.backend_kills import Kill, RestartOutcome, kill_plan, run_kill, run_peer_restart
from tests.e2e.live_app import free_port
from tests.e2e.prod_cluster import (
    TRACK_WEBSOCKETS,
    PostgresServer,
    RedisServer,
    new_signed_in_session,
    prod_cluster,
    require_nginx,
    started_redis,
)
from tests.fakes.fake_llm_server import FakeLLMServer

pytestmark = pytest.mark.e2e

KILLS = kill_plan(12)
#: What the issue asks of a reply whose job died with the backend.
INTERRUPTED_WITHIN_S = 10.0


@pytest.fixture(scope="module")
def private_redis() -> Iterator[RedisServer]:
    with started_redis() as server:
        yield server


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PostgresServer]:
    if PostgresServer.binaries() is None:
        skip_or_fail("PostgreSQL's server binaries are not installed (apt-get install postgresql)")
    server = PostgresServer(free_port())
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def prod(
    tmp_path_factory: pytest.TempPathFactory,
    fake_llm: FakeLLMServer,
    private_redis: RedisServer,
    private_postgres: PostgresServer,
) -> Iterator[Topology]:
    require_nginx()
    workdir = tmp_path_factory.mktemp("kills")
    with prod_cluster(workdir, fake_llm, private_redis, postgres=private_postgres, CHATBOT_AUTH="local") as topology:
        yield topology


@pytest.fixture(scope="module")
def signed_in(browser: Any, prod: Topology) -> Iterator[Any]:
    """One browser, signed in to one account, for every kill."""
    # The page's own CSP applies: the harness polls with the devtools protocol, which it does not restrict.
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    context.add_init_script(TRACK_WEBSOCKETS)
    token = new_signed_in_session(prod.config.database_url, "kills@example.com")
    context.add_cookies([{"name": "chatbot_session", "value": token, "url": prod.url}])
    yield context
    context.close()


@pytest.mark.parametrize(("number", "kill"), list(enumerate(KILLS, start=1)), ids=[str(k) for k in KILLS])
def test_a_killed_backend_loses_nothing_the_tab_showed(
    prod: Topology, signed_in: Any, fake: FakeLLMServer, number: int, kill: Kill
) -> None:
    outcome = run_kill(prod, fake, signed_in, kill, number, earlier=False)

    assert not outcome.problems, outcome.problems
    assert outcome.identity_kept and outcome.conversation_kept
    if kill.moment == "mid-stream":
        assert len(outcome.shown) == 40, "the kill should land with 40 words shown"
    assert outcome.ended_status == outcome.stored_status == outcome.expected_status, outcome
    assert not outcome.lost_shown_text, (outcome.shown, outcome.ended, outcome.stored)
    if kill.kills_job:
        assert outcome.ended == outcome.stored == outcome.shown  # all it had, and nothing made up
        assert outcome.ended_s is not None and outcome.ended_s <= INTERRUPTED_WITHIN_S
    else:
        assert len(outcome.ended) == len(outcome.stored) == 80  # its job lived: the whole reply
    assert outcome.composer_s is not None  # a new message was taken and answered
    assert not outcome.toast_left


def assert_restart_lost_nothing(outcome: RestartOutcome) -> None:
    assert not outcome.problems, outcome.problems
    assert outcome.identity_kept and outcome.conversation_kept and outcome.earlier_kept
    assert outcome.ended_status == outcome.stored_status == "complete"
    assert len(outcome.shown) == 40
    assert len(outcome.ended) == len(outcome.stored) == 80  # the 40 shown, and the rest
    assert outcome.composer_s is not None  # a message sent afterwards was taken


def test_a_redis_restart_during_a_reply_loses_nothing_and_the_tab_carries_on(
    prod: Topology, signed_in: Any, fake: FakeLLMServer, private_redis: RedisServer
) -> None:
    assert_restart_lost_nothing(run_peer_restart(prod, fake, signed_in, "Redis", private_redis.restart, 101))


def test_a_postgresql_restart_during_a_reply_loses_nothing_and_the_tab_carries_on(
    prod: Topology, signed_in: Any, fake: FakeLLMServer, private_postgres: PostgresServer
) -> None:
    assert_restart_lost_nothing(run_peer_restart(prod, fake, signed_in, "PostgreSQL", private_postgres.restart, 102))
