"""What the tool loop costs (issue 21's goals), against the fake Groq server and the real MCP server on loopback.

1. **Overhead per round**: from the end of the model's stream that asked for a call to the next call of the
   model, less the tool's own run time. What is left is the loop's: storing the call (two writes), showing
   it (two log entries), building the next request. The tool is an instant one (`facts__lookup` on the MCP
   server would add its HTTP round trips, which are the tool's time): a function tool that returns at once.
2. **Shown in the tab**: from the moment the fake server writes the last chunk of a call's arguments to
   the moment the call's element appears in Chromium (both on this machine's wall clock), through the
   exported app and a production backend; split at the moment the backend began to store it and the
   moment its websocket frame reached the page. In a new chat with the call at once after the send (the
   backend is still storing the message, showing it and sending the tab to the chat's address) and after
   300 ms (a reasoning model thinks before it calls); and at once in a chat already open (its second message).
3. **Replies waiting on a slow tool**: 20 replies, each waiting on the MCP server's 10-second tool. While
   they wait: the log entries they write (frames), the backend's CPU time, and the event loop's lag.

    .venv/bin/python bench/tool_bench.py [--rounds 200] [--shown 20] [--think-ms 0,300] [--open-chat-think-ms 0]
        [--waiting 20]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sqlalchemy import text
from stream_bench import LIMITS_RAISED

from chatbot_app.config import Settings
from chatbot_app.providers import ProviderRegistry
from chatbot_app.providers.base import ChatMessage, ChatProvider, GenerationOptions, ProviderEvent
from chatbot_app.services.chat_service import ChatService
from chatbot_app.services.reply_jobs import ReplyJobs
from chatbot_app.services.reply_log import Frame, MemoryReplyLog, ToolUpdate
from chatbot_app.services.tools.toolbox import Tool, Toolbox, ToolOutcome
from chatbot_app.storage.database import make_engine
from tests.conftest import TEST_API_KEY, migrate
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer
from tests.fakes.mcp_server import FakeMcpServer

OWNER = "bench-" + "o" * 20


class TimedProvider(ChatProvider):
    """The real provider, with the moment each call of the model begins and its stream ends."""

    def __init__(self, inner: ChatProvider) -> None:
        self.inner, self.name, self.label = inner, inner.name, inner.label
        self.began: list[float] = []
        self.ended: list[float] = []

    async def stream(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> AsyncIterator[ProviderEvent]:
        self.began.append(time.perf_counter())
        async for event in self.inner.stream(messages, options):
            yield event
        self.ended.append(time.perf_counter())

    async def list_models(self) -> list[str]:
        return await self.inner.list_models()

    async def aclose(self) -> None:
        await self.inner.aclose()


def service_for(settings: Settings) -> tuple[ChatService, TimedProvider]:
    registry = ProviderRegistry.from_settings(settings)
    timed = TimedProvider(registry.get("groq"))
    return ChatService(settings, make_engine(settings.database_url), ProviderRegistry([timed], "groq")), timed


async def overhead_per_round(settings: Settings, fake: FakeLLMServer, rounds: int) -> list[float]:
    """Milliseconds per round that are neither the model's nor the tool's."""
    service, timed = service_for(settings)
    tool_ms: list[float] = []

    async def instant(arguments: dict[str, Any]) -> ToolOutcome:
        began = time.perf_counter()
        outcome = ToolOutcome(f"echo {arguments}")
        tool_ms.append((time.perf_counter() - began) * 1000)
        return outcome

    tool = Tool("echo", "Echo its arguments.", {"type": "object", "properties": {}}, instant)

    async def toolbox(*_: Any, **__: Any) -> Toolbox:
        return Toolbox({"echo": tool})

    service.tools.toolbox = toolbox  # type: ignore[method-assign]  # one instant tool, nothing else
    jobs = ReplyJobs(service, MemoryReplyLog())
    overheads: list[float] = []
    for _ in range(rounds):
        timed.began.clear(), timed.ended.clear(), tool_ms.clear()
        fake.enqueue_stream(Behaviour(text="", tool_calls=[("echo", '{"n": 1}')]), Behaviour(text="Done."))
        turn = await service.start_turn(OWNER, None, "Echo something")
        await jobs.start(turn)
        async for _ in jobs.follow(turn.reply_id, until_finished=True):
            pass
        overheads.append((timed.began[1] - timed.ended[0]) * 1000 - tool_ms[0])
    await jobs.aclose()
    await service.providers.aclose()
    return overheads


#: When the websocket frame that carries the call arrives in the page (before React renders it).
FRAME_CLOCK = """(() => { const Native = window.WebSocket; window.__frameAt = null;
    window.WebSocket = class extends Native { constructor(...args) { super(...args);
        this.addEventListener('message', (e) => { if (window.__frameAt === null && typeof e.data === 'string'
            && e.data.includes('facts__write_note') && e.data.includes('awaiting-approval'))
            window.__frameAt = Date.now(); }); } }; })()"""


#: A case of `shown_in_tab`: how long the model thinks before it calls (s), and whether the chat is open already.
ShownCase = tuple[float, bool]


def shown_in_tab(
    workdir: Path, fake: FakeLLMServer, mcp: FakeMcpServer, count: int, cases: Sequence[ShownCase]
) -> dict[ShownCase, list[tuple[float, float, float]]]:
    """Per call, milliseconds from the last argument chunk written to the call on screen, and of those, until
    the backend began to store it (its row's `started_at`) and until its websocket frame reached the page: the
    rest is the page's own rendering. `count` calls for each case: in a new chat, a call at once meets the
    backend still storing the message, showing it and sending the tab to the chat's address."""
    from playwright.sync_api import sync_playwright

    from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
    from tests.e2e.live_app import live_app

    database_url = f"sqlite:///{workdir / 'shown.db'}"
    migrate(database_url)
    env = {
        "GROQ_API_KEY": TEST_API_KEY,
        "GROQ_BASE_URL": fake.base_url,
        "CHATBOT_MODEL": "fake-large",
        "CHATBOT_LOCAL_MODEL": "off",
        "CHATBOT_TOOL_MODELS": "fake-large",
        "CHATBOT_MCP_SERVERS": json.dumps([{"name": "facts", "url": mcp.url, "default_on": True}]),
        "CHATBOT_MCP_ALLOW_PRIVATE": "true",
        # One address sends every message, each from a new tab: the limits have tests of their own.
        **LIMITS_RAISED,
        "CHATBOT_TOOL_CALLS_PER_MINUTE": "0",
    }
    delays: dict[ShownCase, list[tuple[float, float, float]]] = {case: [] for case in cases}
    engine = make_engine(database_url)
    with live_app(workdir, database_url, **env) as app, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for (think, open_chat), n in itertools.product(cases, range(count + 1)):  # each first: tools are listed
            fake.reset()
            # A new tab each time: a reloaded one would first show its last conversation again.
            context = browser.new_context()
            context.add_init_script(FRAME_CLOCK)
            page = context.new_page()
            page.goto(app.frontend_url)
            # Filled by the page's on_load: a message sent before that can be lost to the page's own start.
            page.wait_for_selector("#model-select option", state="attached")
            if open_chat:
                page.fill("#chat-input", "hello")
                page.keyboard.press("Enter")
                page.wait_for_selector("[data-role=assistant][data-status=complete]")
                fake.reset()
            fake.default = Behaviour(first_token_delay_s=think)
            page.evaluate(
                """() => { window.__shownAt = null; new MutationObserver((_, observer) => {
                    if (document.querySelector('[data-testid="tool-call"][data-status="awaiting-approval"]')) {
                        window.__shownAt = Date.now(); observer.disconnect(); }
                }).observe(document.body, {childList: true, subtree: true, attributes: true}); }"""
            )
            page.fill("#chat-input", 'call facts__write_note {"text": "bench"}')
            page.keyboard.press("Enter")
            page.wait_for_function("window.__shownAt !== null")
            shown_at = page.evaluate("window.__shownAt") / 1000
            frame_at = page.evaluate("window.__frameAt") / 1000
            [sent_at] = fake.calls_sent_at.values()
            with engine.connect() as connection:
                started = connection.execute(text("SELECT started_at FROM tool_call ORDER BY id DESC")).scalar()
            stored_at = datetime.fromisoformat(str(started)).replace(tzinfo=UTC).timestamp()
            if n:
                delays[(think, open_chat)].append(
                    ((shown_at - sent_at) * 1000, (stored_at - sent_at) * 1000, (frame_at - sent_at) * 1000)
                )
            page.click('[data-testid="tool-deny"]')
            page.wait_for_selector("[data-role=assistant][data-status=complete] [data-testid=tool-call]")
            context.close()
        browser.close()
    engine.dispose()
    return delays


async def waiting_replies(settings: Settings, count: int, tool_s: float) -> dict[str, float]:
    """While `count` replies wait on a `tool_s`-second tool: their log entries, CPU, and the loop's lag."""
    service, _ = service_for(settings)
    log = MemoryReplyLog()
    jobs = ReplyJobs(service, log)
    turns = [await service.start_turn(OWNER, None, f'call facts__slow {{"seconds": {tool_s}}}') for _ in range(count)]
    for turn in turns:
        await jobs.start(turn)

    async def running(turn: Any) -> None:
        async for _, events in jobs.follow(turn.reply_id):
            if any(isinstance(e, ToolUpdate) and e.status == "running" for e in events):
                return

    await asyncio.gather(*(running(t) for t in turns))
    entries_before = {t.reply_id: len(log._entries[t.reply_id]) for t in turns}
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    lags: list[float] = []
    window = tool_s * 0.6  # inside the wait, whatever the start-up of the later calls took
    deadline = time.perf_counter() + window
    while time.perf_counter() < deadline:
        asked = time.perf_counter()
        await asyncio.sleep(0.01)
        lags.append((time.perf_counter() - asked - 0.01) * 1000)
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    new_entries = [log._entries[t.reply_id][entries_before[t.reply_id] :] for t in turns]
    frames = sum(1 for entries in new_entries for e in entries if isinstance(e, Frame))
    for turn in turns:
        async for _ in jobs.follow(turn.reply_id, until_finished=True):
            pass
    await jobs.aclose()
    await service.providers.aclose()
    cpu_s = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return {
        "frames": frames,
        "cpu_share": cpu_s / window,
        "lag_p50": statistics.median(lags),
        "lag_max": max(lags),
        "window_s": window,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--shown", type=int, default=20)
    parser.add_argument(
        "--think-ms",
        default="0,300",
        help="in a new chat, when the model calls after the send: at once, and after a reasoning model's thinking",
    )
    parser.add_argument("--open-chat-think-ms", default="0", help="the same, in a chat already open")
    parser.add_argument("--waiting", type=int, default=20)
    parser.add_argument("--tool-s", type=float, default=10.0)
    args = parser.parse_args()
    fake = FakeLLMServer().start()
    mcp = FakeMcpServer().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            database_url = f"sqlite:///{workdir / 'bench.db'}"
            migrate(database_url)
            settings = Settings(
                groq_api_key=TEST_API_KEY,
                groq_base_url=fake.base_url,
                database_url=database_url,
                local_model="off",
                model="fake-large",
                tool_models=("fake-large",),
                mcp_servers=json.dumps([{"name": "facts", "url": mcp.url, "default_on": True}]),
                mcp_allow_private=True,
                max_active_replies=64,
                tool_calls_per_minute=0,  # 200 rounds for one user: the limits have tests of their own
                rate_limit_per_minute=100_000,
            )
            overheads = asyncio.run(overhead_per_round(settings, fake, args.rounds))
            overheads.sort()
            print(f"tool loop overhead per round ({args.rounds} rounds, SQLite, in-memory log):")
            print(
                f"  median {statistics.median(overheads):.2f} ms, p95 {overheads[int(len(overheads) * 0.95)]:.2f} ms,"
                f" max {overheads[-1]:.2f} ms   (goal: <= 10 ms)"
            )
            fake.reset()
            waited = asyncio.run(waiting_replies(settings, args.waiting, args.tool_s))
            print(f"{args.waiting} replies waiting on a {args.tool_s:g}-second tool, over {waited['window_s']:.1f} s:")
            print(
                f"  frames written {waited['frames']:.0f}, backend CPU {waited['cpu_share']:.1%} of one core,"
                f" event loop lag median {waited['lag_p50']:.2f} ms, max {waited['lag_max']:.2f} ms"
            )
            fake.reset()
            cases = [(float(ms) / 1000, False) for ms in args.think_ms.split(",") if ms]
            cases += [(float(ms) / 1000, True) for ms in args.open_chat_think_ms.split(",") if ms]
            for (think, open_chat), timed in shown_in_tab(workdir, fake, mcp, args.shown, cases).items():
                delays, stored = sorted(t for t, _, _ in timed), sorted(s for _, s, _ in timed)
                framed = sorted(f for _, _, f in timed)
                print(
                    f"a tool call shown in the tab after its last argument chunk, the model calling"
                    f" {think * 1000:.0f} ms after the send, in {'a chat already open' if open_chat else 'a new chat'}"
                    f" ({args.shown} calls, Chromium):"
                )
                print(
                    f"  median {statistics.median(delays):.0f} ms, p95 {delays[int(len(delays) * 0.95)]:.0f} ms,"
                    f" max {delays[-1]:.0f} ms   (goal: <= 100 ms)"
                )
                print(
                    f"  until the backend stored it: median {statistics.median(stored):.0f} ms,"
                    f" max {stored[-1]:.0f} ms; until its websocket frame reached the page:"
                    f" median {statistics.median(framed):.0f} ms, max {framed[-1]:.0f} ms"
                )
                print("  each (shown/stored/frame): " + ", ".join(f"{t:.0f}/{s:.0f}/{f:.0f}" for t, s, f in timed))
    finally:
        mcp.stop()
        fake.stop()


if __name__ == "__main__":
    main()
