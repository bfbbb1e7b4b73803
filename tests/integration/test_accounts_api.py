"""Accounts over real HTTP, on both databases: the sign-in form endpoints and their cookie, and personal
API keys acting as their user in /api and /v1 (the real `openai` SDK), next to operator keys.

A production backend (`reflex run --backend-only --env prod`) with CHATBOT_AUTH=local; the test
process reaches the same database through services/accounts.py to play the admin.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
from sqlalchemy import Engine
from sqlmodel import select

from chatbot_app.config import Settings
from chatbot_app.services.accounts import SESSION_COOKIE, Accounts
from chatbot_app.services.library import ConversationLibrary
from chatbot_app.storage.database import make_engine
from chatbot_app.storage.models import User
from tests.conftest import TEST_API_KEY, migrate, new_database
from tests.e2e.live_app import Backend, app_environment, free_port
from tests.fakes.fake_llm_server import FakeLLMServer
from tests.integration.test_ownership import snapshot

APP_URL = "http://app.example:3000"
OPERATOR_KEY = "operator-key-" + "o" * 24
PASSWORD = "correct horse battery"


@dataclass
class Server:
    url: str
    backend: Backend
    accounts: Accounts
    engine: Engine


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLMServer
) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("accounts_api")
    with new_database(request.param, workdir, "chatbot_accounts") as database_url:
        migrate(database_url)
        environment = app_environment(
            GROQ_API_KEY=TEST_API_KEY,
            GROQ_BASE_URL=fake_llm.base_url,
            CHATBOT_PROVIDER="auto",
            CHATBOT_MODEL="fake-large",
            CHATBOT_LOCAL_MODEL="off",
            CHATBOT_DATABASE_URL=database_url,
            CHATBOT_AUTH="local",
            CHATBOT_APP_URL=APP_URL,
            CHATBOT_API_KEYS=OPERATOR_KEY,
            CHATBOT_CORS_ORIGINS="",
            OPENAI_BASE_URL="",
            OPENAI_API_KEY="",
        )
        backend = Backend(free_port(), environment, workdir / "backend.log")
        backend.start()
        engine = make_engine(database_url)
        accounts = Accounts(Settings(database_url=database_url, auth_methods=("local",)), engine)
        try:
            yield Server(backend.url, backend, accounts, engine)
        finally:
            backend.stop()
            engine.dispose()


def client(server: Server, key: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=30, follow_redirects=False)


def sign_up(server: Server, email: str) -> tuple[httpx.Client, User]:
    """A browser-like client signed up (and so signed in) as `email`."""
    browser = client(server)
    answer = browser.post("/auth/sign-up", data={"email": email, "password": PASSWORD})
    assert (answer.status_code, answer.headers["location"]) == (303, f"{APP_URL}/")
    user = asyncio.run(server.accounts.user_for_session(browser.cookies[SESSION_COOKIE]))
    assert user is not None
    return browser, user


def test_sign_up_sets_a_strict_http_only_cookie_and_sign_out_ends_it(server: Server, fake: FakeLLMServer) -> None:
    browser = client(server)
    answer = browser.post("/auth/sign-up", data={"email": "ann@example.com", "password": PASSWORD})

    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP here; Secure whenever the app is served over HTTPS
    me = browser.get("/auth/session").json()
    assert (me["email"], me["signed_in"]) == ("ann@example.com", True)
    token = browser.cookies[SESSION_COOKIE]

    answer = browser.post("/auth/sign-out")
    assert (answer.status_code, answer.headers["location"]) == (303, f"{APP_URL}/login")
    assert browser.get("/auth/session").status_code == 401
    stale = client(server)
    stale.cookies.set(SESSION_COOKIE, token)
    assert stale.get("/auth/session").status_code == 401  # the old token is dead server-side too

    again = client(server)
    answer = again.post("/auth/sign-in", data={"email": "ANN@example.com", "password": PASSWORD})
    assert answer.headers["location"] == f"{APP_URL}/" and again.get("/auth/session").status_code == 200


def test_refusals_redirect_to_the_form_with_their_code_and_set_no_cookie(server: Server, fake: FakeLLMServer) -> None:
    sign_up(server, "bea@example.com")
    browser = client(server)
    for path, data, location in [
        ("/auth/sign-in", {"email": "bea@example.com", "password": "wrong password"}, "/login?error=invalid"),
        ("/auth/sign-in", {"email": "nobody@example.com", "password": PASSWORD}, "/login?error=invalid"),
        ("/auth/sign-up", {"email": "bea@example.com", "password": PASSWORD}, "/signup?error=email_taken"),
        ("/auth/sign-up", {"email": "new@example.com", "password": "short"}, "/signup?error=weak_password"),
        ("/auth/sign-up", {"email": "not an email", "password": PASSWORD}, "/signup?error=bad_email"),
    ]:
        answer = browser.post(path, data=data)
        assert (answer.status_code, answer.headers["location"]) == (303, APP_URL + location)
        assert "set-cookie" not in answer.headers

    # A form posted from another site (login CSRF) is refused even with the right password.
    answer = browser.post(
        "/auth/sign-in",
        data={"email": "bea@example.com", "password": PASSWORD},
        headers={"Origin": "https://evil.example"},
    )
    assert answer.headers["location"] == f"{APP_URL}/login?error=invalid" and "set-cookie" not in answer.headers


def test_sign_in_is_throttled_over_http(server: Server, fake: FakeLLMServer) -> None:
    sign_up(server, "cy@example.com")
    browser = client(server)
    locations = [
        browser.post("/auth/sign-in", data={"email": "cy@example.com", "password": f"wrong {n}"}).headers["location"]
        for n in range(10)
    ]
    assert set(locations) == {f"{APP_URL}/login?error=invalid"}
    answer = browser.post("/auth/sign-in", data={"email": "cy@example.com", "password": PASSWORD})
    assert answer.headers["location"] == f"{APP_URL}/login?error=throttled"


def test_sign_out_everywhere_and_a_disabled_user(server: Server, fake: FakeLLMServer) -> None:
    phone, user = sign_up(server, "dee@example.com")
    laptop = client(server)
    laptop.post("/auth/sign-in", data={"email": "dee@example.com", "password": PASSWORD})
    assert laptop.get("/auth/session").status_code == 200

    phone.post("/auth/sign-out-everywhere")
    assert laptop.get("/auth/session").status_code == 401

    laptop.post("/auth/sign-in", data={"email": "dee@example.com", "password": PASSWORD})
    admins = [u for u in asyncio.run(_all_users(server)) if u.is_admin]
    asyncio.run(server.accounts.set_disabled(admins[0].id, user.id, True))  # type: ignore[arg-type]
    assert laptop.get("/auth/session").status_code == 401  # at once, in the backend process
    asyncio.run(server.accounts.set_disabled(admins[0].id, user.id, False))  # type: ignore[arg-type]


async def _all_users(server: Server) -> list[User]:
    return await server.accounts.db.run(lambda session: list(session.exec(select(User)).all()))


def test_a_personal_key_acts_as_its_user_in_the_rest_api_and_v1(server: Server, fake: FakeLLMServer) -> None:
    _, user = sign_up(server, "eve@example.com")
    _, key = asyncio.run(server.accounts.create_api_key(user.id, "laptop"))  # type: ignore[arg-type]

    with client(server, key) as api:
        answer = api.post("/api/chat_batch", json={"message": "Made through the API"})
        assert answer.status_code == 200
        conversation_id = answer.headers["x-conversation-id"]
        assert [c["id"] for c in api.get("/api/conversations").json()["conversations"]] == [conversation_id]
    # The UI (which lists by owner id) sees it as the user's.
    listed = asyncio.run(_owner_conversations(server, user.owner_id))
    assert listed == [conversation_id]

    with openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0) as sdk:
        reply = sdk.chat.completions.create(model="groq:fake-large", messages=[{"role": "user", "content": "Hi"}])
        assert reply.choices[0].message.content

    with client(server, OPERATOR_KEY) as operator:  # CHATBOT_API_KEYS keeps working, with its own owner
        assert operator.get("/api/conversations").json()["conversations"] == []
        assert operator.get(f"/api/conversations/{conversation_id}").status_code == 404

    [row] = asyncio.run(server.accounts.api_keys(user.id))  # type: ignore[arg-type]
    asyncio.run(server.accounts.revoke_api_key(user.id, row.id))  # type: ignore[arg-type]
    with client(server, key) as api:
        answer = api.get("/api/conversations")
        assert (answer.status_code, answer.json()["detail"]) == (401, "That API key is not valid.")
    with (
        openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0) as sdk,
        pytest.raises(openai.AuthenticationError),
    ):
        sdk.models.list()


async def _owner_conversations(server: Server, owner_id: str) -> list[str]:
    page = await ConversationLibrary(server.engine).page(owner_id, 0)
    return [c.id for c in page.conversations]


def test_a_disabled_users_key_is_refused_at_once(server: Server, fake: FakeLLMServer) -> None:
    _, user = sign_up(server, "fay@example.com")
    _, key = asyncio.run(server.accounts.create_api_key(user.id))  # type: ignore[arg-type]
    admin = next(u for u in asyncio.run(_all_users(server)) if u.is_admin)
    with client(server, key) as api:
        assert api.get("/api/conversations").status_code == 200
        asyncio.run(server.accounts.set_disabled(admin.id, user.id, True))  # type: ignore[arg-type]
        assert api.get("/api/conversations").status_code == 401


def test_a_personal_key_cannot_reach_another_users_conversations(server: Server, fake: FakeLLMServer) -> None:
    _, alice = sign_up(server, "alice@example.com")
    _, mallory = sign_up(server, "mallory@example.com")
    _, alice_key = asyncio.run(server.accounts.create_api_key(alice.id))  # type: ignore[arg-type]
    _, mallory_key = asyncio.run(server.accounts.create_api_key(mallory.id))  # type: ignore[arg-type]
    with client(server, alice_key) as owner:
        conversation_id = owner.post("/api/chat_batch", json={"message": "Private"}).headers["x-conversation-id"]
    before = snapshot(server.engine)
    requests_before = len(fake.chat_requests())

    with client(server, mallory_key) as intruder:
        for target in (conversation_id, "0" * 32):
            for method, path, body in [
                ("GET", f"/api/conversations/{target}", None),
                ("GET", f"/api/conversations/{target}/export?format=md", None),
                ("GET", f"/api/conversations/{target}/export?format=json", None),
                ("DELETE", f"/api/conversations/{target}", None),
                ("POST", "/api/chat", {"message": "Intrude", "conversation_id": target}),
                ("POST", "/api/chat_batch", {"message": "Intrude", "conversation_id": target}),
            ]:
                answer = intruder.request(method, path, json=body)
                assert (answer.status_code, answer.json()) == (404, {"detail": "Conversation not found"}), path
        assert conversation_id not in str(intruder.get("/api/conversations").json())

    assert snapshot(server.engine) == before
    assert len(fake.chat_requests()) == requests_before


def test_with_accounts_on_the_api_still_needs_a_key_and_health_does_not(server: Server) -> None:
    with client(server) as anonymous:
        answer = anonymous.get("/api/conversations")
        assert (answer.status_code, answer.json()["detail"]) == (
            401,
            "Send an API key as 'Authorization: Bearer <key>'.",
        )
        anonymous.cookies.set(SESSION_COOKIE, "not-a-session")
        assert anonymous.post("/v1/chat/completions", json={}).status_code == 401
        assert anonymous.get("/api/health").status_code == 200


def test_the_log_holds_no_password_token_or_key(server: Server, tmp_path: Path) -> None:
    log = server.backend.log_text()
    assert PASSWORD not in log and "cbk_" not in log and SESSION_COOKIE + "=" not in log
