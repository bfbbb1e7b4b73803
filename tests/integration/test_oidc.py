"""Single sign-on end to end: the backend (authlib: discovery, PKCE, ID-token checks) against a real
OpenID provider on loopback (oidc-provider on Node.js), driven over HTTP through the provider's own
login and consent forms, as a browser would.
"""

from __future__ import annotations

import html
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
import pytest

from chatbot_app.api.auth_routes import OIDC_FLOW_COOKIE, email_allowed
from chatbot_app.services.accounts import SESSION_COOKIE
from tests.conftest import TEST_API_KEY, migrate, skip_or_fail
from tests.e2e.live_app import Backend, app_environment, free_port
from tests.fakes.fake_llm_server import FakeLLMServer
from tests.fakes.oidc_provider import OidcProvider

APP_URL = "http://app.example:3000"
CLIENT_ID, CLIENT_SECRET = "chatbot-test", "test-client-secret-" + "s" * 24
ALLOWED = "allowed.example"


@dataclass
class Setup:
    backend: Backend
    provider: OidcProvider

    @property
    def callback(self) -> str:
        return f"{self.backend.url}/auth/oidc/callback"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLMServer) -> Iterator[Setup]:
    workdir = tmp_path_factory.mktemp("oidc")
    backend_port = free_port()
    provider = OidcProvider(
        free_port(),
        CLIENT_ID,
        CLIENT_SECRET,
        f"http://127.0.0.1:{backend_port}/auth/oidc/callback",
        workdir / "oidc.log",
    )
    try:
        provider.start()
    except (OSError, subprocess.CalledProcessError) as exc:  # no npm registry to install from
        skip_or_fail(f"could not install or start oidc-provider: {exc}")
    database_url = f"sqlite:///{workdir / 'oidc.db'}"
    migrate(database_url)
    environment = app_environment(
        GROQ_API_KEY=TEST_API_KEY,
        GROQ_BASE_URL=fake_llm.base_url,
        CHATBOT_LOCAL_MODEL="off",
        CHATBOT_DATABASE_URL=database_url,
        CHATBOT_AUTH="local,oidc",
        CHATBOT_APP_URL=APP_URL,
        CHATBOT_OIDC_ISSUER=provider.issuer,
        CHATBOT_OIDC_CLIENT_ID=CLIENT_ID,
        CHATBOT_OIDC_CLIENT_SECRET=CLIENT_SECRET,
        CHATBOT_OIDC_REDIRECT_BASE=f"http://127.0.0.1:{backend_port}",
        CHATBOT_OIDC_EMAIL_DOMAINS=ALLOWED,
        CHATBOT_ALLOW_SIGNUP="true",
        CHATBOT_API_KEYS="",
    )
    backend = Backend(backend_port, environment, workdir / "backend.log")
    try:
        backend.start()
        yield Setup(backend, provider)
    finally:
        backend.stop()
        provider.stop()


