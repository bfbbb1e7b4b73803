"""The UI's websocket with accounts on, spoken to as a browser tab speaks it (tests/e2e/reflex_client.py)
against a production backend: only the app's own origins may use it with the user's cookie, and a tab's
state starts clean whenever its sign-in changes.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import websockets
from sqlmodel import Session

from chatbot_app.config import Settings
from chatbot_app.services.accounts import SESSION_COOKIE, Accounts
from chatbot_app.state.conversation import ConversationState
from chatbot_app.state.library import LibraryState
from chatbot_app.storage import conversations as conversation_store
from chatbot_app.storage.database import make_engine
from chatbot_app.storage.models import Conversation, User
from tests.conftest import TEST_API_KEY, migrate
from tests.e2e.live_app import Backend, app_environment, free_port
from tests.e2e.reflex_client import ReflexClient
from tests.fakes.fake_llm_server import FakeLLMServer

APP_URL = "http://app.example:3000"
PASSWORD = "correct horse battery"
REFLEX_VERSION = importlib.metadata.version("reflex")
OPEN_PAGE = f"{ConversationState.get_full_name()}.open_page"
REFRESH_SIDEBAR = f"{LibraryState.get_full_name()}.refresh"


@dataclass
class Server:
    backend: Backend
    accounts: Accounts
    database_url: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLMServer) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("accounts_ws")
    database_url = f"sqlite:///{workdir / 'app.db'}"
    migrate(database_url)
    port = free_port()
    environment = app_environment(
        REFLEX_API_URL=f"http://127.0.0.1:{port}",
        GROQ_API_KEY=TEST_API_KEY,
        GROQ_BASE_URL=fake_llm.base_url,
        CHATBOT_MODEL="fake-large",
        CHATBOT_LOCAL_MODEL="off",
        CHATBOT_DATABASE_URL=database_url,
        CHATBOT_AUTH="local",
        CHATBOT_APP_URL=APP_URL,
    )
    backend = Backend(port, environment, workdir / "backend.log")
    backend.start()
    engine = make_engine(database_url)
    accounts = Accounts(Settings(database_url=database_url, auth_methods=("local",)), engine)
    try:
        yield Server(backend, accounts, database_url)
    finally:
        backend.stop()
        accounts.passwords.close()
        engine.dispose()


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def new_admin(server: Server, email: str) -> User:
    """An admin made from the command line (whatever accounts exist), with PASSWORD as their own password."""
    admin, temporary = run(server.accounts.operator_create_admin(email))
    run(server.accounts.change_password(admin.id, temporary, PASSWORD))
    return admin


def session_cookie(server: Server, email: str, password: str = PASSWORD) -> str:
    """Sign in over HTTP as the browser's form does; the Cookie header the tab's websocket then carries."""
    with httpx.Client(base_url=server.backend.url, follow_redirects=False) as browser:
        answer = browser.post("/auth/sign-in", data={"email": email, "password": password})
        assert answer.status_code == 303 and SESSION_COOKIE in browser.cookies, answer.headers.get("location")
        return f"{SESSION_COOKIE}={browser.cookies[SESSION_COOKIE]}"


@dataclass
class Tab:
    """One browser tab's websocket: everything it received, as text, to search."""

    server: Server
    token: str
    cookie: str | None
    pathname: str
    received: list[str] = field(default_factory=list)
    client: ReflexClient | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def _received(self, update: dict[str, Any]) -> None:
        self.received.append(repr(update))
        self.arrived.set()

    async def __aenter__(self) -> Tab:
        headers = {"Origin": APP_URL} | ({"Cookie": self.cookie} if self.cookie else {})
        self.client = ReflexClient(
            self.server.backend.url,
            REFLEX_VERSION,
            token=self.token,
            headers=headers,
            on_update=lambda _at, _size, update: self._received(update),
        )
        self.client.pathname = self.pathname
        await self.client.connect()
        await asyncio.wait_for(self.client.hydrated.wait(), 30)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self.client is not None
        await self.client.close()

    async def until_seen(self, text: str, timeout_s: float = 30) -> None:
        async with asyncio.timeout(timeout_s):
            while not any(text in update for update in self.received):
                self.arrived.clear()
                await self.arrived.wait()

    async def open(self, path: str, handler: str) -> None:
        assert self.client is not None
        self.client.pathname = path
        await self.client.emit(handler)

    @property
    def text(self) -> str:
        return "\n".join(self.received)


