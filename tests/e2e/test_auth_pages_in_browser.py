"""The /login and /signup pages in Chromium with CHATBOT_AUTH=local: the forms post to the backend,
which sets the HttpOnly session cookie and redirects back; a refusal shows its message.

Needs the pages registered in chatbot_app.py (/login and /signup, on_load=AuthPageState.load).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import TEST_API_KEY, migrate
from tests.e2e.live_app import LiveApp, live_app
from tests.fakes.fake_llm_server import FakeLLMServer

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def auth_app(tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLMServer) -> Iterator[LiveApp]:
    workdir = tmp_path_factory.mktemp("auth_app")
    database_url = f"sqlite:///{workdir / 'app.db'}"
    migrate(database_url)
    with live_app(
        workdir,
        database_url,
        GROQ_API_KEY=TEST_API_KEY,
        GROQ_BASE_URL=fake_llm.base_url,
        CHATBOT_MODEL="fake-large",
        CHATBOT_LOCAL_MODEL="off",
        CHATBOT_AUTH="local",
    ) as running:
        # The sign-in endpoints redirect to the UI, whose port is known only now.
        running.backend.restart(CHATBOT_APP_URL=running.frontend_url)
        yield running


def fill_and_submit(page, email: str, password: str, button: str) -> None:  # type: ignore[no-untyped-def]
    page.fill("#email-input", email)
    page.fill("#password-input", password)
    page.click(button)


def test_sign_up_sets_the_session_cookie_and_a_wrong_password_shows_its_message(browser, auth_app: LiveApp) -> None:  # type: ignore[no-untyped-def]
    first = browser.new_context()
    page = first.new_page()
    page.set_default_timeout(20_000)
    page.goto(f"{auth_app.frontend_url}/signup")
    fill_and_submit(page, "ann@example.com", PASSWORD, "#sign-up-button")
    page.wait_for_url(f"{auth_app.frontend_url}/")
    [cookie] = [c for c in first.cookies() if c["name"] == "chatbot_session"]
    assert (cookie["httpOnly"], cookie["sameSite"]) == (True, "Strict")
    first.close()

    second = browser.new_context()
    page = second.new_page()
    page.set_default_timeout(20_000)
    page.goto(f"{auth_app.frontend_url}/login")
    assert page.get_attribute("a#signup-link", "href") == "/signup"
    fill_and_submit(page, "ann@example.com", "a wrong password", "#sign-in-button")
    page.wait_for_selector('[data-testid="auth-error"]')
    assert page.inner_text('[data-testid="auth-error"]') == "Wrong email or password."
    assert not [c for c in second.cookies() if c["name"] == "chatbot_session"]

    fill_and_submit(page, "ann@example.com", PASSWORD, "#sign-in-button")
    page.wait_for_url(f"{auth_app.frontend_url}/")
    assert [c for c in second.cookies() if c["name"] == "chatbot_session"]
    second.close()


def test_a_refused_sign_up_shows_its_message(browser, auth_app: LiveApp) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(f"{auth_app.frontend_url}/signup")
    fill_and_submit(page, "bo@example.com", "short", "#sign-up-button")  # the form checks min length first
    assert "error=" not in page.url  # nothing was posted
    page.eval_on_selector("#password-input", "el => el.removeAttribute('minlength')")
    fill_and_submit(page, "bo@example.com", "short", "#sign-up-button")
    page.wait_for_selector('[data-testid="auth-error"]')
    assert page.inner_text('[data-testid="auth-error"]') == "Use a password of 8 to 1024 characters."
    context.close()
