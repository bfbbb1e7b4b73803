"""Which bundled offline model answers best on this machine: score, load time, first token, tokens/s.

30 short questions with checkable answers (facts, arithmetic, following a format), asked through the
real LocalProvider (llama.cpp) with the app's default system prompt, greedy decoding. Prints one
row per model and, with --verbose, every answer.

    .venv/bin/python bench/offline_models.py [--models gemma3,smollm2,/path/to/model.gguf] [--verbose]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatbot_app.config import DEFAULT_SYSTEM_PROMPT
from chatbot_app.providers.base import ChatMessage, GenerationOptions, TextDelta
from chatbot_app.providers.local import BUNDLED_MODELS, LocalProvider, bundled_model_path

Check = Callable[[str], bool]


def has(*words: str) -> Check:
    """Every word appears (case-insensitive, as a whole word)."""
    return lambda answer: all(re.search(rf"(?<!\w){re.escape(w)}(?!\w)", answer, re.IGNORECASE) for w in words)


def number(value: int) -> Check:
    """The answer's last number is `value` ("9 * 9 = 81" counts; commas in numbers allowed)."""

    def check(answer: str) -> bool:
        found = re.findall(r"-?\d[\d,]*(?:\.\d+)?", answer)
        return bool(found) and float(found[-1].replace(",", "").rstrip(",")) == value

    return check


def bullet_count(n: int) -> Check:
    return lambda answer: len(re.findall(r"^\s*(?:[-*+]|\d+[.)])\s+\S", answer, re.MULTILINE)) == n


def is_json_with(key: str) -> Check:
    def check(answer: str) -> bool:
        match = re.search(r"\{.*\}", answer, re.DOTALL)
        try:
            return match is not None and key in json.loads(match.group())
        except ValueError:
            return False

    return check


def word_count_at_most(n: int) -> Check:
    return lambda answer: 0 < len(answer.split()) <= n


QUESTIONS: list[tuple[str, str, Check]] = [
    # facts
    ("fact", "What is the capital of France? Answer with the city name only.", has("Paris")),
    ("fact", "What is the capital of Japan? Answer with the city name only.", has("Tokyo")),
    ("fact", "What is the capital of Italy? Answer with the city name only.", has("Rome")),
    ("fact", "Which planet is known as the Red Planet? Answer in one word.", has("Mars")),
    ("fact", "What is the largest ocean on Earth? Answer in a few words.", has("Pacific")),
    (
        "fact",
        "What gas do plants absorb from the air for photosynthesis?",
        lambda a: "carbon dioxide" in a.lower() or "CO2" in a or "CO₂" in a,
    ),
    ("fact", "Who wrote the play Romeo and Juliet?", has("Shakespeare")),
    ("fact", "What is the chemical symbol for gold?", has("Au")),
    ("fact", "How many days are in a week? Answer with a number.", number(7)),
    ("fact", "What is the freezing point of water in degrees Celsius? Answer with a number.", number(0)),
    ("fact", "Which language is mainly spoken in Brazil?", has("Portuguese")),
    ("fact", "How many continents are there? Answer with a number.", number(7)),
    # arithmetic
    ("math", "What is 2 + 3? Answer with the number only.", number(5)),
    ("math", "What is 7 * 8? Answer with the number only.", number(56)),
    ("math", "What is 15 - 9? Answer with the number only.", number(6)),
    ("math", "What is 100 divided by 4? Answer with the number only.", number(25)),
    ("math", "What is 12 + 30? Answer with the number only.", number(42)),
    ("math", "What is 9 * 9? Answer with the number only.", number(81)),
    ("math", "What is 1000 - 1? Answer with the number only.", number(999)),
    ("math", "What is 3 squared? Answer with the number only.", number(9)),
    # following a format
    ("format", "List three fruits as a Markdown bullet list, nothing else.", bullet_count(3)),
    ("format", "Give exactly 4 colours as a numbered list, nothing else.", bullet_count(4)),
    ("format", "Reply with the single word YES.", lambda a: a.strip().strip(".!*").upper() == "YES"),
    ("format", "Write the word 'hello' in capital letters and nothing else.", lambda a: "HELLO" in a),
    ("format", 'Reply with a JSON object with a key "name" whose value is "Ada".', is_json_with("name")),
    ("format", "Describe the sun in at most ten words.", word_count_at_most(10)),
    ("format", "Answer only with the number of letters in the word 'cat'.", number(3)),
    ("format", "Translate 'thank you' into French. Answer with the translation only.", has("merci")),
    ("format", "Repeat exactly: blue sky", lambda a: "blue sky" in a.lower()),
    (
        "format",
        "Is water wet? Answer yes or no, in lower case, one word.",
        lambda a: a.strip().strip(".!").lower() in ("yes", "no"),
    ),
]


async def evaluate(path: Path, max_tokens: int, verbose: bool) -> dict[str, float | str]:
    size_mb = path.stat().st_size / 1e6  # noqa: ASYNC240 (a benchmark, before anything is timed)
    provider = LocalProvider(path)
    started = time.perf_counter()
    await asyncio.to_thread(provider._model)  # loading, timed apart from the answers
    load_s = time.perf_counter() - started
    score, first_tokens, rates = 0, [], []
    by_kind: dict[str, int] = {}
    for kind, question, check in QUESTIONS:
        messages = [ChatMessage("system", DEFAULT_SYSTEM_PROMPT), ChatMessage("user", question)]
        options = GenerationOptions(model=provider.model_name, temperature=0.0, max_tokens=max_tokens)
        began = time.perf_counter()
        first: float | None = None
        parts: list[str] = []
        async for event in provider.stream(messages, options):
            if isinstance(event, TextDelta):
                first = first or time.perf_counter()
                parts.append(event.text)
        ended = time.perf_counter()
        answer = "".join(parts).strip()
        if first is not None:
            first_tokens.append(first - began)
            if len(parts) > 1 and ended > first:
                rates.append((len(parts) - 1) / (ended - first))
        ok = check(answer)
        score += ok
        by_kind[kind] = by_kind.get(kind, 0) + ok
        if verbose:
            print(f"  [{'ok' if ok else '--'}] {question}\n       {answer[:160]!r}")
    return {
        "score": score,
        "kinds": " ".join(f"{k} {v}" for k, v in by_kind.items()),
        "load_s": load_s,
        "first_token_s": statistics.median(first_tokens) if first_tokens else float("nan"),
        "first_token_max_s": max(first_tokens, default=float("nan")),
        "tokens_per_s": statistics.median(rates) if rates else float("nan"),
        "size_mb": size_mb,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(BUNDLED_MODELS), help="bundled names or GGUF paths")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()

    rows = []
    for name in args.models.split(","):
        path = bundled_model_path(name) if name in BUNDLED_MODELS else Path(name)
        if path is None or not path.is_file():
            print(f"{name}: not installed, skipped")
            continue
        print(f"{name} ({path.name})", flush=True)
        rows.append((name, await evaluate(path, args.max_tokens, args.verbose)))

    print(f"\n{len(QUESTIONS)} questions, greedy, at most {args.max_tokens} tokens each")
    print("| model | score | by kind | size | load | first token (median / max) | tokens/s |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows:
        print(
            f"| {name} | {r['score']}/{len(QUESTIONS)} | {r['kinds']} | {r['size_mb']:.0f} MB | {r['load_s']:.2f} s "
            f"| {r['first_token_s']:.2f} s / {r['first_token_max_s']:.2f} s | {r['tokens_per_s']:.0f} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
