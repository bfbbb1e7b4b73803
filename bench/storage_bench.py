"""Storage latency at scale: sidebar, opening a long conversation, search, export.

For each database and size, fills a fresh database (migrated with alembic, as the app's is)
with 10,000 conversations for one owner plus other owners' conversations, and N messages of
varied text, one conversation holding 2,000 of them (N/2 when N < 4,000); "typical" is one of
average length. Then times each
operation --repeat times, each in its own session as the app does, and prints median and p95.

    .venv/bin/python bench/storage_bench.py [--db sqlite|postgresql|both] [--sizes 1000,10000,100000]

With --isolation it measures instead what one user's search costs when other users hold much more
data (issue 11): the owner has 1,000 messages, and the same searches run once without anyone
else's data and once beside 100,000 messages of 50 other owners. Equal figures mean that a search
costs what the owner's own data costs.

    .venv/bin/python bench/storage_bench.py --isolation [--db ...]

PostgreSQL: a new database on the server of CHATBOT_TEST_POSTGRES_URL (default
postgresql+psycopg2://postgres@127.0.0.1:5432/test), dropped afterwards.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import csv
import io
import math
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import Engine, create_engine, text
from sqlmodel import Session

from chatbot_app.storage import conversations as store
from chatbot_app.storage.database import make_engine, session_scope
from chatbot_app.storage.models import new_conversation_id
from chatbot_app.storage.search import search
from chatbot_app.storage.transfer import stream_json
from tests.conftest import migrate, new_database

Row = tuple[Any, ...]
OWNER = "bench-owner-" + "0" * 20
OWNER_CONVERSATIONS = 10_000
NOISE_OWNERS = 50
NOISE_CONVERSATIONS = 2_000
PINNED = 5
BIG_MESSAGES = 2_000
OWNER_SHARE = 0.8  # of the messages outside the big conversation
GOALS_MS = {"sidebar": 20.0, "open": 30.0, "search": 50.0}
# A frequent word (in 1 message of 9), two words, prefixes as typed, three words, a rare word,
# and "the" (in most messages, and a prefix of many words: the worst case).
SEARCHES = ["python", "docker container", "py", "pyth", "kubernetes deploy rollback", "zebrafish", "the"]

COMMON = """the of and to a in is it you that he was for on are with as I his they be at one have this from
or had by hot word but what some we can out other were all there when up use your how said an each she which
do their time if will way about many then them write would like so these her long make thing see him two has
look more day could go come did number sound no most people my over know water than call first who may down
side been now find any new work part take get place made live where after back little only round man year came
show every good me give our under name very through just form sentence great think say help low line differ
turn cause much mean before move right boy old too same tell does set three want air well also play small end
put home read hand port large spell add even land here must big high such follow act why ask men change went
light kind off need house picture try us again animal point mother world near build self earth father""".split()  # noqa: SIM905
TECH = """python function error database query index table server client request response cache memory thread
process file path module package install version update config variable string list dict class object method
async await loop event stream token model prompt context json yaml docker container image build deploy
kubernetes cluster node pod service ingress volume network port proxy nginx http api endpoint route handler
test pytest fixture mock assert debug log trace exception stack frame compile runtime type annotation schema
migration alembic postgres sqlite transaction commit rollback lock timeout retry backoff queue worker job cron
git branch merge rebase commit diff patch review release tag pipeline ci lint format refactor performance
latency throughput benchmark profile optimize vector embedding search rank score filter sort page cursor""".split()  # noqa: SIM905
RARE = ["zebrafish", "quokka", "axolotl", "pangolin", "narwhal"]
SYLLABLES = "ka lo mi ne ru ta vo shi pe an el or um ix ba de fi go hu ja ke li mo nu pa qui ro su te vi wa".split()  # noqa: SIM905


TABLE_BITS = 21


def vocabulary(rng: random.Random) -> list[str]:
    """2**TABLE_BITS words to draw uniformly from, each repeated in proportion to a Zipf-like
    weight: common English first, then tech terms, then a long tail of made-up words."""
    tail = sorted({"".join(rng.choices(SYLLABLES, k=rng.randint(2, 4))) for _ in range(30_000)})
    rng.shuffle(tail)
    words = COMMON + TECH + tail
    weights = [1.0 / (rank + 10) for rank in range(len(words))]
    scale = 2**TABLE_BITS / sum(weights)
    table = [word for word, weight in zip(words, weights, strict=True) for _ in range(max(1, round(weight * scale)))]
    return (table + [words[0]] * 2**TABLE_BITS)[: 2**TABLE_BITS]


def draw(table: list[str], count: int, rng: random.Random) -> list[str]:
    """`count` words from the table: random bytes masked into indexes, all in C (a Python-level
    weighted draw per word would take most of the fill time)."""
    indexes = array.array("I", rng.randbytes(4 * count))
    return list(map(table.__getitem__, map((2**TABLE_BITS - 1).__and__, indexes)))


def message_texts(count: int, table: list[str], rng: random.Random) -> Iterator[tuple[str, str]]:
    """(role, content) pairs: short questions, longer answers, sometimes code, rarely a rare word."""
    lengths = [rng.randint(4, 40) if n % 2 == 0 else rng.randint(30, 220) for n in range(count)]
    pool = draw(table, sum(lengths), rng)
    offset = 0
    for n, length in enumerate(lengths):
        chosen = pool[offset : offset + length]
        offset += length
        role = "user" if n % 2 == 0 else "assistant"
        if rng.random() < 0.002:
            chosen[rng.randrange(length)] = rng.choice(RARE)
        content = " ".join(" ".join(chosen[i : i + 12]).capitalize() + "." for i in range(0, length, 12))
        if role == "assistant" and rng.random() < 0.15:
            content += f"\n\n```python\ndef {chosen[0]}_{n}(x):\n    return x  # {chosen[-1]}\n```"
        yield role, content


def title(rng: random.Random, tail: list[str]) -> str:
    """Mostly made-up words, so that searches for common words measure message search; 1 in 20 has a tech word."""
    title = " ".join(rng.choices(tail, k=rng.randint(2, 5))).capitalize()
    return f"{title} {rng.choice(TECH)}" if rng.random() < 0.05 else title


def big_count(size: int) -> int:
    return BIG_MESSAGES if size >= 2 * BIG_MESSAGES else size // 2


def build_rows(size: int, rng: random.Random) -> tuple[list[Row], list[Row], str, str]:
    """Conversation rows, message rows (in insertion order), the big conversation's id and a typical one's."""
    now = datetime(2026, 11, 1, tzinfo=UTC)
    table = vocabulary(rng)
    tail = sorted(set(table) - set(COMMON) - set(TECH))
    conversations = []
    owner_ids = []
    for n in range(OWNER_CONVERSATIONS + NOISE_CONVERSATIONS):
        owner = OWNER if n < OWNER_CONVERSATIONS else f"noise-owner-{n % NOISE_OWNERS:04d}"
        cid = new_conversation_id()
        updated = now - timedelta(minutes=rng.randint(0, 525_600))
        pinned = owner == OWNER and n < PINNED
        conversations.append((cid, owner, title(rng, tail), updated - timedelta(hours=1), updated, pinned))
        if owner == OWNER:
            owner_ids.append(cid)
    noise_ids = [c[0] for c in conversations[OWNER_CONVERSATIONS:]]
    big = owner_ids[PINNED]  # an unpinned one
    targets = [big] * big_count(size)
    for _ in range(size - big_count(size)):
        targets.append(rng.choice(owner_ids) if rng.random() < OWNER_SHARE else rng.choice(noise_ids))
    rng.shuffle(targets)
    messages = []
    start = now - timedelta(days=400)
    for n, ((role, content), cid) in enumerate(zip(message_texts(size, table, rng), targets, strict=True)):
        at = start + timedelta(seconds=n * 30)
        tokens = (rng.randint(50, 4000), rng.randint(10, 800)) if role == "assistant" else (None, None)
        messages.append(
            (cid, role, content, "complete", "bench-model" if role == "assistant" else None, *tokens, at, at)
        )
    # Typical: the owner's conversation whose length is closest to the average (big one aside).
    owned = set(owner_ids) - {big}
    lengths = Counter(cid for cid in targets if cid in owned)
    average = statistics.mean(lengths.values())
    typical = min(lengths, key=lambda cid: abs(lengths[cid] - average))
    return conversations, messages, big, typical


CONVERSATION_COLUMNS = "id, owner_id, title, created_at, updated_at, pinned"
MESSAGE_COLUMNS = (
    "conversation_id, role, content, status, model, prompt_tokens, completion_tokens, created_at, updated_at"
)


def fill_sqlite(engine: Engine, conversations: list[Row], messages: list[Row]) -> None:
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        iso = lambda row: tuple(v.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, datetime) else v for v in row)  # noqa: E731
        cursor.executemany(
            f"INSERT INTO conversation ({CONVERSATION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)", map(iso, conversations)
        )
        cursor.executemany(
            f"INSERT INTO message ({MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", map(iso, messages)
        )
        connection.commit()
    finally:
        connection.close()


def fill_postgresql(engine: Engine, conversations: list[Row], messages: list[Row]) -> None:
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        for table, columns, rows in (
            ("conversation", CONVERSATION_COLUMNS, conversations),
            ("message", MESSAGE_COLUMNS, messages),
        ):
            buffer = io.StringIO()
            csv.writer(buffer).writerows(rows)
            buffer.seek(0)
            cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv)", buffer)  # type: ignore[attr-defined]
        connection.commit()
    finally:
        connection.close()
    # Statistics, as autovacuum would gather after a load like this.
    with create_engine(engine.url, isolation_level="AUTOCOMMIT").connect() as autocommit:
        autocommit.execute(text("VACUUM ANALYZE"))


@contextmanager
def fresh_database(kind: str) -> Iterator[str]:
    with tempfile.TemporaryDirectory() as tmp, new_database(kind, Path(tmp), "chatbot_bench") as url:
        yield url


def timed(engine: Engine, work: Callable[..., object], repeat: int) -> list[float]:
    """Milliseconds per run of work(session), each run in its own session; two warm-up runs first."""
    samples = []
    for n in range(repeat + 2):
        started = time.perf_counter()
        with session_scope(engine) as session:
            work(session)
        if n >= 2:
            samples.append((time.perf_counter() - started) * 1000)
    return samples


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[math.ceil(0.95 * len(ordered)) - 1]


@dataclass
class Dataset:
    size: int
    conversations: list[Row]
    messages: list[Row]
    big: str
    typical: str
    generate_s: float


def generate(size: int) -> Dataset:
    started = time.perf_counter()
    conversations, messages, big, typical = build_rows(size, random.Random(size))
    return Dataset(size, conversations, messages, big, typical, time.perf_counter() - started)


def bench(kind: str, data: Dataset, repeat: int) -> tuple[float, dict[str, list[float]]]:
    """Fill a fresh database with `data`; returns the fill time (s) and the samples (ms) per operation."""
    with fresh_database(kind) as url:
        migrate(url)
        engine = make_engine(url)
        try:
            started = time.perf_counter()
            (fill_sqlite if kind == "sqlite" else fill_postgresql)(engine, data.conversations, data.messages)
            fill_s = time.perf_counter() - started

            def export(conversation_id: str) -> Callable[[Session], object]:
                def work(session: Session) -> object:
                    # The streamed export, every step read in this one session (the app's use a transaction each).
                    async def read(step: Callable[[Session], Any]) -> Any:
                        return step(session)

                    async def collect() -> bytes:
                        return b"".join([piece async for piece in stream_json(read, [conversation_id])])

                    return asyncio.run(collect())

                return work

            results = {
                "sidebar (first 30)": timed(engine, lambda s: store.list_conversations(s, OWNER, limit=30), repeat),
                "open (last 50 of the big one)": timed(
                    engine, lambda s: store.latest_messages(s, data.big, limit=50), repeat
                ),
            }
            for query in SEARCHES:
                results[f"search {query!r}"] = timed(engine, lambda s, q=query: search(s, OWNER, q), repeat)
            results["search (all queries)"] = [x for q in SEARCHES for x in results[f"search {q!r}"]]
            results["export (the big one)"] = timed(engine, export(data.big), repeat)
            results["export (typical)"] = timed(engine, export(data.typical), repeat)
            return fill_s, results
        finally:
            engine.dispose()


ISOLATION_OWN = 1_000
ISOLATION_OTHERS = 100_000
ISOLATION_OWN_CONVERSATIONS = 50


def isolation_rows(with_others: bool) -> tuple[list[Row], list[Row]]:
    """The owner's 1,000 messages in 50 conversations, plus (with_others) 100,000 of other owners'.

    The same owner rows either way (one seed), interleaved in time with the others' as real use would be.
    """
    rng = random.Random(11)
    table = vocabulary(rng)
    now = datetime(2026, 11, 1, tzinfo=UTC)
    own_ids = [new_conversation_id() for _ in range(ISOLATION_OWN_CONVERSATIONS)]
    other_ids = [new_conversation_id() for _ in range(NOISE_CONVERSATIONS)]
    conversations = [(cid, OWNER, f"own {n}", now, now, False) for n, cid in enumerate(own_ids)]
    targets = [own_ids[n % len(own_ids)] for n in range(ISOLATION_OWN)]
    if with_others:
        conversations += [
            (cid, f"noise-owner-{n % NOISE_OWNERS:04d}", f"other {n}", now, now, False)
            for n, cid in enumerate(other_ids)
        ]
        targets += [other_ids[n % len(other_ids)] for n in range(ISOLATION_OTHERS)]
        random.Random(12).shuffle(targets)
    own_texts = message_texts(ISOLATION_OWN, table, random.Random(13))
    other_texts = message_texts(ISOLATION_OTHERS if with_others else 0, table, random.Random(14))
    messages = []
    start = now - timedelta(days=400)
    for n, cid in enumerate(targets):
        role, content = next(own_texts if cid in own_ids_set(own_ids) else other_texts)
        at = start + timedelta(seconds=n * 30)
        messages.append((cid, role, content, "complete", None, None, None, at, at))
    return conversations, messages


def own_ids_set(ids: list[str], _cache: dict[int, set[str]] = {}) -> set[str]:  # noqa: B006 (a memo)
    return _cache.setdefault(id(ids), set(ids))


def bench_isolation(kind: str, repeat: int) -> dict[str, list[float]]:
    """Median search time (ms) per query for the owner: [alone, beside 100,000 others' messages]."""
    figures: dict[str, list[float]] = {}
    for with_others in (False, True):
        conversations, messages = isolation_rows(with_others)
        with fresh_database(kind) as url:
            migrate(url)
            engine = make_engine(url)
            try:
                (fill_sqlite if kind == "sqlite" else fill_postgresql)(engine, conversations, messages)
                for query in [*SEARCHES, "no-such-word-anywhere"]:
                    samples = timed(engine, lambda s, q=query: search(s, OWNER, q), repeat)
                    figures.setdefault(query, []).append(statistics.median(samples))
                stranger = timed(engine, lambda s: search(s, "stranger-" + "9" * 20, "the"), repeat)
                figures.setdefault("'the' for a user with no messages", []).append(statistics.median(stranger))
            finally:
                engine.dispose()
    return figures


def main_isolation(kinds: list[str], repeat: int) -> None:
    for kind in kinds:
        figures = bench_isolation(kind, repeat)
        print(f"\n{kind}: search for an owner with {ISOLATION_OWN:,} messages; median ms over {repeat} runs")
        print(f"{'query':<40}{'alone':>12}{f'+{ISOLATION_OTHERS:,} others':>18}{'ratio':>8}")
        for query, (alone, crowded) in figures.items():
            label = query if query.startswith("'the'") else repr(query)
            print(f"{label:<40}{alone:>12.2f}{crowded:>18.2f}{crowded / max(alone, 0.001):>8.1f}")


GOAL_ROWS = {"sidebar": "sidebar (first 30)", "open": "open (last 50 of the big one)", "search": "search (all queries)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--sizes", default="1000,10000,100000", help="message counts, comma-separated")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--isolation", action="store_true", help="one user's search beside others' data")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    if args.isolation:
        main_isolation(kinds, args.repeat)
        return

    # The same rows for every database: generated once per size.
    tables: dict[str, dict[str, list[tuple[float, float]]]] = {kind: {} for kind in kinds}
    notes: dict[str, list[str]] = {kind: [] for kind in kinds}
    for size in sizes:
        data = generate(size)
        for kind in kinds:
            fill_s, results = bench(kind, data, args.repeat)
            notes[kind].append(
                f"{size:,} messages (big conversation: {big_count(size):,}): "
                f"generated in {data.generate_s:.1f} s, filled in {fill_s:.1f} s"
            )
            for name, samples in results.items():
                tables[kind].setdefault(name, []).append((statistics.median(samples), p95(samples)))

    for kind in kinds:
        print(f"\n{kind}: median / p95 in ms over {args.repeat} runs each")
        for note in notes[kind]:
            print(f"  {note}")
        print(f"{'operation':<36}" + "".join(f"{f'{size:,} msgs':>18}" for size in sizes))
        for name, cells in tables[kind].items():
            print(f"{name:<36}" + "".join(f"{f'{median:.2f} / {high:.2f}':>18}" for median, high in cells))
        verdicts = []
        for goal, row in GOAL_ROWS.items():
            median = tables[kind][row][-1][0]
            verdicts.append(f"{goal} {median:.1f} {'<=' if median <= GOALS_MS[goal] else '>'} {GOALS_MS[goal]:.0f}")
        print(f"  goals at {sizes[-1]:,} messages (median ms): " + "; ".join(verdicts))


if __name__ == "__main__":
    main()
