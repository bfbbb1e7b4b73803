"""Accounts over real HTTP, on both databases: the sign-in form endpoints and their cookie, and personal
API keys acting as their user in /api and /v1 (the real `openai` SDK), next to operator keys.

A production backend (`reflex run --backend-only --env prod`) with CHATBOT_AUTH=local; the test
process reaches the same database through services/accounts.py to play the admin.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
from sqlalchemy import Engine
from sqlmodel import select

from chatbot_app.config import Settings
from chatbot_app.services.accounts import SECURE_SESSION_COOKIE, SESSION_COOKIE, SIGN_IN_EMAIL_COOKIE, Accounts
from chatbot_app.services.attachments import PreparedAttachment
from chatbot_app.services.library import ConversationLibrary
from chatbot_app.storage import conversations
from chatbot_app.storage.attachments import add_attachments
from chatbot_app.storage.database import make_engine, session_scope
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
            CHATBOT_ALLOW_SIGNUP="true",  # these tests sign up many users; closed sign-up is tested below
            # As behind nginx: requests from loopback may say whose they are (X-Forwarded-For).
            CHATBOT_TRUSTED_PROXIES="127.0.0.1",
            CHATBOT_APP_URL=APP_URL,
            CHATBOT_API_KEYS=OPERATOR_KEY,
            CHATBOT_CORS_ORIGINS="",
            OPENAI_BASE_URL="",
            OPENAI_API_KEY="",
        )
        backend = Backend(free_port(), environment, workdir / "backend.log")
        backend.start()
        engine = make_engine(database_url)
        accounts = Accounts(Settings(database_url=database_url, auth_methods=("local",), allow_signup=True), engine)
        try:
            yield Server(backend.url, backend, accounts, engine)
        finally:
            backend.stop()
            engine.dispose()


def client(server: Server, key: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=30, follow_redirects=False)


_addresses = (f"10.1.{n // 250}.{n % 250 + 1}" for n in itertools.count())


def sign_up(server: Server, email: str) -> tuple[httpx.Client, User]:
    """A browser-like client signed up (and so signed in) as `email`, each from an address of its own
    (as nginx would say, in X-Forwarded-For), so that the sign-up throttle leaves them be."""
    browser = client(server)
    answer = browser.post(
        "/auth/sign-up", data={"email": email, "password": PASSWORD}, headers={"X-Forwarded-For": next(_addresses)}
    )
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


def test_refusals_redirect_to_the_form_with_their_code_and_set_no_session(server: Server, fake: FakeLLMServer) -> None:
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
        cookies = answer.headers.get_list("set-cookie")
        assert not [c for c in cookies if c.startswith(SESSION_COOKIE)]
        if path == "/auth/sign-in":  # the form shows the email again: in a short-lived cookie, never the password
            [remembered] = cookies
            email = data["email"].replace("@", "%40")
            assert remembered.startswith(f"{SIGN_IN_EMAIL_COOKIE}={email};") and data["password"] not in remembered
            assert "HttpOnly" in remembered and "Max-Age=600" in remembered
            assert data["email"].split("@")[0] not in answer.headers["location"]  # nothing of it in the URL
        else:
            assert cookies == []

    # A form posted from another site (login CSRF) is refused even with the right password.
    answer = browser.post(
        "/auth/sign-in",
        data={"email": "bea@example.com", "password": PASSWORD},
        headers={"Origin": "https://evil.example"},
    )
    assert answer.status_code == 403 and "set-cookie" not in answer.headers


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
                not_found = (404, {"detail": "That conversation was not found."})
                assert (answer.status_code, answer.json()) == not_found, path
        assert conversation_id not in str(intruder.get("/api/conversations").json())

    assert snapshot(server.engine) == before
    assert len(fake.chat_requests()) == requests_before


def stored_attachment(server: Server, owner_id: str) -> str:
    """A text file stored in a new conversation of `owner_id`; returns its URL token."""
    with session_scope(server.engine) as session:
        conversation = conversations.create_conversation(session, owner_id, title="With a file")
        message = conversations.add_message(session, conversation, "user", "see the file")
        assert message.id is not None
        [row] = add_attachments(session, message.id, [PreparedAttachment("notes.txt", "text/plain", b"mine", "mine")])
        return row.token


def test_a_personal_key_reads_its_own_attachments_and_no_one_elses(server: Server) -> None:
    _, owner = sign_up(server, "ida@example.com")
    _, other = sign_up(server, "jon@example.com")
    _, owner_key = asyncio.run(server.accounts.create_api_key(owner.id))  # type: ignore[arg-type]
    _, other_key = asyncio.run(server.accounts.create_api_key(other.id))  # type: ignore[arg-type]
    token = stored_attachment(server, owner.owner_id)

    with client(server, owner_key) as api:
        answer = api.get(f"/api/attachments/{token}")
        assert (answer.status_code, answer.content) == (200, b"mine")
    with client(server, other_key) as api:
        assert api.get(f"/api/attachments/{token}").status_code == 404
    with client(server, "cbk_" + "x" * 40) as api:
        assert api.get(f"/api/attachments/{token}").status_code == 401


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


# --- behind a proxy: the client's address, not the proxy's ------------------------------------------------


def test_behind_a_trusted_proxy_one_attackers_failures_do_not_lock_everyone_out(
    server: Server, fake: FakeLLMServer
) -> None:
    sign_up(server, "gil@example.com")
    attacker = client(server)
    forwarded = {"X-Forwarded-For": "203.0.113.66"}
    locations = [
        attacker.post(
            "/auth/sign-in", data={"email": f"guess{n}@example.com", "password": "wrong"}, headers=forwarded
        ).headers["location"]
        for n in range(31)
    ]
    assert locations[:30] == [f"{APP_URL}/login?error=invalid"] * 30
    assert locations[30] == f"{APP_URL}/login?error=throttled"  # 30 failures close this address

    # Everyone else comes through the same proxy (127.0.0.1) from their own address: still welcome.
    user = client(server)
    answer = user.post(
        "/auth/sign-in",
        data={"email": "gil@example.com", "password": PASSWORD},
        headers={"X-Forwarded-For": "198.51.100.23"},
    )
    assert answer.headers["location"] == f"{APP_URL}/"
    # A client cannot pose as another address in front of the proxy: the proxy's own hop counts.
    spoofed = attacker.post(
        "/auth/sign-in",
        data={"email": "guess@example.com", "password": "wrong"},
        headers={"X-Forwarded-For": "198.51.100.23, 203.0.113.66"},
    )
    assert spoofed.headers["location"] == f"{APP_URL}/login?error=throttled"


def test_sign_up_is_throttled_per_address_over_http(server: Server, fake: FakeLLMServer) -> None:
    browser = client(server)
    forwarded = {"X-Forwarded-For": "192.0.2.77"}
    locations = [
        browser.post(
            "/auth/sign-up", data={"email": f"bulk{n}@example.com", "password": PASSWORD}, headers=forwarded
        ).headers["location"]
        for n in range(11)
    ]
    assert locations[:10] == [f"{APP_URL}/"] * 10
    assert locations[10] == f"{APP_URL}/signup?error=signup_throttled"


def test_a_temporary_password_signs_in_to_the_account_page_and_a_reset_revokes_keys(
    server: Server, fake: FakeLLMServer
) -> None:
    _, user = sign_up(server, "hal@example.com")
    admin = next(u for u in asyncio.run(_all_users(server)) if u.is_admin)
    _, key = asyncio.run(server.accounts.create_api_key(user.id, "script"))  # type: ignore[arg-type]
    with client(server, key) as api:
        assert api.get("/api/conversations").status_code == 200
        temporary = asyncio.run(server.accounts.reset_password(admin.id, user.id))  # type: ignore[arg-type]
        assert api.get("/api/conversations").status_code == 401  # the backend process sees it at once

    browser = client(server)
    answer = browser.post("/auth/sign-in", data={"email": "hal@example.com", "password": temporary})
    assert answer.headers["location"] == f"{APP_URL}/account"
    assert browser.get("/auth/session").json()["must_change_password"] is True


def test_two_different_session_cookies_sign_nobody_in(server: Server, fake: FakeLLMServer) -> None:
    """Over plain HTTP there is no __Host- prefix: a cookie tossed in beside the user's own (from a sibling
    subdomain) must not win by coming first, so two different ones are no one's."""
    victim, _ = sign_up(server, "ivy@example.com")
    attacker, _ = sign_up(server, "mal@example.com")
    tossed, own = attacker.cookies[SESSION_COOKIE], victim.cookies[SESSION_COOKIE]
    with client(server) as browser:
        answer = browser.get("/auth/session", headers={"Cookie": f"{SESSION_COOKIE}={tossed}; {SESSION_COOKIE}={own}"})
        assert answer.status_code == 401
        answer = browser.get("/auth/session", headers={"Cookie": f"{SESSION_COOKIE}={own}; {SESSION_COOKIE}={own}"})
        assert answer.json()["email"] == "ivy@example.com"


