"""What accounts cost: an Argon2id sign-in, and the session lookup every UI event and API request pays;
and what a burst of password checks does to everyone else (--contention).

Runs services/accounts.py against a fresh SQLite file (and PostgreSQL with --postgres URL).

    .venv/bin/python bench/accounts_bench.py [--lookups 500] [--postgres] [--contention]

--contention: 30 wrong passwords tried at once (as an attacker would) while another user's sidebar is
listed 20 times in a row, and 20 sign-ups at once while a ticker measures the event loop's stalls. Each
twice: with the work where it used to run (Argon2 checks in the database's thread pool, sign-up hashes
on the event loop) and as shipped (Argon2 on its own two threads).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatbot_app.config import Settings
from chatbot_app.services.accounts import SESSION_COOKIE, Accounts, AuthError
from chatbot_app.services.auth_limits import SignInThrottle, SignUpThrottle
from chatbot_app.services.library import ConversationLibrary
from chatbot_app.storage.database import make_engine
from chatbot_app.storage.models import Conversation
from tests.conftest import migrate, new_database


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    return f"median {statistics.median(ordered) * 1000:.2f} ms, p95 {p95 * 1000:.2f} ms"


async def measure(url: str, lookups: int) -> None:
    engine = make_engine(url)
    accounts = Accounts(Settings(database_url=url, auth_methods=("local",)), engine)
    user = await accounts.sign_up("bench@example.com", "correct horse battery")
    sign_ins = []
    for n in range(5):
        start = time.perf_counter()
        await accounts.sign_in("bench@example.com", "correct horse battery", f"10.0.0.{n}")
        sign_ins.append(time.perf_counter() - start)
    header = f"{SESSION_COOKIE}={await accounts.start_session(user)}"
    per_event = []
    for _ in range(lookups):
        start = time.perf_counter()
        await accounts.user_for_cookie_header(header)
        per_event.append(time.perf_counter() - start)
    _, key = await accounts.create_api_key(user.id)  # type: ignore[arg-type]
    per_request = []
    for _ in range(lookups):
        start = time.perf_counter()
        await accounts.user_for_api_key(key)
        per_request.append(time.perf_counter() - start)
    print(f"[{url.split(':', 1)[0]}] sign-in (Argon2id verify + query): {_ms(sign_ins)}")
    print(f"[{url.split(':', 1)[0]}] session lookup per UI event ({lookups}x): {_ms(per_event)}")
    print(f"[{url.split(':', 1)[0]}] personal API key lookup per request ({lookups}x): {_ms(per_request)}")
    engine.dispose()


async def _sidebar_times(library: ConversationLibrary, owner: str, times: int) -> list[float]:
    samples = []
    for _ in range(times):
        start = time.perf_counter()
        await library.page(owner, 0)
        samples.append(time.perf_counter() - start)
    return samples


@contextlib.asynccontextmanager
async def _loop_stalls(samples: list[float], interval_s: float = 0.005):  # type: ignore[no-untyped-def]
    """Record how late each 5 ms tick of the event loop runs (its stalls)."""

    async def tick() -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + interval_s
            await asyncio.sleep(interval_s)
            samples.append(max(0.0, loop.time() - due))

    ticker = asyncio.create_task(tick())
    try:
        yield
    finally:
        ticker.cancel()


async def contention(url: str, attempts: int = 30, sidebars: int = 20, signups: int = 20) -> None:
    engine = make_engine(url)
    settings = Settings(database_url=url, auth_methods=("local",), allow_signup=True)
    generous = SignInThrottle(per_account="1000/minute", per_address="1000/minute")
    accounts = Accounts(
        settings,
        engine,
        throttle=generous,
        signup_throttle=SignUpThrottle(per_address="1000/hour", overall="1000/hour"),
    )
    await accounts.sign_up("victim@example.com", "correct horse battery")
    reader = await accounts.sign_up("reader@example.com", "correct horse battery")
    library = ConversationLibrary(engine)

    def fill(session) -> None:  # type: ignore[no-untyped-def]
        session.add_all(Conversation(owner_id=reader.owner_id, title=f"chat {n}") for n in range(100))

    await accounts.db.run(fill)
    alone = await _sidebar_times(library, reader.owner_id, sidebars)
    stored = (await accounts.operator_list_users())[0].password_hash or ""

    async def naive_check() -> None:  # the check inside the database's thread pool, as it was
        await asyncio.to_thread(_verify_quietly, accounts, stored)

    async def shipped_check(n: int) -> None:
        with contextlib.suppress(AuthError):
            await accounts.sign_in("victim@example.com", f"wrong {n}", f"10.0.{n // 250}.{n % 250}")

    name = url.split(":", 1)[0]
    print(f"[{name}] another user's sidebar (first page of 30), alone: {_ms(alone)}")
    for label, burst in (
        ("Argon2 in the database pool (before)", lambda: [naive_check() for _ in range(attempts)]),
        ("Argon2 on its own threads (shipped)", lambda: [shipped_check(n) for n in range(attempts)]),
    ):
        tasks = [asyncio.create_task(work) for work in burst()]
        during = await _sidebar_times(library, reader.owner_id, sidebars)
        await asyncio.gather(*tasks)
        print(
            f"[{name}] ... during {attempts} wrong passwords, {label}: {_ms(during)}, max {max(during) * 1000:.1f} ms"
        )

    async def naive_signup(n: int) -> None:  # the hash on the event loop, as it was
        accounts.passwords.hasher.hash(f"password number {n}")
        await asyncio.sleep(0)

    async def shipped_signup(n: int) -> None:
        await accounts.sign_up(f"new{n}-{time.monotonic_ns()}@example.com", "correct horse battery", f"10.9.0.{n}")

    for label, make in (
        ("hash on the event loop (before)", naive_signup),
        ("hash on its own threads (shipped)", shipped_signup),
    ):
        stalls: list[float] = []
        async with _loop_stalls(stalls):
            await asyncio.gather(*(make(n) for n in range(signups)))
        print(
            f"[{name}] {signups} sign-ups at once, {label}: event loop's longest stall {max(stalls) * 1000:.0f} ms, "
            f"ticks late by over 50 ms: {sum(s > 0.05 for s in stalls)}"
        )
    accounts.passwords.close()
    engine.dispose()


def _verify_quietly(accounts: Accounts, stored: str) -> bool:
    try:
        return accounts.passwords.hasher.verify(stored, "a wrong password")
    except Exception:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lookups", type=int, default=500)
    parser.add_argument("--postgres", action="store_true", help="also measure on the PostgreSQL the tests use")
    parser.add_argument("--contention", action="store_true", help="what password work does to other users")
    args = parser.parse_args()
    run = contention if args.contention else lambda url: measure(url, args.lookups)
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{Path(directory) / 'bench.db'}"
        migrate(url)
        asyncio.run(run(url))
        if args.postgres:
            with new_database("postgresql", Path(directory), "chatbot_bench") as pg_url:
                migrate(pg_url)
                asyncio.run(run(pg_url))


if __name__ == "__main__":
    main()
