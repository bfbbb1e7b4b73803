"""Usage you can see and imports you can leave, in Chromium with accounts on (issue 22): the tokens-per-day
chart on /account and /admin, and a large import's progress bar, which a reload shows again, until the
sidebar fills in.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlmodel import Session, select

from chatbot_app.config import Settings
from chatbot_app.services.accounts import Accounts
from chatbot_app.storage.database import make_engine
from chatbot_app.storage.models import DailyUsage, User, utcnow
from chatbot_app.storage.transfer import FORMAT_NAME
from tests.e2e.conftest import app_of_its_own
from tests.e2e.live_app import LiveApp
from tests.e2e.test_accounts_in_browser import ADMIN, PASSWORD, at_path, new_tab, run, sign_in
from tests.fakes.fake_llm_server import FakeLLMServer

pytestmark = pytest.mark.e2e

USER, NEWCOMER, IMPORTER = "uma@example.com", "nell@example.com", "ivo@example.com"
#: The import: conversations of 10 messages each (more than one batch, IMPORT_BATCH_ROWS).
IMPORTED = 300
BARS = "[data-testid=usage-chart] svg .recharts-bar-rectangle path"


@pytest.fixture(scope="module")
def usage_app(tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLMServer) -> Iterator[LiveApp]:
    def accounts_with_usage(database_url: str) -> None:
        """The admin and three users; two of them spent tokens on two models over the last days."""
        engine = make_engine(database_url)
        accounts = Accounts(Settings(database_url=database_url, auth_methods=("local",), allow_signup=True), engine)
        for email in (ADMIN, USER, NEWCOMER, IMPORTER):
            run(accounts.sign_up(email, PASSWORD))
        accounts.passwords.close()
        today = utcnow().date()
        with Session(engine) as session:
            ids = {user.email: user.id for user in session.exec(select(User))}
            for days_ago, model, tokens in [(0, "fake-large", 900), (0, "llama-3.1-8b", 300), (6, "fake-large", 500)]:
                day = today - timedelta(days=days_ago)
                session.add(DailyUsage(user_id=ids[USER], day=day, model=model, messages=3, prompt_tokens=tokens))
            session.add(DailyUsage(user_id=ids[ADMIN], day=today, model="fake-large", messages=1, prompt_tokens=50))
            session.commit()
        engine.dispose()

    with app_of_its_own(
        tmp_path_factory,
        fake_llm,
        "usage_app",
        accounts_with_usage,
        CHATBOT_LOCAL_MODEL="off",
        CHATBOT_AUTH="local",
    ) as running:
        yield running


def test_the_usage_chart_draws_tokens_per_day_on_account_and_admin(browser, usage_app: LiveApp) -> None:  # type: ignore[no-untyped-def]
    user = new_tab(browser)
    sign_in(user, usage_app, USER)
    user.goto(f"{usage_app.frontend_url}/account")
    user.wait_for_selector(BARS)
    # Two days with use; each day's bar is a stack of its models (one segment per model used that day).
    assert user.locator(BARS).count() == 3
    legend = user.inner_text("[data-testid=usage-chart] .recharts-legend-wrapper")
    assert "fake-large" in legend and "llama-3.1-8b" in legend
    assert user.locator(".usage-row").count() == 3  # the table beside it

    newcomer = new_tab(browser)
    sign_in(newcomer, usage_app, NEWCOMER)
    newcomer.goto(f"{usage_app.frontend_url}/account")
    newcomer.wait_for_selector("[data-testid=usage-chart] .usage-chart-empty")
    assert newcomer.locator("[data-testid=usage-chart] svg").count() == 0

    admin = new_tab(browser)
    sign_in(admin, usage_app, ADMIN)
    admin.goto(f"{usage_app.frontend_url}/admin")
    at_path(admin, usage_app, "/admin")
    admin.wait_for_selector(BARS)
    assert admin.locator(BARS).count() == 3  # everyone's: the admin's own tokens join uma's fake-large today
    top = admin.locator("#top-users-table .top-user-row")
    assert top.count() == 2
    assert USER in top.nth(0).inner_text() and "1,700" in top.nth(0).inner_text()
    assert ADMIN in top.nth(1).inner_text()
    for page in (user, newcomer, admin):
        page.context.close()


def large_export() -> bytes:
    text = "lorem ipsum dolor sit amet " * 20
    conversations = [
        {
            "title": f"imported {n}",
            "created_at": "2026-03-14T15:09:26+00:00",
            "messages": [
                {
                    "role": ("user", "assistant")[m % 2],
                    "content": f"{n}.{m} {text}",
                    "created_at": "2026-03-14T15:09:26+00:00",
                }
                for m in range(10)
            ],
        }
        for n in range(IMPORTED)
    ]
    return json.dumps({"format": FORMAT_NAME, "version": 1, "conversations": conversations}).encode()


def test_a_large_import_shows_its_progress_across_a_reload_and_fills_the_sidebar(browser, usage_app: LiveApp) -> None:  # type: ignore[no-untyped-def]
    page = new_tab(browser)
    sign_in(page, usage_app, IMPORTER)
    assert page.locator("[data-testid=conversation-item]").count() == 0
    # Another writer holds the database's write lock: the import waits for it (well within SQLite's busy
    # timeout) with its progress showing, however fast this machine stores 3,300 rows.
    writer = sqlite3.connect(usage_app.database_url.removeprefix("sqlite:///"), isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        page.set_input_files(
            "#import-upload input[type=file]",
            [{"name": "conversations.json", "mimeType": "application/json", "buffer": large_export()}],
        )
        page.wait_for_selector("[data-testid=import-progress]")
        assert page.locator("#import-button").is_disabled()  # one import at a time
        # The import is a job of the server: the tab may reload, and shows it again.
        page.reload()
        page.wait_for_selector("#user-menu")
        page.wait_for_selector("[data-testid=import-progress] #import-status:has-text('Stored 0 of 300 conversations')")
    finally:
        writer.execute("COMMIT")
        writer.close()
    page.wait_for_selector("#library-notice:has-text('Imported 300 conversations.')")
    page.wait_for_selector("[data-testid=import-progress]", state="detached")
    page.wait_for_selector("[data-testid=conversation-item]:has-text('imported ')")
    assert page.locator("[data-testid=conversation-item]").count() == 30  # the sidebar's first page
    page.context.close()
