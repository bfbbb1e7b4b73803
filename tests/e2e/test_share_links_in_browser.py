"""Share links on /account, in Chromium with accounts on: a conversation shared from its menu is listed
with its title, when it was made and the link to copy; Revoke ends it, its files included. Another user's
websocket calling the revoke handler with that link's id, or with nonsense, changes nothing and is told so.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterator
from typing import Any

import pytest
from sqlmodel import Session, col, select

from chatbot_app.services.actions import SHARE_NOT_FOUND
from chatbot_app.state.share import ShareListState
from chatbot_app.storage.database import make_engine
from chatbot_app.storage.models import ShareLink
from tests.e2e.conftest import app_of_its_own
from tests.e2e.live_app import LiveApp
from tests.e2e.reflex_client import ReflexClient
from tests.e2e.test_accounts_in_browser import at_path, new_tab, run, sign_up
from tests.e2e.test_chat_in_browser import send, wait_for_conversation_url, wait_for_replies
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def accounts_app(tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLMServer) -> Iterator[LiveApp]:
    with app_of_its_own(
        tmp_path_factory,
        fake_llm,
        "share_links_app",
        CHATBOT_LOCAL_MODEL="off",
        CHATBOT_AUTH="local",
        CHATBOT_ALLOW_SIGNUP="true",
    ) as running:
        yield running


def live_links(app: LiveApp) -> list[tuple[int, bool]]:
    """(id, revoked) of every link, from the database."""
    engine = make_engine(app.database_url)
    try:
        with Session(engine) as session:
            return [(row.id or 0, row.revoked) for row in session.exec(select(ShareLink).order_by(col(ShareLink.id)))]
    finally:
        engine.dispose()


def test_a_link_is_listed_on_the_account_page_copied_and_revoked(  # type: ignore[no-untyped-def]
    browser, accounts_app: LiveApp, fake: FakeLLMServer
) -> None:
    page = new_tab(browser)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    sign_up(page, accounts_app, "lee@example.com")
    page.goto(f"{accounts_app.frontend_url}/account")
    page.wait_for_selector("#no-share-links")  # nothing shared yet

    page.goto(accounts_app.frontend_url)
    page.set_input_files(
        "#composer input[type=file]",
        [{"name": "otters.txt", "mimeType": "text/plain", "buffer": b"Otters hold hands."}],
    )
    page.wait_for_selector("[data-testid=attachment]")
    fake.enqueue_stream(Behaviour(text="They do, when they sleep."))
    fake.enqueue_batch(Behaviour(text="Otter Facts", for_prompt="Tell me about otters"))  # its title
    send(page, "Tell me about otters")
    wait_for_replies(page, 1)
    wait_for_conversation_url(page)
    # The title comes from a request of its own after the reply: on a busy machine, give it time.
    page.wait_for_selector("[data-testid=conversation-item]:has-text('Otter Facts')", timeout=60_000)
    page.click("#conversation-menu")
    page.click("#share-button")
    page.wait_for_function("document.querySelector('#share-link').value.includes('/s/')")
    link = page.input_value("#share-link")

    page.goto(f"{accounts_app.frontend_url}/account")
    row = page.locator("[data-testid=share-link-row]")
    row.wait_for()
    assert row.count() == 1
    assert "Otter Facts" in row.inner_text()
    assert row.locator("time").count() == 1
    assert row.locator("input").input_value() == link
    row.locator(".copy-share-link-button").click()
    page.wait_for_selector("[data-testid=copied]:has-text('Link copied')")
    assert page.evaluate("navigator.clipboard.readText()") == link

    reader = new_tab(browser)  # signed out: anyone with the link
    reader.goto(link)
    reader.wait_for_selector("#shared-title")
    file_url = reader.locator(".shared-message [data-testid=message-attachment]").get_attribute("href") or ""
    assert "/api/shared/" in file_url
    served = reader.request.get(file_url)
    assert served.status == 200 and served.body() == b"Otters hold hands."

    row.locator(".revoke-share-button").click()
    page.wait_for_selector("#no-share-links")
    assert "revoked" in page.inner_text("#share-links-notice")
    reader.reload()
    reader.wait_for_selector("#share-missing")
    assert reader.request.get(file_url).status == 404  # the files went with the link
    page.reload()
    at_path(page, accounts_app, "/account")
    page.wait_for_selector("#no-share-links")  # read from the database, not the tab's state
    assert [revoked for _, revoked in live_links(accounts_app)] == [True]
    page.context.close()
    reader.context.close()


async def call_revoke_as(app: LiveApp, cookie: str, share_ids: list[Any]) -> list[str]:
    """Another user's tab on /account calls the revoke handler with each id; returns the notices it was shown."""
    tab = ReflexClient(
        app.backend.url,
        importlib.metadata.version("reflex"),
        headers={"Cookie": f"chatbot_session={cookie}", "Origin": app.frontend_url},
    )
    tab.pathname = "/account"
    await tab.connect()
    notices: list[str] = []
    try:
        await tab.until(lambda: tab.value(ShareListState, "links") == [])  # their own list: empty
        for share_id in share_ids:
            await tab.call(ShareListState, "revoke", share_id=share_id)
            notices.append(await tab.until(lambda: tab.value(ShareListState, "links_notice")))
            await tab.call(ShareListState, "load")  # clears the notice: the next call's is its own
            await tab.until(lambda: tab.value(ShareListState, "links_notice") == "")
    finally:
        await tab.close()
    return notices


def test_another_users_revoke_with_a_foreign_or_malformed_id_changes_nothing(  # type: ignore[no-untyped-def]
    browser, accounts_app: LiveApp, fake: FakeLLMServer
) -> None:
    owner = new_tab(browser)
    sign_up(owner, accounts_app, "kim@example.com")
    fake.enqueue_stream(Behaviour(text="Noted."))
    send(owner, "Kim's plans")
    wait_for_replies(owner, 1)
    wait_for_conversation_url(owner)
    owner.click("#conversation-menu")
    owner.click("#share-button")
    owner.wait_for_function("document.querySelector('#share-link').value.includes('/s/')")
    link = owner.input_value("#share-link")
    [kims] = [number for number, revoked in live_links(accounts_app) if not revoked]

    mallory = new_tab(browser)
    sign_up(mallory, accounts_app, "mallory@example.com")
    mallory.goto(f"{accounts_app.frontend_url}/account")
    mallory.wait_for_selector("#no-share-links")  # Kim's link is not listed for anyone else
    [cookie] = [c["value"] for c in mallory.context.cookies() if c["name"] == "chatbot_session"]
    hostile: list[Any] = [kims, str(kims), "abc", None, -1, 2**70, {"id": kims}, [str(kims)]]
    notices = run(call_revoke_as(accounts_app, cookie, hostile))

    assert notices == [SHARE_NOT_FOUND] * len(hostile)
    assert (kims, False) in live_links(accounts_app)
    reader = new_tab(browser)
    reader.goto(link)
    reader.wait_for_selector("#shared-title")  # still open to anyone with the link
    assert "Traceback" not in accounts_app.backend.log_text()
    for tab in (owner, mallory, reader):
        tab.context.close()
