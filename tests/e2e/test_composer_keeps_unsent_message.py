"""The composer lets a message go only once it is stored: one the rate limit refuses, or one the
database is too busy to store, stays in the box with a notice saying why; a stored one is cleared.

Both run on the session's app, its backend restarted with the setting each needs (and restored).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

import pytest

from tests.e2e.live_app import LiveApp
from tests.fakes.fake_llm_server import FakeLLMServer

pytestmark = pytest.mark.e2e

#: The app's SQLite busy timeout in the busy test; the test holds the write lock for longer than this.
BUSY_TIMEOUT_S = 1


@contextlib.contextmanager
def backend_restarted_with(app: LiveApp, **env: str) -> Iterator[int]:
    """The app's backend with `env` changed; yields where its log stood, so a test reads only its own part."""
    before = {name: app.backend.env.get(name) for name in env}
    app.backend.restart(**env)
    try:
        yield len(app.backend.log_text())
    finally:
        app.backend.restart(**before)


@contextlib.contextmanager
def open_chat(browser, app: LiveApp) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """A new browser context (a new identity) on the app's start page."""
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(app.frontend_url)
    page.wait_for_selector("#chat-input")
    try:
        yield page
    finally:
        context.close()


def send(page, text: str) -> None:  # type: ignore[no-untyped-def]
    page.fill("#chat-input", text)
    page.keyboard.press("Enter")


def wait_for_replies(page, count: int) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function(
        f"document.querySelectorAll('[data-role=assistant][data-status=complete]').length >= {count}"
    )


def wait_for_notice(page, words: str) -> str:  # type: ignore[no-untyped-def]
    page.wait_for_function("words => (document.querySelector('#notice')?.innerText || '').includes(words)", arg=words)
    return page.inner_text("#notice")


def test_a_message_refused_by_the_rate_limit_stays_in_the_composer_and_a_stored_one_is_cleared(  # type: ignore[no-untyped-def]
    browser, app: LiveApp, fake: FakeLLMServer
) -> None:
    with backend_restarted_with(app, CHATBOT_RATE_LIMIT_PER_MINUTE="1") as log_start, open_chat(browser, app) as page:
        send(page, "The first message of the minute.")
        wait_for_replies(page, 1)
        page.wait_for_function("document.querySelector('#chat-input').value === ''")  # stored: let go

        send(page, "One too many.")
        notice = wait_for_notice(page, "Too many messages")
        assert "the limit is 1 a minute" in notice
        assert page.input_value("#chat-input") == "One too many."
        assert len(page.query_selector_all("[data-role=user]")) == 1  # the refused one was not shown as sent
        assert len(fake.streamed_requests()) == 1
        assert "Traceback" not in app.backend.log_text()[log_start:]


def test_a_message_the_busy_database_cannot_store_stays_in_the_composer_until_it_can(  # type: ignore[no-untyped-def]
    browser, app: LiveApp, fake: FakeLLMServer
) -> None:
    database_file = app.database_url.removeprefix("sqlite:///")
    busy_url = f"{app.database_url}?timeout={BUSY_TIMEOUT_S}"
    with backend_restarted_with(app, CHATBOT_DATABASE_URL=busy_url) as log_start, open_chat(browser, app) as page:
        # Another writer holds SQLite's write lock for longer than the app's busy timeout.
        holder = sqlite3.connect(database_file, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            send(page, "Please keep this one.")
            notice = wait_for_notice(page, "could not be saved")
            assert "still in the box" in notice
            assert page.input_value("#chat-input") == "Please keep this one."
            assert page.query_selector_all("[data-role=user]") == []
            assert fake.streamed_requests() == []
        finally:
            holder.execute("ROLLBACK")
            holder.close()

        page.focus("#chat-input")
        page.keyboard.press("Enter")  # the same text, sent again once the database is free
        wait_for_replies(page, 1)
        page.wait_for_function("document.querySelector('#chat-input').value === ''")
        assert page.inner_text("[data-role=user]").strip() == "Please keep this one."
        assert "Traceback" not in app.backend.log_text()[log_start:]
