"""Failures in the production topology (`make prod`): nginx in front of two backends sharing Redis and PostgreSQL.

The topology is the one deploy/run_prod.py starts, on free ports, with a fresh PostgreSQL database and a
private redis-server (so that restarting it disturbs no one else). Which backend holds a tab's websocket
is read from the kernel's socket table: nginx keeps one upstream connection per websocket, and no other
connection to a backend stays open.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from deploy.run_prod import PROJECT_ROOT, Topology
from tests.e2e.live_app import free_port
from tests.e2e.prod_cluster import (
    TRACK_WEBSOCKETS,
    RedisServer,
    connections,
    drop_websocket,
    move_websocket,
    open_tab_on_a_backend,
    prod_cluster,
    require_nginx,
    started_redis,
    wait_for_new_connection,
)
from tests.e2e.test_chat_in_browser import message_texts, send, wait_for_conversation_url, wait_for_replies
from tests.e2e.test_reliability_in_browser import last_reply, wait_for_streaming_text
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer
from tests.fakes.mcp_server import FakeMcpServer

pytestmark = pytest.mark.e2e

STALE_REPLY_S = 3


@pytest.fixture(scope="module")
def private_redis() -> Iterator[RedisServer]:
    with started_redis() as server:
        yield server


@pytest.fixture(scope="module")
def prod(
    tmp_path_factory: pytest.TempPathFactory,
    fake_llm: FakeLLMServer,
    private_redis: RedisServer,
    mcp_server: FakeMcpServer,
) -> Iterator[Topology]:
    require_nginx()
    with prod_cluster(
        tmp_path_factory.mktemp("prod"),
        fake_llm,
        private_redis,
        CHATBOT_STALE_REPLY_S=str(STALE_REPLY_S),
        # Tools, for a call approved from a tab on the other backend (a message without "call ..." asks for none).
        CHATBOT_TOOL_MODELS="fake-large",
        CHATBOT_MCP_SERVERS=json.dumps([{"name": "facts", "url": mcp_server.url, "default_on": True}]),
        CHATBOT_MCP_ALLOW_PRIVATE="true",
        # These tests are about processes, websockets and Redis, and follow the anonymous identity
        # through them; accounts through nginx are tested in test_prod_accounts.py.
        CHATBOT_AUTH="none",
    ) as topology:
        yield topology


@pytest.fixture
def tabs(browser, prod: Topology) -> Iterator[Callable[[], object]]:  # type: ignore[no-untyped-def]
    """Open tabs, each a fresh browser identity on the start page; all closed at the end."""
    contexts = []

    def open_tab(bypass_csp: bool = True):  # type: ignore[no-untyped-def]
        # The helpers shared with the other browser tests poll with string predicates, which the page's
        # CSP (no 'unsafe-eval') refuses; the first test checks that the app itself runs under it.
        context = browser.new_context(viewport={"width": 1100, "height": 800}, bypass_csp=bypass_csp)
        context.add_init_script(TRACK_WEBSOCKETS)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(prod.url)
        # The model list is filled by the page's on_load, after the chat state is set up: a message sent
        # before that can race the page's own start (an IndexError in send_message, seen here).
        page.wait_for_selector("#model-select option", state="attached")
        return page

    yield open_tab
    for context in contexts:
        context.close()


@pytest.fixture(autouse=True)
def every_backend_up(prod: Topology) -> Iterator[None]:
    """A test may stop or kill a backend; the next one starts with both up again."""
    yield
    for backend in prod.backends:
        if not backend.running():
            backend.stop()
            backend.start()


# --- where each tab is connected -------------------------------------------------------------------


def instance_of(url: str) -> str:
    with urllib.request.urlopen(f"{url}/api/health", timeout=5) as response:
        return json.load(response)["instance"]


def stored_messages(prod: Topology, url: str) -> list[tuple[str, str, str]]:
    """(role, status, content) of the conversation at page URL `url`, straight from PostgreSQL."""
    engine = create_engine(prod.config.database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT role, status, content FROM message WHERE conversation_id = :id ORDER BY id"),
                {"id": url.rsplit("/", 1)[1]},
            )
            return [tuple(row) for row in rows]
    finally:
        engine.dispose()


# --- the tests -------------------------------------------------------------------------------------


def test_each_backend_names_itself_and_nginx_spreads_requests_over_both(  # type: ignore[no-untyped-def]
    prod: Topology, tabs, fake: FakeLLMServer
) -> None:
    instances = [instance_of(f"http://127.0.0.1:{port}") for port in prod.config.backend_ports]
    assert len(set(instances)) == 2
    seen = {instance_of(prod.url) for _ in range(12)}
    assert seen == set(instances)
    with urllib.request.urlopen(f"{prod.url}/", timeout=5) as page:  # a static page, from nginx itself
        assert page.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]

    # The app works under the CSP nginx sends with its pages (selectors only: no script is evaluated).
    page = tabs(bypass_csp=False)
    page.fill("#chat-input", "Hello through nginx")
    page.keyboard.press("Enter")
    page.wait_for_selector("[data-role=assistant][data-status=complete]:has-text('Hello through nginx')")


def test_a_websocket_moved_to_the_other_backend_carries_on_the_conversation(  # type: ignore[no-untyped-def]
    prod: Topology, tabs, fake: FakeLLMServer
) -> None:
    page, home = open_tab_on_a_backend(prod, tabs)
    other = 1 - home
    send(page, "My name is Alice.")
    wait_for_replies(page, 1)
    url = wait_for_conversation_url(page)

    # Restart the tab's backend between two messages: the tab reconnects to the other one.
    before = connections(prod)
    prod.backends[home].stop()
    assert wait_for_new_connection(prod, before) == other
    prod.backends[home].start()
    send(page, "What is my name?")
    wait_for_replies(page, 2)
    assert "Alice" in last_reply(page).inner_text()
    assert page.url == url


def test_a_reply_in_progress_is_followed_after_its_websocket_moves(  # type: ignore[no-untyped-def]
    prod: Topology, tabs, fake: FakeLLMServer
) -> None:
    page, home = open_tab_on_a_backend(prod, tabs)
    fake.enqueue_stream(Behaviour(text="", tokens=240, tokens_per_s=40))
    send(page, "Stream for a while")
    wait_for_streaming_text(page)

    # Drop the tab's websocket until its reconnection reaches the other backend; the reply runs on where it began.
    for _ in range(6):
        if drop_websocket(prod, page) != home:
            break
    else:
        pytest.fail("the tab's websocket never reached the other backend")
    wait_for_replies(page, 1)
    assert len(last_reply(page).inner_text().split()) >= 240
    assert [role for role, _ in message_texts(page)] == ["user", "assistant"]


def test_a_backend_killed_mid_reply_leaves_it_interrupted_and_retry_completes_it(  # type: ignore[no-untyped-def]
    prod: Topology, tabs, fake: FakeLLMServer
) -> None:
    page, home = open_tab_on_a_backend(prod, tabs)
    fake.enqueue_stream(Behaviour(text="", tokens=2000, tokens_per_s=40), Behaviour(text="The complete answer."))
    send(page, "A very long answer please")
    url = wait_for_conversation_url(page)
    page.wait_for_function(  # past the first checkpoint (every 2 s), so some text is stored
        "document.querySelector('[data-role=assistant][data-status=streaming]')?.innerText.split(' ').length > 120"
    )

    before = connections(prod)
    prod.backends[home].stop(signal.SIGKILL)
    assert wait_for_new_connection(prod, before) == 1 - home  # the tab reconnected to the other backend

    # Without a reload: the other backend's sweep marks the reply, and the tab shows it with its text.
    page.wait_for_selector("[data-role=assistant][data-status=interrupted]", timeout=(STALE_REPLY_S * 2 + 20) * 1000)
    assert "alpha" in last_reply(page).inner_text()
    stored = stored_messages(prod, url)
    assert [(role, status) for role, status, _ in stored] == [("user", "complete"), ("assistant", "interrupted")]
    assert stored[0][2] == "A very long answer please"
    assert len(stored[1][2].split()) > 20  # the checkpointed text survived the kill

    page.click("[aria-label=Retry]")
    wait_for_replies(page, 1)
    assert "The complete answer." in last_reply(page).inner_text()
    assert [(role, status) for role, status, _ in stored_messages(prod, url)] == [
        ("user", "complete"),
        ("assistant", "interrupted"),  # kept, as the reply's first version
        ("assistant", "complete"),
    ]


def test_a_redis_restart_loses_no_conversation_and_a_reload_carries_on(  # type: ignore[no-untyped-def]
    prod: Topology, tabs, fake: FakeLLMServer, private_redis: RedisServer
) -> None:
    page = tabs()
    send(page, "My name is Bob.")
    wait_for_replies(page, 1)
    url = wait_for_conversation_url(page)

    private_redis.restart()  # every tab's state and the limits are gone; conversations live in PostgreSQL

    page.goto(url)
    page.wait_for_function("document.querySelectorAll('[data-testid=message]').length === 2")
    send(page, "What is my name?")
    wait_for_replies(page, 2)
    assert "Bob" in last_reply(page).inner_text()
    assert page.url == url
    assert [(role, status) for role, status, _ in stored_messages(prod, url)] == [
        ("user", "complete"),
        ("assistant", "complete"),
    ] * 2


def test_after_a_redis_restart_the_open_page_keeps_its_identity_and_conversation(  # type: ignore[no-untyped-def]
    prod: Topology, tabs, fake: FakeLLMServer, private_redis: RedisServer
) -> None:
    page = tabs()
    send(page, "My name is Carol.")
    wait_for_replies(page, 1)
    url = wait_for_conversation_url(page)
    identity = page.evaluate("localStorage.getItem('chatbot_identity')")

    private_redis.restart()

    # The tabs' server-side state is gone with Redis; a reload brings the browser's identity back (a new
    # one is never made up over it), and the conversation, kept in PostgreSQL, goes on.
    page.reload()
    page.wait_for_selector("#chat-input")
    page.wait_for_function("document.body.innerText.includes('My name is Carol.')")
    send(page, "What is my name?")
    page.wait_for_function(
        "document.querySelectorAll('[data-role=assistant][data-status=complete]').length >= 2", timeout=20_000
    )
    assert "Carol" in last_reply(page).inner_text()
    assert page.url == url
    assert page.evaluate("localStorage.getItem('chatbot_identity')") == identity
    assert len(stored_messages(prod, url)) == 4


def test_replies_from_many_tabs_run_on_both_backends_and_stop_works_on_each(  # type: ignore[no-untyped-def]
    prod: Topology, tabs, fake: FakeLLMServer
) -> None:
    instances = [instance_of(f"http://127.0.0.1:{port}") for port in prod.config.backend_ports]
    pages, homes = [], []
    for _ in range(4):
        page, home = open_tab_on_a_backend(prod, tabs)
        pages.append(page)
        homes.append(home)
    assert {instances[home] for home in homes} == set(instances), "nginx should spread the tabs over both"

    fake.enqueue_stream(*[Behaviour(text="", tokens=600, tokens_per_s=30) for _ in pages])
    for number, page in enumerate(pages):
        send(page, f"Tab {number}: tell me a long story")
    for page in pages:
        wait_for_streaming_text(page)
    assert len(fake.streamed_requests()) == len(pages)

    for page in pages:
        page.click("#stop-button")
    for page in pages:
        page.wait_for_selector("[data-role=assistant][data-status=stopped]")
    deadline = time.monotonic() + 10
    while len(fake.aborted) < len(pages) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(fake.aborted) == len(pages), "every upstream request should be closed, on either backend"


def _process_groups_under(pid: int) -> set[int]:
    """The process groups of every process descended from `pid` (from /proc)."""
    parents: dict[int, tuple[int, int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = (int(fields[1]), int(fields[2]))  # ppid, pgrp
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, (ppid, _) in parents.items() if ppid in frontier}
        found |= {parents[child][1] for child in frontier}
    return found - {os.getpgid(pid)}


def _processes_in(groups: set[int]) -> list[str]:
    """Each process still in one of `groups`, as "pid state command" (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            command, rest = stat.read_text().rsplit(")", 1)
            fields = rest.split()
            if int(fields[2]) in groups:
                found.append(f"{stat.parent.name} {fields[0]} {command.split('(', 1)[1]}")
    return found


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_make_prod_stops_everything_it_started(prod: Topology, tmp_path: Path, sig: signal.Signals) -> None:
    """deploy/run_prod.py as `make prod` runs it, stopped by Ctrl-C (SIGINT to its group) or SIGTERM."""
    port, backend_port = free_port(), free_port()
    env = dict(
        prod.config.env,
        PORT=str(port),
        BACKENDS="1",
        BACKEND_PORT=str(backend_port),
        CHATBOT_PROD_DIR=str(tmp_path),
        CHATBOT_PROD_SITE=str(prod.site_dir),  # the module's export: this test is about processes
    )
    launcher = subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "deploy" / "run_prod.py")],
        env=env,
        stdout=(tmp_path / "out.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own group, as a terminal's foreground job
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            assert launcher.poll() is None, (tmp_path / "out.log").read_text()
            with contextlib.suppress(OSError):
                instance_of(f"http://127.0.0.1:{port}")
                break
            assert time.monotonic() < deadline, "make prod did not come up"
            time.sleep(0.2)
        groups = _process_groups_under(launcher.pid)
        assert len(groups) == 2  # nginx, and the one backend with its workers

        if sig == signal.SIGINT:
            os.killpg(launcher.pid, sig)  # what Ctrl-C does
        else:
            launcher.send_signal(sig)
        assert launcher.wait(timeout=60) == 0
        assert _processes_in(groups) == []
        for listening in (port, backend_port):
            with pytest.raises(OSError), socket.create_connection(("127.0.0.1", listening), timeout=1):
                pass
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)


