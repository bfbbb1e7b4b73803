"""Accounts in the chat UI, in Chromium with CHATBOT_AUTH=local: sign up, chat, sign out, a second
browser following a streaming reply, a disabled user thrown out, the admin and account pages,
claiming anonymous conversations, share links; and every handler refusing a cookie-less websocket.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import re
import secrets
import urllib.error
import urllib.request
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from chatbot_app.config import Settings
from chatbot_app.services.accounts import Accounts
from chatbot_app.state.account import AccountState
from chatbot_app.state.admin import AdminState
from chatbot_app.state.conversation import ConversationState
from chatbot_app.state.library import LibraryState
from chatbot_app.state.reply import ReplyState
from chatbot_app.state.session import SessionState
from chatbot_app.state.settings import SettingsState
from chatbot_app.state.share import ShareLinksState, ShareListState
from chatbot_app.storage.database import make_engine
from chatbot_app.storage.models import Conversation, Message
from tests.e2e.conftest import app_of_its_own
from tests.e2e.live_app import LiveApp
from tests.e2e.reflex_client import ReflexClient
from tests.e2e.test_chat_in_browser import send, wait_for_conversation_url, wait_for_replies
from tests.e2e.test_reliability_in_browser import last_reply, wait_for_streaming_text
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery"
ADMIN = "admin@example.com"
T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Await in a thread of its own: Playwright's sync API keeps an event loop running in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result(timeout=600)


@pytest.fixture(scope="module")
def accounts_app(tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLMServer) -> Iterator[LiveApp]:
    def make_the_admin(database_url: str) -> None:
        # The first account is the admin: made here, so that the tests' sign-ups are ordinary users.
        engine = make_engine(database_url)
        settings = Settings(database_url=database_url, auth_methods=("local",))
        run(Accounts(settings, engine).sign_up(ADMIN, PASSWORD))
        engine.dispose()

    with app_of_its_own(
        tmp_path_factory,
        fake_llm,
        "accounts_app",
        make_the_admin,
        CHATBOT_LOCAL_MODEL="off",
        CHATBOT_AUTH="local",
        CHATBOT_ALLOW_SIGNUP="true",  # the tests sign up users of their own
    ) as running:
        yield running


def new_tab(browser, init_script: str | None = None):  # type: ignore[no-untyped-def]
    """A page in a new browser context (its own cookies and storage)."""
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    if init_script:
        context.add_init_script(init_script)
    page = context.new_page()
    page.set_default_timeout(20_000)
    return page


def submit_credentials(page, app: LiveApp, path: str, email: str, password: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{app.frontend_url}{path}")
    page.fill("#email-input", email)
    page.fill("#password-input", password)
    page.click("#sign-up-button" if path == "/signup" else "#sign-in-button")


def sign_up(page, app: LiveApp, email: str) -> None:  # type: ignore[no-untyped-def]
    submit_credentials(page, app, "/signup", email, PASSWORD)
    at_path(page, app, "/")
    page.wait_for_selector("#user-menu")


def sign_in(page, app: LiveApp, email: str, password: str = PASSWORD) -> None:  # type: ignore[no-untyped-def]
    submit_credentials(page, app, "/login", email, password)
    at_path(page, app, "/")
    page.wait_for_selector("#user-menu")


def at_path(page, app: LiveApp, path: str) -> None:  # type: ignore[no-untyped-def]
    """Wait until the page is at `path` of the UI (the static server adds a trailing slash to pages)."""
    page.wait_for_url(re.compile(re.escape(app.frontend_url + path.rstrip("/")) + "/?$"))


def open_user_menu(page) -> None:  # type: ignore[no-untyped-def]
    page.click("#user-menu")
    page.wait_for_selector("#sign-out-button")


def change_password(page, current: str, new: str) -> None:  # type: ignore[no-untyped-def]
    """The form on /account; the page says when it is done."""
    page.fill("#current-password-input", current)
    page.fill("#new-password-input", new)
    page.click("#change-password-button")
    page.wait_for_selector("#password-notice:has-text('Your password is changed')")


def conversation_items(page) -> int:  # type: ignore[no-untyped-def]
    return page.locator("[data-testid=conversation-item]").count()


def test_sign_up_chat_sign_out_and_a_second_browser_follows_a_streaming_reply(  # type: ignore[no-untyped-def]
    browser, accounts_app: LiveApp, fake: FakeLLMServer
) -> None:
    first = new_tab(browser)
    sign_up(first, accounts_app, "ann@example.com")
    fake.enqueue_stream(Behaviour(text="Hello Ann."))
    send(first, "Hi, I am Ann.")
    wait_for_replies(first, 1)
    url = wait_for_conversation_url(first)
    # Another browser (no shared storage): signing in shows the same conversation.
    second = new_tab(browser)
    sign_in(second, accounts_app, "ann@example.com")
    second.wait_for_function("document.querySelectorAll('[data-testid=conversation-item]').length === 1")
    # A reply still being written there is followed live here.
    fake.enqueue_stream(Behaviour(text="", tokens=600, tokens_per_s=40))  # fifteen seconds
    send(first, "Stream for a while")
    wait_for_streaming_text(first)
    second.goto(url)
    second.wait_for_selector("[data-role=assistant][data-status=streaming]")
    second.wait_for_function(  # followed live, up to its end
        "document.querySelectorAll('[data-role=assistant][data-status=complete]').length >= 2", timeout=60_000
    )
    assert len(last_reply(second).inner_text().split()) >= 600

    # Sign out ends this browser's session only; the app then turns it away.
    open_user_menu(first)
    first.click("#sign-out-button")
    at_path(first, accounts_app, "/login")
    assert not [c for c in first.context.cookies() if c["name"] == "chatbot_session"]
    first.goto(url)
    at_path(first, accounts_app, "/login")
    second.reload()
    second.wait_for_function("document.querySelectorAll('[data-role=assistant]').length === 2")

    # "Sign out everywhere" ends the other browser's session too.
    third = new_tab(browser)
    sign_in(third, accounts_app, "ann@example.com")
    open_user_menu(third)
    third.click("#sign-out-everywhere-button")
    at_path(third, accounts_app, "/login")
    send(second, "Still signed in?")  # its next event finds no session
    at_path(second, accounts_app, "/login")
    for page in (first, second, third):
        page.context.close()


def test_a_wrong_password_is_refused_with_its_message(browser, accounts_app: LiveApp) -> None:  # type: ignore[no-untyped-def]
    page = new_tab(browser)
    submit_credentials(page, accounts_app, "/login", ADMIN, "not the password")
    page.wait_for_selector('[data-testid="auth-error"]')
    assert page.inner_text('[data-testid="auth-error"]') == "Wrong email or password."
    assert not [c for c in page.context.cookies() if c["name"] == "chatbot_session"]
    page.goto(accounts_app.frontend_url)  # the chat is closed without a session
    at_path(page, accounts_app, "/login")
    page.context.close()


def test_the_admin_pages_a_disabled_user_thrown_out_at_once_and_a_quota(  # type: ignore[no-untyped-def]
    browser, accounts_app: LiveApp, fake: FakeLLMServer
) -> None:
    user = new_tab(browser)
    sign_up(user, accounts_app, "dan@example.com")
    open_user_menu(user)
    assert user.locator("#admin-link").count() == 0  # not an admin: no link, and the page sends back
    user.goto(f"{accounts_app.frontend_url}/admin")
    at_path(user, accounts_app, "/")
    fake.enqueue_stream(Behaviour(text="Counted."))
    send(user, "Count my tokens")
    wait_for_replies(user, 1)

    admin = new_tab(browser)
    sign_in(admin, accounts_app, ADMIN)
    open_user_menu(admin)
    admin.click("#admin-link")
    at_path(admin, accounts_app, "/admin")
    row = admin.locator(".user-row[data-email='dan@example.com']")
    row.wait_for()
    # Usage per user and model: dan's one message is there.
    admin.wait_for_selector(".usage-row:has-text('dan@example.com'):has-text('fake-large')")

    # Disabled (once confirmed): dan's very next event throws him out, and nothing reaches the provider.
    row.locator(".toggle-disabled-button").click()
    admin.click("#confirm-admin-action")
    admin.wait_for_selector(".user-row[data-email='dan@example.com'] .user-status:has-text('disabled')")
    requests_before = len(fake.chat_requests())
    send(user, "Am I still here?")
    at_path(user, accounts_app, "/login")
    assert len(fake.chat_requests()) == requests_before
    submit_credentials(user, accounts_app, "/login", "dan@example.com", PASSWORD)
    user.wait_for_selector('[data-testid="auth-error"]')
    assert "disabled" in user.inner_text('[data-testid="auth-error"]')

    # Enabled again, with a temporary password (shown once) and a daily quota of one token.
    row.locator(".toggle-disabled-button").click()
    admin.click("#confirm-admin-action")
    admin.wait_for_selector(".user-row[data-email='dan@example.com'] .user-status:has-text('active')")
    row.locator(".reset-password-button").click()
    admin.click("#confirm-admin-action")
    admin.wait_for_function("document.querySelector('#temporary-password').value.length > 8")
    temporary = admin.input_value("#temporary-password")
    row.locator("input[name=daily_tokens]").fill("1")
    row.locator("button[type=submit]").click()
    admin.wait_for_selector("#admin-notice:has-text('Quota saved')")

    # A temporary password leads to /account, where dan chooses his own before anything else.
    submit_credentials(user, accounts_app, "/login", "dan@example.com", temporary)
    at_path(user, accounts_app, "/account")
    user.wait_for_selector("#must-change-password")
    change_password(user, temporary, "dan's very own password")
    user.goto(accounts_app.frontend_url)
    user.wait_for_selector("#user-menu")
    requests_before = len(fake.chat_requests())
    send(user, "One more, past my quota")
    user.wait_for_selector('#notice:has-text("You have used today\'s 1 tokens")')
    assert len(fake.chat_requests()) == requests_before
    user.context.close()
    admin.context.close()


def test_personal_api_keys_are_shown_once_act_as_their_user_and_can_be_revoked(  # type: ignore[no-untyped-def]
    browser, accounts_app: LiveApp
) -> None:
    page = new_tab(browser)
    sign_up(page, accounts_app, "kim@example.com")
    open_user_menu(page)
    page.click("#account-link")
    at_path(page, accounts_app, "/account")
    page.fill("#api-key-name", "laptop")
    page.click("#create-api-key-button")
    page.wait_for_function("document.querySelector('#new-api-key').value.startsWith('cbk_')")
    key = page.input_value("#new-api-key")
    page.wait_for_selector(".api-key-row:has-text('laptop')")
    assert key not in page.inner_text("body")  # listed by its first characters only

    def conversations_status() -> int:
        request = urllib.request.Request(
            f"{accounts_app.backend.url}/api/conversations", headers={"Authorization": f"Bearer {key}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as refused:
            return refused.code

    assert conversations_status() == 200
    page.locator(".api-key-row:has-text('laptop') .revoke-key-button").click()
    page.wait_for_selector("#account-notice:has-text('revoked')")
    assert conversations_status() == 401
    page.context.close()


def test_anonymous_conversations_move_into_the_account_only_on_yes(browser, accounts_app: LiveApp) -> None:  # type: ignore[no-untyped-def]
    identity = secrets.token_urlsafe(24)
    engine = make_engine(accounts_app.database_url)
    with Session(engine) as session:
        conversation = Conversation(owner_id=identity, title="Notes from before")
        session.add(conversation)
        session.commit()
        conversation_id = conversation.id

    def owner() -> str:
        with Session(engine) as session:
            return session.get(Conversation, conversation_id).owner_id  # type: ignore[union-attr]

    # A browser whose localStorage identity owns that conversation (as `make run` left it).
    page = new_tab(browser, f"localStorage.setItem('chatbot_identity', {identity!r})")
    sign_up(page, accounts_app, "eve@example.com")
    page.wait_for_selector("#claim-no")
    page.click("#claim-no")
    page.wait_for_selector("#claim-no", state="detached")
    assert owner() == identity  # no: nothing moved
    assert conversation_items(page) == 0

    other = page.context.new_page()  # a new tab of the same browser: offered again
    other.set_default_timeout(20_000)
    other.goto(accounts_app.frontend_url)
    other.click("#claim-yes")
    other.wait_for_selector("[data-testid=conversation-item]:has-text('Notes from before')")
    assert owner().startswith("user:")
    page.context.close()
    engine.dispose()


def test_a_share_link_opens_signed_out_until_it_is_revoked(  # type: ignore[no-untyped-def]
    browser, accounts_app: LiveApp, fake: FakeLLMServer
) -> None:
    page = new_tab(browser)
    sign_up(page, accounts_app, "sam@example.com")
    fake.enqueue_stream(Behaviour(text="Pelicans are **big** birds."))
    send(page, "Tell me about pelicans")
    wait_for_replies(page, 1)
    wait_for_conversation_url(page)
    page.click("#conversation-menu")
    page.click("#share-button")
    page.wait_for_function("document.querySelector('#share-link').value.includes('/s/')")
    link = page.input_value("#share-link")
    assert link.startswith(f"{accounts_app.frontend_url}/s/")

    reader = new_tab(browser)  # signed out
    reader.goto(link)
    reader.wait_for_selector(".shared-message strong")
    assert "Pelicans are big birds." in reader.inner_text("body")
    assert "sam@example.com" not in reader.content()

    page.locator(".revoke-share-button").first.click()
    page.wait_for_selector("#share-notice:has-text('revoked')")
    assert page.input_value("#share-link") == ""
    reader.reload()
    reader.wait_for_selector("#share-missing")
    page.context.close()
    reader.context.close()


# -- a websocket without a session cookie ------------------------------------------------------

SESSION, REPLY, CONVERSATION = (
    SessionState.get_full_name(),
    ReplyState.get_full_name(),
    ConversationState.get_full_name(),
)
LIBRARY, SETTINGS = LibraryState.get_full_name(), SettingsState.get_full_name()
ACCOUNT, ADMIN_STATE, SHARE = AccountState.get_full_name(), AdminState.get_full_name(), ShareLinksState.get_full_name()
SHARE_LIST = ShareListState.get_full_name()

#: Every handler that reads or writes data, with arguments it would accept from a signed-in user.
DATA_CALLS: list[tuple[str, dict[str, Any]]] = [
    (f"{CONVERSATION}.open_page", {}),
    (f"{REPLY}.send_message", {"form_data": {"message": "hello"}}),
    (f"{REPLY}.regenerate", {}),
    (f"{REPLY}.follow", {}),
    (f"{LIBRARY}.refresh", {}),
    (f"{LIBRARY}.load_more", {}),
    (f"{LIBRARY}.search", {"query": "zebra"}),
    (f"{LIBRARY}.toggle_pin", {"conversation_id": "0" * 32}),
    (f"{LIBRARY}.export_everything", {}),
    (f"{LIBRARY}.watch_import", {}),
    (f"{SETTINGS}.sync", {}),
    (f"{SETTINGS}.save_preset", {"form_data": {"preset_name": "mine"}}),
    (f"{ACCOUNT}.load_user", {}),
    (f"{ACCOUNT}.claim", {}),
    (f"{ACCOUNT}.load_account", {}),
    (f"{ACCOUNT}.create_api_key", {"form_data": {"key_name": "x"}}),
    (f"{ACCOUNT}.revoke_api_key", {"key_id": "1"}),
    (f"{ACCOUNT}.change_password", {"form_data": {"current_password": "x" * 8, "new_password": "y" * 8}}),
    (f"{ADMIN_STATE}.load", {}),
    (f"{ADMIN_STATE}.set_disabled", {"user_id": "1", "disabled": True}),
    (f"{ADMIN_STATE}.confirm_action", {}),
    (f"{ADMIN_STATE}.reset_password", {"user_id": "1"}),
    (f"{ADMIN_STATE}.set_quota", {"form_data": {"user_id": "1", "daily_tokens": "0"}}),
    (f"{ADMIN_STATE}.create_user", {"form_data": {"email": "new@example.com"}}),
    (f"{ADMIN_STATE}.set_signup_open", {"open_": True}),
    (f"{SHARE}.share", {}),
    (f"{SHARE}.revoke", {"share_id": "1"}),
    (f"{SHARE_LIST}.load", {}),
    (f"{SHARE_LIST}.revoke", {"share_id": "1"}),
]


async def call_without_a_session(backend_url: str, conversation_path: str) -> tuple[list[str], str]:
    """Call each data handler with no cookie; return those not sent to /login, and all the deltas' text."""
    redirects: list[str] = []
    seen: list[str] = []
    arrived = asyncio.Event()
    not_refused: list[str] = []

    def on_update(_at: float, _size: int, update: dict[str, Any]) -> None:
        seen.append(repr(update.get("delta") or {}))
        redirects.extend(
            str(e.get("payload", {}).get("path")) for e in update.get("events") or [] if e.get("name") == "_redirect"
        )
        arrived.set()

    async def refused(name: str, total: int) -> None:
        """Wait for the `total`-th redirect to /login (each refusal sends exactly one)."""
        try:
            async with asyncio.timeout(15):
                while redirects.count("/login") < total:
                    arrived.clear()
                    await arrived.wait()
        except TimeoutError:
            not_refused.append(name)

    # Opening a conversation's page (someone else's, in the URL) is turned away by its on_load.
    opener = ReflexClient(backend_url, importlib.metadata.version("reflex"), on_update=on_update)
    opener.pathname = conversation_path
    try:
        await opener.connect()
        await refused("the page's on_load", 1)
    finally:
        await opener.close()

    # A tab on the open sign-in page calls each handler directly, as if from the conversation's page.
    redirects.clear()
    client = ReflexClient(backend_url, importlib.metadata.version("reflex"), on_update=on_update)
    client.pathname = "/login"
    await client.connect()
    try:
        for number, (handler, payload) in enumerate(DATA_CALLS, start=1):
            client.pathname = conversation_path
            await client.emit(handler, payload)
            await refused(handler.rsplit(".", 1)[1], number)
    finally:
        await client.close()
    return not_refused, "\n".join(seen)


