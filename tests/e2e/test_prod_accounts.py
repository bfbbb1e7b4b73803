"""`make prod` with accounts on, end to end, in Chromium, everything through nginx: the first account
becomes the admin and sign-up closes behind it; the admin makes an account whose one-time password is
changed at the first sign-in, on a second browser; single sign-on against a real OpenID provider on
loopback, its callback included; /admin; a tab's state after a sign-out; a tool call approved by its
user from a browser on the other backend, and refused to another user's key; and what nginx tells the
backends (the client's address) and keeps out of its log (tokens).

The topology is tests/e2e/prod_cluster.py's (deploy/run_prod.py on free ports, two backends, a fresh
PostgreSQL database, a private Redis), with CHATBOT_AUTH=local,oidc and nothing else about accounts set,
as an operator would run it.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
import websockets
from sqlalchemy import create_engine, text

from deploy.run_prod import Topology
from tests.conftest import skip_or_fail
from tests.e2e.live_app import free_port
from tests.e2e.prod_cluster import (
    TRACK_WEBSOCKETS,
    move_websocket,
    new_signed_in_session,
    open_tab_on_a_backend,
    prod_cluster,
    require_nginx,
    started_redis,
)
from tests.e2e.reflex_client import ReflexClient
from tests.e2e.test_chat_in_browser import send, wait_for_conversation_url, wait_for_replies
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer
from tests.fakes.mcp_server import FakeMcpServer
from tests.fakes.oidc_provider import OidcProvider

pytestmark = pytest.mark.e2e

ADMIN, PASSWORD = "admin@example.com", "the admin's password"
CLIENT_ID, CLIENT_SECRET = "chatbot-prod", "prod-test-client-secret-" + "s" * 24
T = TypeVar("T")


@dataclass
class Prod:
    topology: Topology
    provider: OidcProvider

    @property
    def url(self) -> str:
        return self.topology.url


@pytest.fixture(scope="module")
def prod(
    tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLMServer, mcp_server: FakeMcpServer
) -> Iterator[Prod]:
    require_nginx()
    workdir = tmp_path_factory.mktemp("prod_accounts")
    provider_port = free_port()
    with (
        started_redis() as redis,
        prod_cluster(
            workdir,
            fake_llm,
            redis,
            CHATBOT_AUTH="local,oidc",
            CHATBOT_OIDC_ISSUER=f"http://127.0.0.1:{provider_port}",
            CHATBOT_OIDC_CLIENT_ID=CLIENT_ID,
            CHATBOT_OIDC_CLIENT_SECRET=CLIENT_SECRET,
            # Tools, for a call approved from the user's browser on the other backend.
            CHATBOT_TOOL_MODELS="fake-large",
            CHATBOT_MCP_SERVERS=json.dumps([{"name": "facts", "url": mcp_server.url, "default_on": True}]),
            CHATBOT_MCP_ALLOW_PRIVATE="true",
        ) as topology,
    ):
        # The provider is asked for only at the first single sign-on, so it can start once nginx's
        # address (the redirect URI it must allow) is known.
        provider = OidcProvider(
            provider_port, CLIENT_ID, CLIENT_SECRET, f"{topology.url}/auth/oidc/callback", workdir / "oidc.log"
        )
        try:
            provider.start()
        except (OSError, subprocess.CalledProcessError) as exc:  # no npm registry to install from
            skip_or_fail(f"could not install or start oidc-provider: {exc}")
        try:
            yield Prod(topology, provider)
        finally:
            provider.stop()


@pytest.fixture
def browsers(browser) -> Iterator[Callable[[], Any]]:  # type: ignore[no-untyped-def]
    """New browsers (contexts: their own cookies and storage); all closed at the end."""
    contexts = []

    def open_browser() -> Any:
        # The shared helpers poll with string predicates, which the page's CSP (no 'unsafe-eval') refuses.
        context = browser.new_context(viewport={"width": 1100, "height": 800}, bypass_csp=True)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)
        return page

    yield open_browser
    for context in contexts:
        context.close()


def at_path(page: Any, prod: Prod, path: str) -> None:
    page.wait_for_url(re.compile(re.escape(prod.url + path.rstrip("/")) + "/?(\\?.*)?$"))


def submit(page: Any, prod: Prod, path: str, email: str, password: str) -> None:
    page.goto(f"{prod.url}{path}")
    page.fill("#email-input", email)
    page.fill("#password-input", password)
    page.click("#sign-up-button" if path == "/signup" else "#sign-in-button")


def change_password(page: Any, current: str, new: str) -> None:
    page.fill("#current-password-input", current)
    page.fill("#new-password-input", new)
    page.click("#change-password-button")
    page.wait_for_selector("#password-notice:has-text('Your password is changed')")


def signed_in_admin(prod: Prod, browsers: Callable[[], Any]) -> Any:
    page = browsers()
    submit(page, prod, "/login", ADMIN, PASSWORD)
    at_path(page, prod, "/")
    page.wait_for_selector("#user-menu")
    return page


def new_account(admin: Any, prod: Prod, email: str) -> str:
    """Made by the admin on /admin; returns its one-time password (shown once)."""
    admin.goto(f"{prod.url}/admin")
    admin.wait_for_selector("#users-table")
    admin.fill("#new-user-email-input", email)
    admin.click("#create-user-button")
    admin.wait_for_selector(f".user-row[data-email='{email}']")
    admin.wait_for_function("document.querySelector('#temporary-password').value.length > 8")
    return admin.input_value("#temporary-password")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Await in a thread of its own: Playwright's sync API keeps an event loop running in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result(timeout=120)


def post_form(prod: Prod, path: str, fields: dict[str, str], headers: dict[str, str] | None = None) -> str:
    """A form post through nginx, as the sign-in page makes it; where the answer redirects to."""
    request = urllib.request.Request(
        f"{prod.url}{path}", data=urllib.parse.urlencode(fields).encode(), headers=headers or {}, method="POST"
    )

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *_args: Any) -> None:
            return None

    try:
        urllib.request.build_opener(NoRedirect).open(request, timeout=30)
    except urllib.error.HTTPError as answer:
        assert answer.code == 303, answer.read()[:300]
        return answer.headers["location"]
    raise AssertionError(f"{path} did not redirect")


# --- the tests, in the order an operator lives them ------------------------------------------------------


def test_the_first_account_becomes_the_admin_and_sign_up_closes_behind_it(  # type: ignore[no-untyped-def]
    prod: Prod, browsers
) -> None:
    first = browsers()
    first.goto(f"{prod.url}/signup")
    first.wait_for_selector("#sign-up-button")  # a server without accounts: its first one may sign up
    submit(first, prod, "/signup", ADMIN, PASSWORD)
    at_path(first, prod, "/")
    first.click("#user-menu")
    first.wait_for_selector("#admin-link")

    later = browsers()
    later.goto(f"{prod.url}/signup")
    later.wait_for_selector("text=Sign-up is closed on this server")
    assert later.locator("#sign-up-button").count() == 0
    later.goto(f"{prod.url}/login")
    later.wait_for_selector("#sign-in-button")
    # The page's load asks the server whether sign-up is open; until then the link may show.
    later.wait_for_selector("#signup-link", state="detached")
    # Posting the form anyway is refused by the backend itself.
    refused = post_form(prod, "/auth/sign-up", {"email": "eve@example.com", "password": PASSWORD})
    assert refused == f"{prod.url}/signup?error=signup_closed"


def test_the_admin_makes_an_account_whose_user_changes_its_password_then_signs_in_elsewhere(  # type: ignore[no-untyped-def]
    prod: Prod, browsers, fake: FakeLLMServer
) -> None:
    admin = signed_in_admin(prod, browsers)
    temporary = new_account(admin, prod, "bob@example.com")

    bob = browsers()  # a second browser
    submit(bob, prod, "/login", "bob@example.com", temporary)
    at_path(bob, prod, "/account")  # a one-time password is changed before anything else
    bob.wait_for_selector("#must-change-password")
    bob.goto(prod.url)  # the chat is not open yet
    at_path(bob, prod, "/account")
    change_password(bob, temporary, "bob's own password")
    bob.goto(prod.url)
    fake.enqueue_stream(Behaviour(text="Hello Bob, through nginx."))
    send(bob, "Hello, I am Bob")
    wait_for_replies(bob, 1)
    conversation = wait_for_conversation_url(bob)

    third = browsers()  # a third browser: Bob's own password, and his conversation
    submit(third, prod, "/login", "bob@example.com", "bob's own password")
    at_path(third, prod, "/")
    third.goto(conversation)
    third.wait_for_selector("[data-role=assistant]:has-text('Hello Bob, through nginx.')")
    # Versions, with accounts on: a regeneration and a switch in one browser, followed live in the other.
    fake.enqueue_stream(Behaviour(text="Hi again, Bob."))
    bob.locator(".regenerate-button").click()
    bob.locator("[data-testid=branch-position]").filter(has_text="2/2").wait_for()
    bob.click("[data-testid=branch-prev]")
    third.wait_for_selector("[data-testid=branch-position]:has-text('1/2')")
    assert "Hi again, Bob." not in third.inner_text("#message-list")
    assert post_form(prod, "/auth/sign-in", {"email": "bob@example.com", "password": temporary}).endswith(
        "/login?error=invalid"
    )

    # The admin opens sign-up to anyone for a while, then closes it.
    admin.click("#toggle-signup-button")
    admin.wait_for_selector("#signup-status:has-text('Anyone can create an account')")
    carol = browsers()
    submit(carol, prod, "/signup", "carol@example.com", "carol's password")
    at_path(carol, prod, "/")
    carol.wait_for_selector("#user-menu")
    admin.click("#toggle-signup-button")
    admin.wait_for_selector("#signup-status:has-text('Only admins create accounts')")
    assert post_form(prod, "/auth/sign-up", {"email": "dan@example.com", "password": PASSWORD}).endswith(
        "error=signup_closed"
    )


def test_single_sign_on_through_nginx_with_the_real_provider(prod: Prod, browsers) -> None:  # type: ignore[no-untyped-def]
    page = browsers()
    page.goto(f"{prod.url}/login")
    page.click("#sso-button")
    for _ in range(4):  # the provider's own login page, then its consent page
        page.wait_for_url(re.compile(rf"^(http://127\.0\.0\.1:{prod.provider.port}/|{re.escape(prod.url)}/$)"))
        if page.url.startswith(prod.url):
            break
        if page.locator("input[name=login]").count():
            page.fill("input[name=login]", "grace@sso.example")
            page.fill("input[name=password]", "any password")
        page.click("button[type=submit]")
    at_path(page, prod, "/")  # back through nginx's /auth/oidc/callback, signed in
    page.click("#user-menu")
    page.wait_for_selector("#user-email:has-text('grace@sso.example')")

    admin = signed_in_admin(prod, browsers)
    admin.goto(f"{prod.url}/admin")
    admin.wait_for_selector(".user-row[data-email='grace@sso.example']")


def test_after_a_sign_out_the_tab_keeps_nothing_of_its_user(  # type: ignore[no-untyped-def]
    prod: Prod, browsers, fake: FakeLLMServer
) -> None:
    sockets: list[list[str]] = []  # the frames each websocket of the tab received, in the order they opened

    def follow(ws: Any) -> None:
        sockets.append(received := [])
        ws.on("framereceived", lambda payload: received.append(str(payload)))

    page = signed_in_admin(prod, browsers)
    page.on("websocket", follow)
    fake.enqueue_stream(Behaviour(text="Noted."))
    send(page, "The board meets on Tuesday about Initech")
    wait_for_replies(page, 1)
    wait_for_conversation_url(page)
    page.goto(f"{prod.url}/admin")
    page.wait_for_selector(".user-row[data-email='bob@example.com']")
    assert any("bob@example.com" in frame for frames in sockets for frame in frames)  # the admin's tab did receive them

    page.click("#back-to-chat")
    page.wait_for_selector("#user-menu")
    page.click("#user-menu")
    page.wait_for_selector("#sign-out-button")
    # From here on, only what the pages loaded after signing out receive: the signed-in page's own
    # websocket may still get its last updates before the browser leaves it.
    before = len(sockets)
    page.click("#sign-out-button")
    at_path(page, prod, "/login")
    page.wait_for_selector("#sign-in-button")
    seen = _wait_for_hydrated(page, sockets, before)
    assert [s for s in (ADMIN, "bob@example.com", "Initech") if any(s in f for f in seen)] == []

    # Bob signs in, in the same tab: nothing of the admin's either.
    before = len(sockets)
    submit(page, prod, "/login", "bob@example.com", "bob's own password")
    at_path(page, prod, "/")
    page.wait_for_selector("#user-menu")
    seen = _wait_for_hydrated(page, sockets, before)
    assert [s for s in (ADMIN, "Initech", "carol@example.com") if any(s in f for f in seen)] == []


def test_a_tool_call_is_approved_by_its_user_from_a_browser_on_the_other_backend(  # type: ignore[no-untyped-def]
    prod: Prod, browsers, fake: FakeLLMServer, mcp_fake: FakeMcpServer
) -> None:
    token = new_signed_in_session(prod.topology.config.database_url, "erin@example.com")

    def erins_browser() -> Any:
        page = browsers()
        page.context.add_init_script(TRACK_WEBSOCKETS)  # so that a test can drop the tab's websocket
        page.context.add_cookies([{"name": "chatbot_session", "value": token, "url": prod.url}])
        page.goto(prod.url)
        page.wait_for_selector("#model-select option", state="attached")
        return page

    page, home = open_tab_on_a_backend(prod.topology, erins_browser)
    send(page, 'call facts__write_note {"text": "approved by Erin"}')
    waiting = '[data-testid="tool-call"][data-name="facts__write_note"][data-status="awaiting-approval"]'
    page.wait_for_selector(waiting)
    conversation = wait_for_conversation_url(page)
    other = erins_browser()  # her second browser (a laptop beside a phone)
    other.goto(conversation)
    other.wait_for_selector(waiting)
    move_websocket(prod.topology, other, to=1 - home)  # the answer goes through the backend that does not run the job

    # Another user's personal key, through nginx: the call is not theirs to answer, nor to know of.
    stranger_key = new_signed_in_session(prod.topology.config.database_url, "mallory@example.com", api_key=True)
    engine = create_engine(prod.topology.config.database_url)

    def stored_call() -> tuple[int, str, str]:
        with engine.connect() as connection:
            query = text("SELECT reply_id, call_id, status FROM tool_call WHERE name = 'facts__write_note'")
            return tuple(connection.execute(query).one())  # type: ignore[return-value]

    reply_id, call_id, _ = stored_call()
    refused = urllib.request.Request(
        f"{prod.url}/api/replies/{reply_id}/tool_calls/{call_id}",
        data=json.dumps({"approve": True}).encode(),
        headers={"Authorization": f"Bearer {stranger_key}", "Content-Type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(refused, timeout=30)
    assert answer.value.code == 404
    assert stored_call()[2] == "awaiting-approval"  # the answer is one UPDATE, made (or not) within the request
    engine.dispose()

    other.click(f"{waiting} [data-testid=tool-approve]")

    page.wait_for_selector('[data-testid="tool-call"][data-name="facts__write_note"][data-status="done"]')
    wait_for_replies(page, 1)
    other.wait_for_selector('[data-testid="tool-call"][data-status="done"]')
    assert mcp_fake.notes == ["approved by Erin"]


def _wait_for_hydrated(page: Any, sockets: list[list[str]], first: int, timeout_s: float = 30) -> list[str]:
    """The frames of the websockets opened since `sockets[first]`, once one says a new page's state arrived whole."""
    deadline = time.monotonic() + timeout_s
    while not any('"is_hydrated_rx_state_":true' in frame for frames in sockets[first:] for frame in frames):
        assert time.monotonic() < deadline, "the page's state never arrived"
        page.wait_for_timeout(50)  # lets Playwright deliver the frames (its sync API runs in this thread)
    return [frame for frames in sockets[first:] for frame in frames]


