"""CPU per streamed chunk in the provider alone: the SDK's chunk objects against raw SSE bytes parsed with orjson.

One process: the fake Groq/OpenAI server runs in its own thread, the provider in the main thread's
event loop. Each run streams --chunks content chunks as fast as the fake sends them (unpaced), and
the CPU time of the main thread (time.thread_time) is divided by the chunks received. The fake's
thread is measured apart (its own CPU clock), so its cost does not count against the parser.

    .venv/bin/python bench/provider_parse_bench.py [--chunks 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatbot_app.providers.base import ChatMessage, GenerationOptions, TextDelta
from chatbot_app.providers.groq import GroqProvider
from chatbot_app.providers.openai_compat import OpenAICompatibleProvider
from chatbot_app.providers.openai_style import OpenAIStyleProvider, StreamParser
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer

MESSAGES = [ChatMessage("user", "Stream please.")]
API_KEY = "gsk_bench_" + "x" * 40


def thread_cpu_s(thread_ident: int) -> float:
    """CPU seconds used so far by one thread of this process."""
    return time.clock_gettime(time.pthread_getcpuclockid(thread_ident))


def make(kind: str, fake: FakeLLMServer, parser: StreamParser) -> OpenAIStyleProvider:
    if kind == "groq":
        return GroqProvider(API_KEY, fake.base_url, timeout_s=60, parser=parser)
    return OpenAICompatibleProvider(API_KEY, fake.openai_base_url, timeout_s=60, parser=parser)


async def one_run(provider: OpenAIStyleProvider, chunks: int, fake_thread: int) -> tuple[float, float, float]:
    """(client CPU s, fake CPU s, wall s) for one stream of `chunks` chunks."""
    options = GenerationOptions(model="fake-large", max_tokens=chunks)
    cpu0, fake0, wall0 = time.thread_time(), thread_cpu_s(fake_thread), time.monotonic()
    received = 0
    async for event in provider.stream(MESSAGES, options):
        received += isinstance(event, TextDelta)
    cpu, fake_cpu, wall = time.thread_time() - cpu0, thread_cpu_s(fake_thread) - fake0, time.monotonic() - wall0
    assert received == chunks, f"expected {chunks} chunks, got {received}"
    return cpu, fake_cpu, wall


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the best (least CPU) is shown")
    args = parser.parse_args()
    fake = FakeLLMServer(default=Behaviour(text="start", tokens=args.chunks)).start()
    assert fake._thread is not None and fake._thread.ident is not None
    print(
        f"{args.chunks:,} chunks per stream, unpaced, best of {args.repeat}; {os.cpu_count()} CPUs,"
        f" load average {os.getloadavg()[0]:.1f} before the run\n"
    )
    print(f"{'provider':9} {'parser':6} {'µs CPU/chunk':>12} {'fake µs/chunk':>13} {'chunks/s':>9} {'cpu/1k tok':>10}")
    try:
        results: dict[tuple[str, str], float] = {}
        for kind in ("groq", "openai"):
            for name in ("sdk", "raw"):
                provider = make(kind, fake, name)  # type: ignore[arg-type]
                await one_run(provider, 200, fake._thread.ident)  # warm up: imports, connection pool
                runs = [await one_run(provider, args.chunks, fake._thread.ident) for _ in range(args.repeat)]
                cpu, fake_cpu, wall = min(runs)
                results[kind, name] = cpu / args.chunks
                print(
                    f"{kind:9} {name:6} {cpu / args.chunks * 1e6:12.1f} {fake_cpu / args.chunks * 1e6:13.1f}"
                    f" {args.chunks / wall:9,.0f} {cpu / args.chunks * 1000 * 1000:8.1f} ms"
                )
        print()
        for kind in ("groq", "openai"):
            saved = results[kind, "sdk"] - results[kind, "raw"]
            print(
                f"{kind}: raw+orjson costs {results[kind, 'raw'] / results[kind, 'sdk']:.0%} of the SDK objects;"
                f" at 30,000 tok/s (30 streams x 1,000) that saves {saved * 30_000:.2f} of a core"
            )
        print(f"load average after the run: {os.getloadavg()[0]:.1f}")
    finally:
        fake.stop()


if __name__ == "__main__":
    asyncio.run(main())