def _form(page: httpx.Response) -> tuple[str, dict[str, str]]:
    """The first form on a provider page: its absolute action and its hidden inputs."""
    action = re.search(r'<form[^>]*action="([^"]+)"', page.text)
    assert action is not None, page.text[:500]
    hidden = dict(re.findall(r'<input[^>]*type="hidden"[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page.text))
    return urljoin(str(page.url), html.unescape(action.group(1))), hidden


def log_in_at_provider(browser: httpx.Client, setup: Setup, login: str) -> str:
    """Start a login at the backend and fill in the provider's login and consent forms.

    Returns the callback URL the provider sends the browser to (not yet visited).
    """
    answer = browser.get(f"{setup.backend.url}/auth/oidc/login")
    assert answer.status_code == 303 and OIDC_FLOW_COOKIE in answer.headers["set-cookie"]
    location = answer.headers["location"]
    authorize = parse_qs(urlsplit(location).query)
    assert authorize["code_challenge_method"] == ["S256"] and authorize["code_challenge"] and authorize["nonce"]
    for _ in range(12):
        if location.startswith(setup.callback):
            return location
        answer = browser.get(location)
        if answer.status_code == 200:  # a login or consent page
            action, fields = _form(answer)
            if 'name="login"' in answer.text:
                fields |= {"login": login, "password": "any password"}
            answer = browser.post(action, data=fields)
        assert answer.is_redirect, answer.text[:500]
        location = urljoin(str(answer.url), answer.headers["location"])
    raise AssertionError("the provider never redirected back")


def browser_client() -> httpx.Client:
    return httpx.Client(timeout=30, follow_redirects=False)


def test_a_full_login_signs_in_the_issuer_and_subject(setup: Setup) -> None:
    with browser_client() as browser:
        callback = log_in_at_provider(browser, setup, f"grace@{ALLOWED}")
        answer = browser.get(callback)

        assert (answer.status_code, answer.headers["location"]) == (303, f"{APP_URL}/")
        assert SESSION_COOKIE in browser.cookies
        me = browser.get(f"{setup.backend.url}/auth/session").json()
        assert (me["signed_in"], me["email"]) == (True, f"grace@{ALLOWED}")
        owner_id = me["owner_id"]

    with browser_client() as again:  # the same (issuer, sub) is the same user next time
        again.get(log_in_at_provider(again, setup, f"grace@{ALLOWED}"))
        assert again.get(f"{setup.backend.url}/auth/session").json()["owner_id"] == owner_id


def test_a_wrong_state_is_refused(setup: Setup) -> None:
    with browser_client() as browser:
        callback = log_in_at_provider(browser, setup, f"mallory@{ALLOWED}")
        query = parse_qs(urlsplit(callback).query)
        forged = setup.callback + "?" + urlencode({"code": query["code"][0], "state": "not-the-state-i-sent"})

        answer = browser.get(forged)
        assert answer.headers["location"] == f"{APP_URL}/login?error=oidc_failed"
        assert SESSION_COOKIE not in browser.cookies
        # The flow is spent: even the genuine callback no longer signs in.
        assert browser.get(callback).headers["location"] == f"{APP_URL}/login?error=oidc_failed"


def test_a_replayed_code_is_refused(setup: Setup) -> None:
    with browser_client() as browser:
        callback = log_in_at_provider(browser, setup, f"ann@{ALLOWED}")
        flow_cookie = browser.cookies[OIDC_FLOW_COOKIE]
        assert browser.get(callback).headers["location"] == f"{APP_URL}/"

    # An attacker holding both the callback URL and the flow cookie: the provider refuses the used code.
    with browser_client() as attacker:
        attacker.cookies.set(OIDC_FLOW_COOKIE, flow_cookie, domain="127.0.0.1", path="/auth/oidc")
        answer = attacker.get(callback)
        assert answer.headers["location"] == f"{APP_URL}/login?error=oidc_failed"
        assert SESSION_COOKIE not in attacker.cookies
    assert "OIDC callback refused: OAuthError" in setup.backend.log_text()  # the provider said invalid_grant
    with browser_client() as attacker:  # and without the cookie, the state check refuses it first
        assert attacker.get(callback).headers["location"] == f"{APP_URL}/login?error=oidc_failed"


def test_an_email_outside_the_allowlist_is_refused(setup: Setup) -> None:
    with browser_client() as browser:
        answer = browser.get(log_in_at_provider(browser, setup, "eve@elsewhere.example"))
        assert answer.headers["location"] == f"{APP_URL}/login?error=oidc_domain"
        assert SESSION_COOKIE not in browser.cookies


def test_an_unverified_email_is_never_taken_from_its_owner(setup: Setup) -> None:
    """Without an allowlist any email may sign in, but only a verified one is stored: an impostor who typed
    ceo@corp.example at the provider gets an account without it, and the real owner can still sign up."""
    setup.backend.restart(CHATBOT_OIDC_EMAIL_DOMAINS="")
    try:
        with browser_client() as impostor:
            answer = impostor.get(log_in_at_provider(impostor, setup, "unverified:ceo@corp.example"))
            assert answer.headers["location"] == f"{APP_URL}/"
            me = impostor.get(f"{setup.backend.url}/auth/session").json()
            assert (me["signed_in"], me["email"]) == (True, None)
        with browser_client() as owner:
            answer = owner.post(
                f"{setup.backend.url}/auth/sign-up", data={"email": "ceo@corp.example", "password": "the ceo's own pw"}
            )
            assert answer.headers["location"] == f"{APP_URL}/"
            assert owner.get(f"{setup.backend.url}/auth/session").json()["email"] == "ceo@corp.example"
        with browser_client() as verified:  # a verified email is kept, as before
            verified.get(log_in_at_provider(verified, setup, "grace@corp.example"))
            assert verified.get(f"{setup.backend.url}/auth/session").json()["email"] == "grace@corp.example"
    finally:
        setup.backend.restart(CHATBOT_OIDC_EMAIL_DOMAINS=ALLOWED)


def test_the_log_holds_no_client_secret_or_code(setup: Setup, tmp_path: Path) -> None:
    log = setup.backend.log_text()
    assert CLIENT_SECRET not in log and "code=" not in log and SESSION_COOKIE + "=" not in log


@pytest.mark.parametrize(
    ("email", "verified", "allowed"),
    [
        ("a@allowed.example", True, True),
        ("a@ALLOWED.example", None, True),
        ("a@allowed.example", False, False),
        ("a@sub.allowed.example", True, False),
        (None, True, False),
    ],
)
def test_the_allowlist_rule(email: str | None, verified: object, allowed: bool) -> None:
    assert email_allowed(email, verified, (ALLOWED,)) is allowed
    assert email_allowed(email, verified, ())
