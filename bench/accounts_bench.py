"""What accounts cost: an Argon2id sign-in, and the session lookup every UI event and API request pays.

Runs services/accounts.py against a fresh SQLite file (and PostgreSQL with --postgres URL).

    .venv/bin/python bench/accounts_bench.py [--lookups 500] [--postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatbot_app.config import Settings
from chatbot_app.services.accounts import SESSION_COOKIE, Accounts
from chatbot_app.storage.database import make_engine
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lookups", type=int, default=500)
    parser.add_argument("--postgres", action="store_true", help="also measure on the PostgreSQL the tests use")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{Path(directory) / 'bench.db'}"
        migrate(url)
        asyncio.run(measure(url, args.lookups))
        if args.postgres:
            with new_database("postgresql", Path(directory), "chatbot_bench") as pg_url:
                migrate(pg_url)
                asyncio.run(measure(pg_url, args.lookups))


if __name__ == "__main__":
    main()
