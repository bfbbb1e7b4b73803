"""Replies as jobs, measured over real websockets: a tab that joins mid-reply, Stop in every phase.

A production backend (`reflex run --backend-only --env prod`) and the fake Groq server run on
loopback; tabs are real Socket.IO clients (tests/e2e/reflex_client.py), as the browser speaks.

1. Join: tab A asks for a 4,000-token reply at 1,000 tokens/s. Mid-reply, tab B (the same identity,
   as a second tab or a reload) opens the conversation's URL. Printed: the time from B's connect to
   its first frame that holds all the text so far, and both tabs' updates per second after that.
2. Stop: in each phase (waiting for a slow first token, a retry's wait, a batch request, mid-stream)
   a tab presses Stop. Printed: the time from the click to `stopped` in the tab, and to the fake
   seeing the upstream connection closed.
3. Tabs left showing a reply as streaming once everything ended: must be 0.

    .venv/bin/python bench/reply_jobs_bench.py [--redis]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from app_names import IDENTITY, MAX_TOKENS, SEND_MESSAGE, STOP, STREAM_PARTS, STREAMING, changed_messages
from bench_backend import bench_environment

from tests.conftest import migrate
from tests.e2e.live_app import Backend, free_port
from tests.e2e.reflex_client import ReflexClient
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer

REFLEX_VERSION = importlib.metadata.version("reflex")
TOKENS, RATE = 4000, 1000.0


@dataclass
class Tab:
    """One tab's view: the streamed parts, whether a reply streams, the last message, and when each came."""

    client: ReflexClient
    parts: dict[tuple[str, str], str] = field(default_factory=dict)
    streaming: bool = False
    last_status: str = ""
    max_tokens: int | None = None  # what the tab's next message asks for, once its settings loaded
    frame_times: list[float] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def text(self) -> str:
        return "".join(self.parts.get(key, "") for key in STREAM_PARTS)

    def on_update(self, at: float, _size: int, update: dict[str, Any]) -> None:
        delta = update.get("delta") or {}
        parts = {(s, v): delta[s][v] for s, v in STREAM_PARTS if v in delta.get(s, ())}
        if parts:
            self.parts.update(parts)
            if any(parts.values()):
                self.frame_times.append(at)
        if (flag := (delta.get(STREAMING[0]) or {}).get(STREAMING[1])) is not None:
            self.streaming = bool(flag)
        messages = changed_messages(delta)
        if messages:
            self.last_status = str(messages[-1].get("status", ""))
        if (max_tokens := (delta.get(MAX_TOKENS[0]) or {}).get(MAX_TOKENS[1])) is not None:
            self.max_tokens = int(max_tokens)
        self.changed.set()

    async def until(self, condition, timeout_s: float = 60) -> float:  # type: ignore[no-untyped-def]
        """Wait until `condition(self)` holds; the monotonic time it first did."""
        async with asyncio.timeout(timeout_s):
            while not condition(self):
                self.changed.clear()
                await self.changed.wait()
        return time.monotonic()


#: Every tab the benchmark opened, to count those left showing a reply as streaming at the end.
OPENED: list[Tab] = []


async def open_tab(backend_url: str, path: str = "/", storage: dict[str, str] | None = None) -> Tab:
    tab = Tab(ReflexClient(backend_url, REFLEX_VERSION, synced_storage=frozenset({IDENTITY}), pathname=path))
    tab.client.on_update = tab.on_update
    if storage:
        tab.client.local_storage.update(storage)
    await tab.client.connect()
    await asyncio.wait_for(tab.client.hydrated.wait(), 60)
    OPENED.append(tab)
    return tab


def rate(times: list[float], start: float, end: float) -> float:
    inside = [t for t in times if start <= t <= end]
    return len(inside) / (end - start) if end > start else 0.0