def test_the_websocket_refuses_other_web_origins_with_the_users_cookie(server: Server) -> None:
    new_admin(server, "origin-admin@example.com")
    cookie = session_cookie(server, "origin-admin@example.com")

    async def connect(origin: str | None) -> bool:
        headers = {"Cookie": cookie} | ({"Origin": origin} if origin else {})
        client = ReflexClient(server.backend.url, REFLEX_VERSION, headers=headers)
        try:
            await client.connect(timeout_s=15)
        except websockets.InvalidStatus as refused:
            assert refused.response.status_code == 403
            return False
        await client.close()
        return True

    # Same site (the cookie is SameSite=Strict, so a browser sends it from here), another origin: refused.
    assert not run(connect("http://app.example:4000"))
    assert not run(connect("http://evil.app.example:3000"))
    assert not run(connect("null"))
    assert run(connect(APP_URL))  # the UI itself
    assert run(connect(server.backend.url))  # the backend's own origin
    assert run(connect(None))  # not a browser page (curl, a script): no one's cookie is borrowed


def test_a_tabs_state_starts_clean_whenever_its_sign_in_changes(server: Server) -> None:
    accounts = server.accounts
    admin = new_admin(server, "boss@example.com")
    other, temporary = run(accounts.create_user(admin.id, "cy@example.com"))
    run(accounts.change_password(other.id, temporary, PASSWORD))
    engine = make_engine(server.database_url)
    with Session(engine) as session:
        conversation = Conversation(owner_id=admin.owner_id, title="Acquisition of Initech")
        session.add(conversation)
        session.flush()
        conversation_store.add_message(session, conversation, "user", "the secret offer")
        session.commit()
        conversation_id = conversation.id
    engine.dispose()
    admin_cookie = session_cookie(server, "boss@example.com")
    token = "tab-" + "t" * 32
    secrets = ("boss@example.com", "cy@example.com", "Acquisition of Initech", "the secret offer")

    async def scenario() -> tuple[str, str, str]:
        # The admin's tab: the user list on /admin, then the conversation and the sidebar.
        async with Tab(server, token, admin_cookie, "/admin") as tab:
            await tab.until_seen("cy@example.com")
            await tab.open(f"/c/{conversation_id}", OPEN_PAGE)
            await tab.until_seen("the secret offer")
            await tab.open(f"/c/{conversation_id}", REFRESH_SIDEBAR)
            await tab.until_seen("Acquisition of Initech")
            seen_by_admin = tab.text
        # Signed out (the form post ends the session); the same tab then loads the sign-in page.
        async with httpx.AsyncClient(base_url=server.backend.url) as browser:
            await browser.post("/auth/sign-out", headers={"Cookie": admin_cookie})
        async with Tab(server, token, None, "/login") as tab:
            after_sign_out = tab.text
        # Someone else signs in, in the same tab.
        async with Tab(server, token, session_cookie(server, "cy@example.com"), "/") as tab:
            await tab.until_seen("cy@example.com")  # their own user menu
            next_person = tab.text
        return seen_by_admin, after_sign_out, next_person

    seen_by_admin, after_sign_out, next_person = run(scenario())
    assert all(secret in seen_by_admin for secret in secrets)
    assert [s for s in secrets if s in after_sign_out] == []
    assert [s for s in secrets if s in next_person] == ["cy@example.com"]
    assert "Traceback" not in server.backend.log_text()