def test_a_switch_of_versions_on_one_backend_reaches_a_tab_on_the_other(  # type: ignore[no-untyped-def]
    prod: Topology, tabs, fake: FakeLLMServer
) -> None:
    fake.enqueue_stream(Behaviour(text="A dull answer."), Behaviour(text="A better answer."))
    page, home = open_tab_on_a_backend(prod, tabs)
    send(page, "Tell me something")
    wait_for_replies(page, 1)
    url = wait_for_conversation_url(page)
    page.locator(".regenerate-button").click()
    page.locator("[data-testid=branch-position]").filter(has_text="2/2").wait_for()
    other = page.context.new_page()  # the same identity, its websocket on the other backend
    other.goto(url)
    other.wait_for_selector("[data-testid=branch-position]:has-text('2/2')")
    move_websocket(prod, other, to=1 - home)

    page.click("[data-testid=branch-prev]")  # stored by one backend, announced through Redis
    other.wait_for_selector("[data-role=assistant]:has-text('A dull answer.')")
    other.wait_for_selector("[data-testid=branch-position]:has-text('1/2')")
    assert "A better answer." not in other.inner_text("#message-list")


def test_a_tool_call_waiting_on_one_backend_is_approved_from_a_tab_on_the_other(  # type: ignore[no-untyped-def]
    prod: Topology, tabs, fake: FakeLLMServer, mcp_fake: FakeMcpServer
) -> None:
    page, home = open_tab_on_a_backend(prod, tabs)
    send(page, 'call facts__write_note {"text": "approved elsewhere"}')
    waiting = '[data-testid="tool-call"][data-name="facts__write_note"][data-status="awaiting-approval"]'
    page.wait_for_selector(waiting)
    url = wait_for_conversation_url(page)
    other = page.context.new_page()  # the same identity
    other.goto(url)
    other.wait_for_selector(waiting)
    move_websocket(prod, other, to=1 - home)  # its answer goes through the other backend; the job runs on `home`

    other.click(f"{waiting} [data-testid=tool-approve]")

    page.wait_for_selector('[data-testid="tool-call"][data-name="facts__write_note"][data-status="done"]')
    wait_for_replies(page, 1)
    assert mcp_fake.notes == ["approved elsewhere"]
    other.wait_for_selector('[data-testid="tool-call"][data-status="done"]')