async def join(backend_url: str, fake: FakeLLMServer, runs: int) -> list[tuple[float, float, float]]:
    """(ms from B's connect to all the text so far, A's updates/s, B's updates/s) per run."""
    results = []
    for _ in range(runs):
        fake.enqueue_stream(Behaviour(text="", tokens=TOKENS, tokens_per_s=RATE))
        asker = await open_tab(backend_url)
        await asker.until(lambda t: t.max_tokens == TOKENS)  # else it asks for the state's default, 1,024
        await asker.client.emit(SEND_MESSAGE, {"form_data": {"message": "A long answer, please."}})
        await asker.until(lambda t: len(t.text.split()) >= TOKENS // 3)
        path = asker.client.pathname  # the redirect to /c/<id> moved it there
        words_at_join = len(asker.text.split())
        connected = time.monotonic()
        joiner = await open_tab(backend_url, path, dict(asker.client.local_storage))
        first = await joiner.until(lambda t, n=words_at_join: len(t.text.split()) >= n)
        await asker.until(lambda t: not t.streaming and t.last_status == "complete")
        done = await joiner.until(lambda t: not t.streaming and t.last_status == "complete")
        results.append(
            ((first - connected) * 1000, rate(asker.frame_times, first, done), rate(joiner.frame_times, first, done))
        )
        await asyncio.gather(asker.client.close(), joiner.client.close())
    return results


@dataclass
class Phase:
    name: str
    behaviour: Behaviour
    batch: bool = False
    #: When the tab presses Stop: once the upstream request is in flight, or once text shows.
    after_text: bool = False


PHASES = [
    Phase("slow first token", Behaviour(text="never", first_token_delay_s=30)),
    Phase("retry wait", Behaviour(status=429, retry_after="15")),
    Phase("batch request", Behaviour(text="never", first_token_delay_s=30), batch=True),
    Phase("mid-stream", Behaviour(text="", tokens=TOKENS, tokens_per_s=RATE), after_text=True),
]


def abort_waiter(fake: FakeLLMServer) -> tuple[threading.Thread, list[float]]:
    seen: list[float] = []

    def wait() -> None:
        if fake.abort_seen.wait(30):
            seen.append(time.monotonic())

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    return thread, seen


async def stop(backend_url: str, fake: FakeLLMServer, phase: Phase, settings_event: str) -> tuple[float, float | None]:
    """(ms from Stop to `stopped` in the tab, ms from Stop to the upstream closed, or None if not seen)."""
    fake.reset()
    (fake.enqueue_batch if phase.batch else fake.enqueue_stream)(phase.behaviour)
    tab = await open_tab(backend_url)
    if phase.batch:
        await tab.client.emit(
            settings_event, {"form_data": {"temperature": 0.7, "top_p": 1, "max_tokens": 1024, "batch": "on"}}
        )
    await tab.client.emit(SEND_MESSAGE, {"form_data": {"message": f"Stop me: {phase.name}"}})
    if phase.after_text:
        await tab.until(lambda t: bool(t.text))
    else:
        await asyncio.to_thread(fake.wait_for_chat_requests, 1, 30)
    fake.abort_seen.clear()
    waiter, aborted = abort_waiter(fake)
    pressed = time.monotonic()
    await tab.client.emit(STOP)
    shown = await tab.until(lambda t: not t.streaming and t.last_status == "stopped")
    await asyncio.to_thread(waiter.join, 5)
    await tab.client.close()
    return (shown - pressed) * 1000, (aborted[0] - pressed) * 1000 if aborted else None


async def main(args: argparse.Namespace) -> None:
    fake = FakeLLMServer().start()
    workdir = Path(tempfile.mkdtemp(prefix="reply-jobs-bench-"))
    database_url = f"sqlite:///{workdir / 'bench.db'}"
    migrate(database_url)
    env = bench_environment(
        database_url,
        fake.base_url,
        CHATBOT_MAX_TOKENS=str(TOKENS),
        CHATBOT_RATE_LIMIT_PER_MINUTE="1000",
        CHATBOT_ADDRESS_RATE_LIMIT_PER_MINUTE="1000",
        CHATBOT_NEW_IDENTITIES_PER_HOUR="1000",
        **({"REFLEX_REDIS_URL": args.redis_url} if args.redis else {}),
    )
    backend = Backend(free_port(), env, workdir / "backend.log")
    backend.start()
    from chatbot_app.state.settings import SettingsState

    settings_event = f"{SettingsState.get_full_name()}.apply_settings"
    try:
        joins = await join(backend.url, fake, args.runs)
        print(f"join mid-reply ({TOKENS:,} tokens at {RATE:,.0f} tok/s, {len(joins)} runs; redis={args.redis}):")
        firsts = [j[0] for j in joins]
        median, worst = statistics.median(firsts), max(firsts)
        print(f"  first frame with all the text so far: median {median:.0f} ms, max {worst:.0f} ms")
        for number, (_, asker_rate, joiner_rate) in enumerate(joins, 1):
            share = joiner_rate / asker_rate if asker_rate else 0.0
            print(f"  run {number}: updates/s asker {asker_rate:.1f}, joiner {joiner_rate:.1f} ({share:.0%})")
        print("stop (ms from the click to `stopped` in the tab / to the upstream closed):")
        for phase in PHASES:
            shown, closed = await stop(backend.url, fake, phase, settings_event)
            closed_text = f"{closed:.0f}" if closed is not None else "n/a (no upstream stream to close)"
            print(f"  {phase.name:<18} {shown:6.0f} / {closed_text}")
        left = sum(tab.streaming for tab in OPENED)
        print(f"tabs left showing a reply as streaming: {left} of {len(OPENED)}")
    finally:
        backend.stop()
        fake.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--redis", action="store_true", help="run the backend with REFLEX_REDIS_URL (several processes)"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    asyncio.run(main(parser.parse_args()))
