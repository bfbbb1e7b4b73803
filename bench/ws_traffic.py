"""Websocket traffic for one streamed reply, as Chromium receives it.

Starts the app as it is hosted (static export + production backend) against the fake Groq
server, sends one message whose reply has --tokens tokens at --rate tokens/s, and prints the
frames and bytes the browser received while that reply streamed.

    .venv/bin/python bench/ws_traffic.py [--tokens 2000] [--rate 1000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from playwright.sync_api import sync_playwright

from tests.conftest import TEST_API_KEY, migrate
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.live_app import live_app
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer, reply_tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=1000.0, help="upstream tokens per second")
    args = parser.parse_args()

    behaviour = Behaviour(text="", tokens=args.tokens, tokens_per_s=args.rate)
    reply_bytes = len("".join(reply_tokens([], behaviour)).encode())
    fake = FakeLLMServer(default=behaviour).start()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        database_url = f"sqlite:///{workdir / 'bench.db'}"
        migrate(database_url)
        with (
            live_app(
                workdir,
                database_url,
                GROQ_API_KEY=TEST_API_KEY,
                GROQ_BASE_URL=fake.base_url,
                CHATBOT_MODEL="fake-large",
                CHATBOT_MAX_TOKENS=str(args.tokens),  # the default (1,024) would cut the reply short
            ) as app,
            sync_playwright() as playwright,
        ):
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.set_default_timeout(120_000)
            frames: list[int] = []
            page.on("websocket", lambda ws: ws.on("framereceived", lambda p: frames.append(len(p))))
            page.goto(app.frontend_url)
            page.wait_for_selector("#chat-input")
            frames.clear()
            started = time.monotonic()
            page.fill("#chat-input", "benchmark")
            page.keyboard.press("Enter")
            page.wait_for_selector("[data-role=assistant][data-status=complete]")
            elapsed = time.monotonic() - started
            browser.close()
    fake.stop()

    total = sum(frames)
    upstream_s = args.tokens / args.rate
    print(f"reply: {args.tokens} tokens, {reply_bytes:,} bytes, upstream {upstream_s:.2f} s at {args.rate:g} tok/s")
    print(f"websocket frames received: {len(frames)}")
    print(f"websocket bytes received:  {total:,} ({total / reply_bytes:.1f}x the reply)")
    print(f"send to complete in page:  {elapsed:.2f} s")


if __name__ == "__main__":
    main()