#: The other modes with accounts: the guard is the same, whatever ways of signing in are on. The provider
#: is never contacted here (nobody signs in), so its address need not answer.
OIDC_ENV = {
    "CHATBOT_OIDC_ISSUER": "http://127.0.0.1:9/never-contacted",
    "CHATBOT_OIDC_CLIENT_ID": "chatbot",
    "CHATBOT_OIDC_CLIENT_SECRET": "not-a-real-secret",
}


@pytest.mark.parametrize("mode", ["local", "local,oidc", "oidc"])
def test_every_handler_refuses_a_websocket_without_a_session(accounts_app: LiveApp, mode: str) -> None:
    if mode != "local":
        accounts_app.backend.restart(CHATBOT_AUTH=mode, **OIDC_ENV)
    try:
        refuses_a_websocket_without_a_session(accounts_app)
    finally:
        if mode != "local":
            accounts_app.backend.restart(CHATBOT_AUTH="local", **dict.fromkeys(OIDC_ENV))


def refuses_a_websocket_without_a_session(accounts_app: LiveApp) -> None:
    log_start = len(accounts_app.backend.log_text())  # from here: a restart's own noise is not a refusal's
    engine = make_engine(accounts_app.database_url)
    with Session(engine) as session:
        conversation = Conversation(owner_id="user:1", title="The admin's private plans")
        session.add(conversation)
        session.flush()
        session.add(Message(conversation_id=conversation.id, role="user", content="a secret message"))
        session.commit()
        conversation_id = conversation.id

    def counts() -> tuple[int, int]:
        with Session(engine) as session:
            return (
                session.exec(select(func.count()).select_from(Conversation)).one(),
                session.exec(select(func.count()).select_from(Message)).one(),
            )

    before = counts()
    not_refused, deltas = run(call_without_a_session(accounts_app.backend.url, f"/c/{conversation_id}"))
    assert not_refused == []
    assert "secret" not in deltas and "private plans" not in deltas
    assert counts() == before
    engine.dispose()
    assert "Traceback" not in accounts_app.backend.log_text()[log_start:]
