"""What a long conversation costs in the browser, beside a short one.

Imports a ChatGPT export holding one 1,000-message conversation (about 1.5 MB) and one 4-message
conversation, serves the app as it is hosted (static export + production backend, the fake Groq
server answering), and measures in Chromium:

- the time to open each conversation, from navigation to its newest message on screen;
- a 300-token turn in the short conversation, and in the long one with its newest 50 messages loaded
  and with all 1,000 loaded: websocket bytes received from send to the reply's end (and the frames that
  follow it), the largest frame, and the browser's long tasks (over 50 ms) in that time;
- the time to scroll back from the newest message to the first, as a user does (scrolling up; with
  --click, clicking "Load earlier messages" each time, as versions before 2026-12 needed).

    .venv/bin/python bench/long_history_bench.py [--messages 1000] [--tokens 300] [--click]
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from playwright.sync_api import Page, sync_playwright
from sqlalchemy import text

from chatbot_app.storage import transfer
from chatbot_app.storage.database import make_engine, session_scope
from tests.conftest import TEST_API_KEY, migrate
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.live_app import live_app
from tests.e2e.test_long_history_in_browser import linear_chatgpt_export
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer

#: Words of one imported message: about 1.5 kB, as in the export the issue measured.
MESSAGE_TEXT = ("The quick brown fox jumps over the lazy dog, and then it **rests** a while. " * 20).strip()
#: Collects the browser's long tasks (the main thread busy for over 50 ms) from the page's start.
LONG_TASKS = """
window.__longTasks = [];
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) window.__longTasks.push(entry.duration);
}).observe({type: 'longtask', buffered: true});
"""
#: The fake Groq server answers every turn (with GROQ_BASE_URL).
SERVED_BY_FAKE = {"GROQ_API_KEY": TEST_API_KEY, "CHATBOT_MODEL": "fake-large"}
QUIET_S = 0.5  # a turn's trailing frames (totals, versions, title) have come when the socket is this quiet


def import_export(database_url: str, owner: str, data: bytes) -> dict[str, tuple[str, int, int]]:
    """Import `data` for `owner`; title -> (conversation id, first message id, last message id)."""
    engine = make_engine(database_url)
    parsed = transfer.parse_import(data, len(data) + 1, None, 0)
    with session_scope(engine) as session:
        transfer.import_conversations(session, owner, parsed)
    found = {}
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT c.title, c.id, min(m.id), max(m.id) FROM conversation c "
                "JOIN message m ON m.conversation_id = c.id WHERE c.owner_id = :owner GROUP BY c.id, c.title"
            ),
            {"owner": owner},
        )
        for title, conversation_id, first, last in rows:
            found[title] = (conversation_id, first, last)
    engine.dispose()
    return found


class Traffic:
    """Websocket frames the page receives."""

    def __init__(self, page: Page) -> None:
        self.frames: list[int] = []
        page.on("websocket", lambda ws: ws.on("framereceived", self._received))

    def _received(self, payload: str | bytes) -> None:
        self.frames.append(len(payload.encode() if isinstance(payload, str) else payload))

    def wait_quiet(self, page: Page) -> None:
        seen = -1
        while seen != len(self.frames):
            seen = len(self.frames)
            page.wait_for_timeout(QUIET_S * 1000)


def long_tasks_ms(page: Page) -> float:
    return float(page.evaluate("window.__longTasks.reduce((a, b) => a + b, 0)"))


def open_conversation(page: Page, base: str, conversation_id: str, last_id: int) -> float:
    started = time.monotonic()
    page.goto(f"{base}/c/{conversation_id}")
    page.wait_for_selector(f"#m-{last_id}", state="visible")
    return time.monotonic() - started


def turn(page: Page, traffic: Traffic, prompt: str) -> dict[str, float]:
    """Send one message and wait for its reply; the traffic and long tasks from send to quiet."""
    traffic.wait_quiet(page)
    replies = page.locator("[data-testid=message][data-role=assistant][data-status=complete]").count()
    traffic.frames.clear()
    busy_before = long_tasks_ms(page)
    page.fill("#chat-input", prompt)
    page.keyboard.press("Enter")
    page.wait_for_function(
        "n => document.querySelectorAll('[data-testid=message][data-role=assistant][data-status=complete]').length > n",
        arg=replies,
    )
    traffic.wait_quiet(page)
    return {
        "bytes": sum(traffic.frames),
        "largest": max(traffic.frames, default=0),
        "long_tasks_ms": long_tasks_ms(page) - busy_before,
    }


def scroll_back(page: Page, first_id: int, click: bool) -> float:
    """Scroll up until the first message is on the page, as a user does (clicking "Load earlier messages"
    each time, with `click`: for a version of the app that does not load on scrolling); the seconds it took."""
    started = time.monotonic()
    while not page.locator(f"#m-{first_id}").count():
        shown = page.locator("[data-testid=message]").count()
        page.locator("#message-scroller").evaluate("el => { el.scrollTop = 0; el.dispatchEvent(new Event('scroll')); }")
        if click:
            page.get_by_role("button", name="Load earlier messages").click()
        page.wait_for_function(
            "n => document.querySelectorAll('[data-testid=message]').length > n", arg=shown, timeout=60_000
        )
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--rate", type=float, default=300.0, help="upstream tokens per second")
    parser.add_argument(
        "--click", action="store_true", help="scroll back by clicking 'Load earlier messages' (versions before 2026-12)"
    )
    args = parser.parse_args()

    data = linear_chatgpt_export({"long": args.messages, "short": 4}, MESSAGE_TEXT)
    fake = FakeLLMServer(default=Behaviour(text="", tokens=args.tokens, tokens_per_s=args.rate)).start()
    owner = secrets.token_urlsafe(24)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        database_url = f"sqlite:///{workdir / 'bench.db'}"
        migrate(database_url)
        found = import_export(database_url, owner, data)
        with (
            live_app(workdir, database_url, **SERVED_BY_FAKE, GROQ_BASE_URL=fake.base_url) as app,
            sync_playwright() as playwright,
        ):
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
            context.add_init_script(f"localStorage.setItem('chatbot_identity', {json.dumps(owner)});")
            context.add_init_script(LONG_TASKS)
            page = context.new_page()
            page.set_default_timeout(120_000)
            traffic = Traffic(page)
            page.goto(app.frontend_url)  # the app's code cached, as for a user who has used it before
            page.wait_for_selector("#chat-input")

            short_id, _, short_last = found["short"]
            results["short"] = {"open_s": open_conversation(page, app.frontend_url, short_id, short_last)}
            results["short"].update(turn(page, traffic, "a question in a short conversation"))

            long_id, long_first, long_last = found["long"]
            results["long, 50 loaded"] = {"open_s": open_conversation(page, app.frontend_url, long_id, long_last)}
            results["long, 50 loaded"].update(turn(page, traffic, "a question in a long conversation"))
            results["long, all loaded"] = {"scroll_back_s": scroll_back(page, long_first, args.click)}
            results["long, all loaded"].update(turn(page, traffic, "another question, everything loaded"))
            browser.close()
    fake.stop()

    short = results["short"]["bytes"]
    print(f"{args.messages:,}-message conversation ({len(data):,}-byte export), {args.tokens}-token turns")
    columns = (
        ("open", 7),
        ("turn bytes", 12),
        ("vs short", 8),
        ("largest frame", 14),
        ("long tasks", 11),
        ("scroll back", 12),
    )
    print(f"{'':18} " + " ".join(f"{name:>{width}}" for name, width in columns))
    for name, row in results.items():
        opened = f"{row['open_s']:.2f} s" if "open_s" in row else ""
        back = f"{row['scroll_back_s']:.1f} s" if "scroll_back_s" in row else ""
        print(
            f"{name:18} {opened:>7} {row['bytes'] / 1000:>9,.1f} kB {row['bytes'] / short:>7.1f}x "
            f"{row['largest'] / 1000:>11,.1f} kB {row['long_tasks_ms']:>8,.0f} ms {back:>12}"
        )


if __name__ == "__main__":
    main()
