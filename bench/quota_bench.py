"""Does the daily token quota hold under concurrent calls that hang up? Prints the overshoot.

A production backend (accounts on, one user with a daily quota) and the fake Groq server. Rounds of
concurrent calls through every door that spends tokens, mixed: /api/chat streamed and hung up after
its first text, /v1 streamed and hung up before its usage chunk, /v1 whole, /api/chat_batch. Rounds
go on until every call of a round is refused. Then it compares the quota with what the ledger
counted and with what the provider really produced (the fake's own count of tokens it sent, as a
provider would bill them).

    .venv/bin/python bench/quota_bench.py [--quota 3000] [--concurrency 20] [--sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import tempfile
import time
from pathlib import Path

import httpx
import openai

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlmodel import Session, select

from bench.bench_backend import bench_environment
from chatbot_app.config import Settings
from chatbot_app.services.accounts import Accounts
from chatbot_app.storage.database import make_engine
from chatbot_app.storage.models import TokenLedger
from tests.conftest import migrate, new_database
from tests.e2e.live_app import Backend, free_port
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer

KINDS = ("api stream, hung up", "v1 stream, hung up", "v1 whole", "api batch")


async def one_call(kind: str, base: str, key: str, sdk: openai.AsyncOpenAI) -> str:
    """One call of `kind`: "refused" (429), "refused in its reply", "hung up" or "done"."""
    headers = {"Authorization": f"Bearer {key}"}
    messages = [{"role": "user", "content": f"Count to a hundred, please ({random.random():.6f})."}]
    try:
        if kind == "api stream, hung up":
            async with (
                httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http,
                http.stream("POST", "/api/chat", json={"message": messages[0]["content"]}) as answer,
            ):
                if answer.status_code == 429:
                    return "refused"
                async for chunk in answer.aiter_text():
                    if chunk.startswith("You have used today's"):
                        return "refused in its reply"  # admitted, then the call could not hold its tokens
                    if chunk:
                        return "hung up"  # leaving the block closes the connection
            return "done"
        if kind == "v1 stream, hung up":
            stream = await sdk.chat.completions.create(model="groq:fake-large", messages=messages, stream=True)
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    await stream.close()  # before the usage chunk
                    return "hung up"
            return "done"
        if kind == "v1 whole":
            await sdk.chat.completions.create(model="groq:fake-large", messages=messages)
            return "done"
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
            answer = await http.post("/api/chat_batch", json={"message": messages[0]["content"]})
        return {429: "refused", 502: "refused in its reply", 200: "done"}.get(
            answer.status_code, str(answer.status_code)
        )
    except openai.RateLimitError:
        return "refused"


async def run(base: str, key: str, concurrency: int, max_rounds: int) -> dict[str, int]:
    outcomes: dict[str, int] = {}
    async with openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0) as sdk:
        for _ in range(max_rounds):
            kinds = [KINDS[n % len(KINDS)] for n in range(concurrency)]
            results = await asyncio.gather(*(one_call(kind, base, key, sdk) for kind in kinds))
            for kind, result in zip(kinds, results, strict=True):
                outcomes[f"{kind}: {result}"] = outcomes.get(f"{kind}: {result}", 0) + 1
            if all(result == "refused" for result in results):
                break
    return outcomes


def ledger(engine, user_id: int) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        rows = session.exec(select(TokenLedger).where(TokenLedger.user_id == user_id)).all()
        return sum(r.used_tokens for r in rows), sum(r.reserved_tokens for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quota", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--max-rounds", type=int, default=30)
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    args = parser.parse_args()

    fake = FakeLLMServer(default=Behaviour(tokens=120, tokens_per_s=300)).start()
    with tempfile.TemporaryDirectory() as work, contextlib.ExitStack() as stack:
        workdir = Path(work)
        if args.sqlite:
            database_url = f"sqlite:///{workdir / 'quota.db'}"
        else:
            database_url = stack.enter_context(new_database("postgresql", workdir, "chatbot_quota_bench"))
        migrate(database_url)
        engine = make_engine(database_url)
        accounts = Accounts(Settings(database_url=database_url, auth_methods=("local",)), engine)
        user = asyncio.run(accounts.sign_up("spender@example.com", "correct horse battery"))
        _, key = asyncio.run(accounts.create_api_key(user.id or 0, "bench"))
        environment = bench_environment(
            database_url,
            fake.base_url,
            CHATBOT_AUTH="local",
            CHATBOT_DAILY_TOKENS_PER_USER=str(args.quota),
            CHATBOT_RATE_LIMIT_PER_MINUTE="100000",
            CHATBOT_ADDRESS_RATE_LIMIT_PER_MINUTE="100000",
        )
        backend = Backend(free_port(), environment, workdir / "backend.log")
        backend.start()
        stack.callback(backend.stop)
        started = time.monotonic()
        outcomes = asyncio.run(run(backend.url, key, args.concurrency, args.max_rounds))
        deadline = time.monotonic() + 30
        while ledger(engine, user.id or 0)[1] and time.monotonic() < deadline:  # hung-up replies settle
            time.sleep(0.1)
        used, reserved = ledger(engine, user.id or 0)
        billed = sum(prompt + completion for prompt, completion in fake.billed.values())
        engine.dispose()
    fake.stop()

    print(
        f"quota {args.quota:,} tokens; {args.concurrency} concurrent calls a round; "
        f"{'SQLite' if args.sqlite else 'PostgreSQL'}; {time.monotonic() - started:.1f} s"
    )
    for outcome, count in sorted(outcomes.items()):
        print(f"  {outcome:<32} {count:>5}")
    print(f"counted by the ledger   {used:>7,}  (still reserved: {reserved:,})")
    print(f"produced by the provider {billed:>6,}  ({len(fake.billed)} calls reached it)")
    print(f"overshoot (counted)     {max(0, used - args.quota):>7,} tokens")
    print(f"overshoot (produced)    {max(0, billed - args.quota):>7,} tokens")


if __name__ == "__main__":
    main()