def test_nginx_passes_the_clients_address_and_logs_no_token(prod: Prod, browsers) -> None:  # type: ignore[no-untyped-def]
    # Behind nginx each client is counted by its own address: one address's failures (here a client that
    # says it is 203.0.113.9; nginx appends what it sees) close that address only.
    attacker = {"X-Forwarded-For": "203.0.113.9"}
    for n in range(30):
        where = post_form(prod, "/auth/sign-in", {"email": f"guess{n}@example.com", "password": "x" * 8}, attacker)
        assert where.endswith("error=invalid")
    assert post_form(prod, "/auth/sign-in", {"email": ADMIN, "password": PASSWORD}, attacker).endswith(
        "error=throttled"
    )
    assert post_form(prod, "/auth/sign-in", {"email": ADMIN, "password": PASSWORD}) == f"{prod.url}/"

    log = (prod.topology.config.runtime_dir / "access.log").read_text()
    assert "GET /_event/?..." in log and "GET /auth/oidc/callback?..." in log
    assert "token=" not in log and "code=" not in log and "state=" not in log


def test_the_websocket_refuses_another_origin_through_nginx(prod: Prod) -> None:
    async def connect(origin: str) -> int:
        client = ReflexClient(prod.url, importlib.metadata.version("reflex"), headers={"Origin": origin})
        try:
            await client.connect(timeout_s=15)
        except websockets.InvalidStatus as refused:
            return refused.response.status_code
        await client.close()
        return 101

    assert run(connect(f"http://127.0.0.1:{free_port()}")) == 403  # same host, another port
    assert run(connect(prod.url)) == 101
    session = urllib.request.Request(f"{prod.url}/auth/session", headers={"Origin": "http://127.0.0.1:1"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(session, timeout=10)
    assert refused.value.code == 403 and json.loads(refused.value.read())["detail"].startswith("Requests from")
