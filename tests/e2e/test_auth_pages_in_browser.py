"""The /login and /signup pages in Chromium with CHATBOT_AUTH=local: the forms post to the backend,
which sets the HttpOnly session cookie and redirects back; a refusal shows its message.

Needs the pages registered in chatbot_app.py: /login and /signup (on_load=AuthPageState.load), and
/s/[token] (share_page, on_load=SharePageState.load, meta=SHARE_META).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
from sqlmodel import Session

from chatbot_app.config import Settings
from chatbot_app.services.accounts import Accounts
from chatbot_app.services.shares import ShareLinks
from chatbot_app.storage import conversations as conversation_store
from chatbot_app.storage.database import make_engine
from chatbot_app.storage.models import Conversation
from tests.e2e.conftest import app_of_its_own
from tests.e2e.live_app import LiveApp
from tests.fakes.fake_llm_server import FakeLLMServer

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery"
T = TypeVar("T")


@pytest.fixture(scope="module")
def auth_app(tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLMServer) -> Iterator[LiveApp]:
    with app_of_its_own(
        tmp_path_factory,
        fake_llm,
        "auth_app",
        CHATBOT_LOCAL_MODEL="off",
        CHATBOT_AUTH="local",
        CHATBOT_ALLOW_SIGNUP="true",
    ) as app:
        yield app


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Await in a thread of its own: Playwright's sync API keeps an event loop running in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


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


def test_a_share_link_shows_a_snapshot_to_anyone_until_it_is_revoked(browser, auth_app: LiveApp) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(auth_app.database_url)
    accounts = Accounts(
        Settings(database_url=auth_app.database_url, auth_methods=("local",), allow_signup=True), engine
    )
    owner = run(accounts.sign_up("sharer@example.com", PASSWORD))
    with Session(engine) as session:
        conversation = Conversation(owner_id=owner.owner_id, title="Pelican facts")
        session.add(conversation)
        session.flush()
        conversation_store.add_message(session, conversation, "user", "Tell me about <b>pelicans</b>")
        conversation_store.add_message(session, conversation, "assistant", "They are **big** birds.")
        session.commit()
        conversation_id = conversation.id
    shares = ShareLinks(engine)
    token = run(shares.create(owner.owner_id, conversation_id))

    context = browser.new_context()  # signed out
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(f"{auth_app.frontend_url}/s/{token}")
    page.wait_for_selector("#shared-title")
    assert page.inner_text("#shared-title") == "Pelican facts"
    assert page.locator(".shared-message").count() == 2
    assert page.inner_text(".shared-message strong") == "big"  # the chat's Markdown
    assert page.locator(".shared-message b").count() == 0  # and raw HTML stays text
    assert "sharer@example.com" not in page.content()
    assert page.get_attribute('meta[name="robots"]', "content") == "noindex, nofollow"

    [link] = run(shares.links(owner.owner_id, conversation_id))
    run(shares.revoke(owner.owner_id, link.id))
    page.reload()
    page.wait_for_selector("#share-missing")
    page.goto(f"{auth_app.frontend_url}/s/{'x' * 43}")
    page.wait_for_selector("#share-missing")
    context.close()
    engine.dispose()
