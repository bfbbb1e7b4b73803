"""Browser fixtures: the exported app on loopback, driven by Debian's Chromium through Playwright."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import TEST_API_KEY, migrate, skip_or_fail
from tests.e2e.live_app import LiveApp, live_app
from tests.fakes.fake_llm_server import FakeLLMServer

CHROMIUM = os.environ.get("CHATBOT_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    # A fake microphone, allowed without asking (the voice tests record from it).
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        skip_or_fail(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@contextlib.contextmanager
def app_of_its_own(
    tmp_path_factory: pytest.TempPathFactory,
    fake_llm: FakeLLMServer,
    name: str,
    prepare: Callable[[str], None] | None = None,
    development: bool = False,
    **env: str,
) -> Iterator[LiveApp]:
    """A live app on a fresh SQLite database, answered by the fake Groq server, with `env` on top.

    `prepare(database_url)` runs on the migrated database before the app starts. With accounts on,
    the backend learns the UI's address (known only once it is served) for its sign-in redirects.
    `development`: React's development bundle, which warns in the console about mistakes.
    """
    workdir = tmp_path_factory.mktemp(name)
    database_url = f"sqlite:///{workdir / 'app.db'}"
    migrate(database_url)
    if prepare is not None:
        prepare(database_url)
    with live_app(
        workdir,
        database_url,
        development,
        GROQ_API_KEY=TEST_API_KEY,
        GROQ_BASE_URL=fake_llm.base_url,
        CHATBOT_MODEL="fake-large",
        **env,
    ) as running:
        if env.get("CHATBOT_AUTH", "none") != "none":
            running.backend.restart(CHATBOT_APP_URL=running.frontend_url)
        yield running


@pytest.fixture(scope="session")
def app(tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLMServer) -> Iterator[LiveApp]:
    with app_of_its_own(
        tmp_path_factory,
        fake_llm,
        "live_app",
        CHATBOT_STALE_REPLY_S="2",  # so a reply orphaned by a killed backend is found quickly
        # Every browser test is a new identity from 127.0.0.1: with the defaults (30 new identities an
        # hour, 60 messages a minute per address) a whole run's later tests were refused. The limits
        # have tests of their own (test_limits_over_websocket.py, tests/integration/test_abuse_limits.py).
        CHATBOT_NEW_IDENTITIES_PER_HOUR="100000",
        CHATBOT_ADDRESS_RATE_LIMIT_PER_MINUTE="100000",
        CHATBOT_UPLOADS_PER_MINUTE="100000",
    ) as running:
        yield running


@pytest.fixture
def page(browser, app: LiveApp, fake: FakeLLMServer):  # type: ignore[no-untyped-def]
    """A fresh browser context (a new anonymous identity) on the app's start page."""
    with start_page(browser, app) as page:
        yield page


@contextlib.contextmanager
def start_page(browser, app: LiveApp):  # type: ignore[no-untyped-def]
    """A new browser context on the app's start page, once it has settled; closed afterwards."""
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(app.frontend_url)
    page.wait_for_selector("#chat-input")
    # The model list is the page's on_load finishing: a test starts from a page that has settled.
    page.wait_for_selector("#model-select option", state="attached")
    yield page
    context.close()
