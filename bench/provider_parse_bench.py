"""CPU per streamed chunk in the provider alone: the SDK's chunk objects against raw SSE bytes parsed with
orjson, each over the SDK's two HTTP clients (its default httpx one, and its aiohttp one).

One process: the fake Groq/OpenAI server runs in its own thread, the provider in the main thread's
event loop (uvloop, as the backend runs). The CPU time of the main thread (time.thread_time) is
divided by the chunks received; the fake's thread is measured apart (its own CPU clock), so its cost
does not count against the reader. Two workloads:

  unpaced  one stream of --chunks content chunks, as fast as the fake sends them: many chunks arrive
           in each read, so this is mostly the cost of parsing;
  paced    --streams concurrent streams of --tokens chunks at --rate chunks/s each, as a worker sees
           them (the fake writes what is due every 5 ms, so a read holds a few chunks): this adds the
           cost of each read, which is where the two HTTP clients differ.

    .venv/bin/python bench/provider_parse_bench.py [--chunks 20000] [--streams 40 --rate 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatbot_app.providers.base import ChatMessage, GenerationOptions, TextDelta
from chatbot_app.providers.groq import GroqProvider
from chatbot_app.providers.openai_compat import OpenAICompatibleProvider
from chatbot_app.providers.openai_style import HttpTransport, OpenAIStyleProvider, StreamParser
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer

MESSAGES = [ChatMessage("user", "Stream please.")]
API_KEY = "gsk_bench_" + "x" * 40
CASES: list[tuple[str, StreamParser, HttpTransport]] = [
    (kind, parser, transport)
    for kind in ("groq", "openai")
    for parser in ("sdk", "raw")
    for transport in ("httpx", "aiohttp")
]


def thread_cpu_s(thread_ident: int) -> float:
    """CPU seconds used so far by one thread of this process."""
    return time.clock_gettime(time.pthread_getcpuclockid(thread_ident))


def make(kind: str, fake: FakeLLMServer, parser: StreamParser, transport: HttpTransport) -> OpenAIStyleProvider:
    if kind == "groq":
        return GroqProvider(API_KEY, fake.base_url, timeout_s=60, parser=parser, transport=transport)
    return OpenAICompatibleProvider(API_KEY, fake.openai_base_url, timeout_s=60, parser=parser, transport=transport)


@dataclass(frozen=True)
class Run:
    cpu_s: float  # the reader's (main thread's) CPU
    fake_cpu_s: float
    wall_s: float
    chunks: int


async def streams(provider: OpenAIStyleProvider, count: int, chunks: int, fake_thread: int) -> Run:
    """`count` concurrent streams of `chunks` chunks each, through one provider."""
    options = GenerationOptions(model="fake-large", max_tokens=chunks)

    async def one() -> int:
        received = 0
        async for event in provider.stream(MESSAGES, options):
            received += isinstance(event, TextDelta)
        assert received == chunks, f"expected {chunks} chunks, got {received}"
        return received

    cpu0, fake0, wall0 = time.thread_time(), thread_cpu_s(fake_thread), time.monotonic()
    received = sum(await asyncio.gather(*(one() for _ in range(count))))
    return Run(time.thread_time() - cpu0, thread_cpu_s(fake_thread) - fake0, time.monotonic() - wall0, received)


async def measure(kind: str, parser: StreamParser, transport: HttpTransport, args, fake: FakeLLMServer) -> dict:
    """The best of --repeat runs of each workload, for one case."""
    assert fake._thread is not None and fake._thread.ident is not None
    thread = fake._thread.ident
    async with contextlib.aclosing(make(kind, fake, parser, transport)) as provider:
        fake.default = Behaviour(text="start", tokens=200)
        await streams(provider, 1, 200, thread)  # warm up: imports, connection pool
        fake.default = Behaviour(text="start", tokens=args.chunks)
        unpaced = min(
            [await streams(provider, 1, args.chunks, thread) for _ in range(args.repeat)], key=lambda r: r.cpu_s
        )
        fake.default = Behaviour(text="start", tokens=args.tokens, tokens_per_s=args.rate)
        paced = min(
            [await streams(provider, args.streams, args.tokens, thread) for _ in range(args.repeat)],
            key=lambda r: r.cpu_s,
        )
    return {"unpaced": unpaced, "paced": paced}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=20_000, help="chunks in the unpaced stream")
    parser.add_argument("--streams", type=int, default=40, help="concurrent streams in the paced workload")
    parser.add_argument("--rate", type=float, default=1000, help="chunks/s per paced stream")
    parser.add_argument("--tokens", type=int, default=4000, help="chunks per paced stream")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case and workload; the least CPU is shown")
    args = parser.parse_args()
    fake = FakeLLMServer().start()
    print(
        f"unpaced: one stream of {args.chunks:,} chunks; paced: {args.streams} streams x {args.tokens:,} chunks at"
        f" {args.rate:,.0f}/s; best of {args.repeat}; {os.cpu_count()} CPUs, load average"
        f" {os.getloadavg()[0]:.1f} before the run\n"
    )
    header = f"{'provider':8} {'parser':6} {'transport':9} {'unpaced µs/chunk':>16} {'paced µs/chunk':>14}"
    print(header + f" {'paced % core':>12} {'fake µs/chunk':>13}")
    results: dict[tuple[str, str, str], dict] = {}
    try:
        for kind, parser_name, transport in CASES:
            runs = uvloop.run(measure(kind, parser_name, transport, args, fake))
            results[kind, parser_name, transport] = runs
            unpaced, paced = runs["unpaced"], runs["paced"]
            print(
                f"{kind:8} {parser_name:6} {transport:9} {unpaced.cpu_s / unpaced.chunks * 1e6:16.1f}"
                f" {paced.cpu_s / paced.chunks * 1e6:14.1f} {100 * paced.cpu_s / paced.wall_s:11.0f}%"
                f" {paced.fake_cpu_s / paced.chunks * 1e6:13.1f}",
                flush=True,
            )
    finally:
        fake.stop()
    print()
    for kind in ("groq", "openai"):
        base = results[kind, "sdk", "httpx"]["paced"]
        shipped = results[kind, "raw", "aiohttp"]["paced"]
        print(
            f"{kind}, paced: raw + aiohttp costs {shipped.cpu_s / shipped.chunks / (base.cpu_s / base.chunks):.0%}"
            f" of the SDK objects over httpx (the SDK's defaults)"
        )
    print(f"load average after the run: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
