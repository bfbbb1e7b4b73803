"""Does a reasoning model's thinking slow its answer? Answer frames with and without reasoning, over real websockets.

A production backend (`reflex run --backend-only --env prod`) runs against the fake Groq server. One
websocket client (tests/e2e/reflex_client.py, in its own process) sends a message and records every
update until the reply ends, in two scenarios at the same upstream rate:
  answer only      a --answer-token reply;
  with reasoning   --reasoning tokens of Groq-format `delta.reasoning` first, then the same reply.

The columns:
  answer fps       frames carrying answer text per second, first to last such frame;
  answer frames    how many there were; gap ms = the largest gap between two of them;
  answer KB        websocket bytes of those frames (payload and frame header);
  think frames/KB  frames (and bytes) while the model reasoned: only a short tail of the reasoning;
  end KB           the frame that ends the reply (the whole reasoning arrives here, once);
  total KB         every byte from sending the message to the end.
The reasoning must leave the answer's fps and KB as they are: the page never re-sends it per frame.

    .venv/bin/python bench/reasoning_frames_bench.py [--reasoning 4000] [--answer-tokens 1000] [--rate 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import itertools
import logging
import multiprocessing
import signal
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from app_names import IDENTITY, REASONING_TAIL, SEND_MESSAGE, STREAM_PARTS, STREAMING, changed_messages
from bench_backend import bench_environment

from tests.conftest import migrate
from tests.e2e.live_app import Backend, free_port
from tests.e2e.reflex_client import ReflexClient
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer

REFLEX_VERSION = importlib.metadata.version("reflex")


@dataclass
class ReplyRecord:
    """What one client saw of one reply: (monotonic time, wire bytes) of each kind of frame."""

    answer: list[tuple[float, int]] = field(default_factory=list)
    thinking: list[tuple[float, int]] = field(default_factory=list)
    end_bytes: int = 0
    total_bytes: int = 0
    reasoning_chars_at_end: int = 0
    status: str = ""


async def _one_reply(backend_url: str, message: str, timeout_s: float) -> ReplyRecord:
    record, done, sent = ReplyRecord(), asyncio.Event(), [False]
    streaming_seen = [False]

    def on_update(at: float, size: int, update: dict[str, Any]) -> None:
        if not sent[0] or done.is_set():
            return
        record.total_bytes += size
        delta = update.get("delta") or {}
        if any(delta.get(state, {}).get(var) for state, var in STREAM_PARTS):
            record.answer.append((at, size))
        elif (delta.get(REASONING_TAIL[0]) or {}).get(REASONING_TAIL[1]):
            record.thinking.append((at, size))
        streaming = (delta.get(STREAMING[0]) or {}).get(STREAMING[1])
        if streaming is True:
            streaming_seen[0] = True
        elif streaming is False and streaming_seen[0]:
            messages = changed_messages(delta)
            if messages:
                record.status = str(messages[-1].get("status", ""))
                record.reasoning_chars_at_end = len(messages[-1].get("reasoning") or "")
            record.end_bytes = size
            done.set()

    client = ReflexClient(backend_url, REFLEX_VERSION, synced_storage=frozenset({IDENTITY}), on_update=on_update)
    await client.connect()
    try:
        await asyncio.wait_for(client.hydrated.wait(), 60)
        await asyncio.sleep(0.5)  # the page's on_load events (sidebar, settings) settle first
        sent[0] = True
        await client.emit(SEND_MESSAGE, {"form_data": {"message": message}})
        await asyncio.wait_for(done.wait(), timeout_s)
    finally:
        await client.close()
    return record


def run_reply(backend_url: str, message: str, timeout_s: float) -> ReplyRecord:
    """In the client process (the fake upstream's thread stays out of its GIL)."""
    return asyncio.run(_one_reply(backend_url, message, timeout_s))


def _fps(frames: list[tuple[float, int]]) -> float:
    if len(frames) < 2:
        return 0.0
    return (len(frames) - 1) / (frames[-1][0] - frames[0][0])


def _max_gap_ms(frames: list[tuple[float, int]]) -> float:
    return max((b[0] - a[0] for a, b in itertools.pairwise(frames)), default=0.0) * 1000


def _kb(frames: list[tuple[float, int]]) -> float:
    return sum(size for _, size in frames) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reasoning", type=int, default=4000, help="reasoning tokens before the answer")
    parser.add_argument("--answer-tokens", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=1000.0, help="upstream tokens/s (reasoning and answer)")
    parser.add_argument("--runs", type=int, default=2, help="replies per scenario (the table shows the median)")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()

    reasoning = " ".join(f"step{i % 97}" for i in range(args.reasoning))
    scenarios = [
        ("answer only", Behaviour(text="", tokens=args.answer_tokens, tokens_per_s=args.rate)),
        (
            "with reasoning",
            Behaviour(text="", tokens=args.answer_tokens, tokens_per_s=args.rate, reasoning=reasoning),
        ),
    ]
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    fake = FakeLLMServer().start()
    spawn = multiprocessing.get_context("spawn")
    results: list[tuple[str, ReplyRecord]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp, ProcessPoolExecutor(1, mp_context=spawn) as pool:
            database_url = f"sqlite:///{Path(tmp) / 'bench.db'}"
            migrate(database_url)
            env = bench_environment(
                database_url, fake.base_url, CHATBOT_MAX_TOKENS=str(args.reasoning + args.answer_tokens + 100)
            )
            backend = Backend(free_port(), env, Path(tmp) / "backend.log")
            backend.start()
            try:
                fake.enqueue_stream(Behaviour(text="Warm up."))
                pool.submit(run_reply, backend.url, "warm up", args.timeout).result()
                for run in range(args.runs):
                    for name, behaviour in scenarios:
                        fake.enqueue_stream(behaviour)
                        record = pool.submit(run_reply, backend.url, f"{name} {run}", args.timeout).result()
                        results.append((name, record))
            finally:
                backend.stop(signal.SIGKILL)
    finally:
        fake.stop()

    print(
        f"{args.answer_tokens}-token answer, after {args.reasoning} reasoning tokens or none, at {args.rate:g} tok/s"
        f" upstream; one client; median of {args.runs} runs\n"
    )
    header = (
        f"{'scenario':<16}{'answer fps':>11}{'frames':>8}{'gap ms':>8}{'answer KB':>10}"
        f"{'think frames':>13}{'think KB':>9}{'end KB':>8}{'total KB':>9}  status"
    )
    print(header)
    print("-" * len(header))
    for name, _ in scenarios:
        records = sorted((r for n, r in results if n == name), key=lambda r: _fps(r.answer))
        r = records[len(records) // 2]
        print(
            f"{name:<16}{_fps(r.answer):>11.1f}{len(r.answer):>8}{_max_gap_ms(r.answer):>8.0f}{_kb(r.answer):>10.1f}"
            f"{len(r.thinking):>13}{_kb(r.thinking):>9.1f}{r.end_bytes / 1024:>8.1f}{r.total_bytes / 1024:>9.1f}"
            f"  {r.status} (reasoning at end: {r.reasoning_chars_at_end:,} chars)"
        )


if __name__ == "__main__":
    started = time.monotonic()
    main()
    print(f"\ntotal {time.monotonic() - started:.0f} s")