def test_auth_routes_refuse_other_web_origins(server: Server, fake: FakeLLMServer) -> None:
    browser, _ = sign_up(server, "jo@example.com")
    cookie = {"Cookie": f"{SESSION_COOKIE}={browser.cookies[SESSION_COOKIE]}"}
    with client(server) as other:
        # Another origin of the same site (the cookie is SameSite=Strict, so it comes along): refused.
        answer = other.get("/auth/session", headers={**cookie, "Origin": "http://app.example:4000"})
        assert answer.status_code == 403 and "jo@example.com" not in answer.text
        assert "access-control-allow-origin" not in answer.headers
        # A preflight from it is not granted either.
        preflight = other.options(
            "/auth/session",
            headers={"Origin": "http://app.example:4000", "Access-Control-Request-Method": "GET"},
        )
        assert preflight.headers.get("access-control-allow-origin") is None
        # The app's own origin is welcome, with credentials.
        answer = other.get("/auth/session", headers={**cookie, "Origin": APP_URL.rstrip("/")})
        assert answer.json()["email"] == "jo@example.com"
        assert answer.headers["access-control-allow-origin"] == APP_URL.rstrip("/")


def test_served_over_https_the_cookie_is_host_prefixed_and_a_plain_one_is_ignored(
    server: Server, fake: FakeLLMServer
) -> None:
    sign_up(server, "kai@example.com")
    secure_app = "https://app.example"
    server.backend.restart(CHATBOT_APP_URL=secure_app)
    try:
        with client(server) as browser:
            answer = browser.post("/auth/sign-in", data={"email": "kai@example.com", "password": PASSWORD})
            cookie = answer.headers["set-cookie"]
            assert cookie.startswith(f"{SECURE_SESSION_COOKIE}=") and "Domain" not in cookie
            assert "Secure" in cookie and "Path=/" in cookie and "HttpOnly" in cookie
            token = cookie.split(";", 1)[0].split("=", 1)[1]
            # httpx keeps a Secure cookie off plain HTTP, as a browser would: send it as the browser would over HTTPS.
            signed_in = {"Cookie": f"{SECURE_SESSION_COOKIE}={token}"}
            assert browser.get("/auth/session", headers=signed_in).json()["email"] == "kai@example.com"
            # A plain-named cookie (which a sibling subdomain could have set) counts for nothing, first or not.
            tossed = {"Cookie": f"{SESSION_COOKIE}={token}"}
            assert browser.get("/auth/session", headers=tossed).status_code == 401
            _, mallory = sign_up_over(browser, "mallory2@example.com")
            both = {"Cookie": f"{SESSION_COOKIE}={mallory}; {SECURE_SESSION_COOKIE}={token}"}
            assert browser.get("/auth/session", headers=both).json()["email"] == "kai@example.com"
            answer = browser.post("/auth/sign-out", headers=signed_in)
            assert f"{SECURE_SESSION_COOKIE}=" in answer.headers["set-cookie"]  # cleared
            assert browser.get("/auth/session", headers=signed_in).status_code == 401
    finally:
        server.backend.restart(CHATBOT_APP_URL=APP_URL)


def sign_up_over(browser: httpx.Client, email: str) -> tuple[int, str]:
    """Sign up with `browser`; the status and the session token from the answer's Set-Cookie."""
    answer = browser.post(
        "/auth/sign-up", data={"email": email, "password": PASSWORD}, headers={"X-Forwarded-For": next(_addresses)}
    )
    return answer.status_code, answer.headers["set-cookie"].split(";", 1)[0].split("=", 1)[1]
