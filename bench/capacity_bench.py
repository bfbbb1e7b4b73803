"""Capacity of one worker: how many concurrent streams it keeps pace with at 250, 500 and 1,000 tokens/s.

Runs bench/stream_bench.py's scenarios (a fresh `reflex run --backend-only --env prod` backend per
scenario, N websocket clients in a child process, the fake Groq server in this process's thread)
for growing N at each rate, and stops a rate at the first N that does not keep pace. "Keeps pace"
is issue 12's: every reply ended, lag p99 <= 500 ms, no gap between frames over 250 ms, and the
upstream streams held 90% of their rate. The app's concurrency and abuse limits are raised above N,
so the limits are not what is measured. The N messages arrive evenly over --ramp-s (1 s), as users' do;
--ramp-s 0 sends them in the same instant, which measures a burst of N page loads and sends instead.

Then, each section optional (in this order; ^C prints what was measured):
  --prod RATE:N,..  `make prod`'s topology (deploy/run_prod.py's Topology: nginx, --prod-backends backend
                    processes, Redis at --redis-url, a fresh PostgreSQL database from tests.conftest.new_database),
                    the clients connecting through nginx, against one worker at the same N: tokens/s delivered,
                    the ratio, and the CPU of every party (/proc), to say what bounds it; --prod-oplock also
                    runs each with REFLEX_OPLOCK_ENABLED=true;
  --compare RATE:N  the same N with both stream parsers (the SDK's chunk objects, CHATBOT_STREAM_PARSER=sdk,
                    and raw SSE bytes parsed with orjson) and both pacing policies (a fixed CHATBOT_FRAME_MS,
                    CHATBOT_FRAMES_PER_S=0, and load-paced), for CPU per 1,000 tokens; and the shipped design
                    over the SDKs' default httpx client (CHATBOT_HTTP_TRANSPORT=httpx) instead of aiohttp;
  --redis RATE:N    one worker with Reflex's Redis state manager and the reply log in Redis Streams
                    (REFLEX_REDIS_URL=--redis-url), then also with REFLEX_OPLOCK_ENABLED=true, against none;
  --waiting RATE:N  one worker at N, alone and while --waiting-replies (20) other replies each wait on a slow
                    MCP tool (tests/fakes/mcp_server.py's `slow`, at least 10 s and longer than the scenario),
                    started through /api/chat before the N clients send, each --waiting-runs times (2; the
                    spread is the noise);
                    and the frames the waiting replies wrote meanwhile (their log entries past the call's start).

Columns, as in stream_bench.py: 1st ms is the client's first frame with text minus the fake's first
token (so it includes 1/rate); cpu/1k is the backend's CPU seconds per 1,000 tokens shown; be/fk/cl/oth
are CPU % of one core for the backend, this process (the fake upstream), the clients and the rest of
the machine (which is shared: see the load average printed first).

    .venv/bin/python bench/capacity_bench.py [--rates 250,500,1000] [--tokens 4000] [--compare 1000:30]
    .venv/bin/python bench/capacity_bench.py --steps-1000 20,30,40 --steps-500 40,60 --steps-250 60,90
    .venv/bin/python bench/capacity_bench.py --rates '' --compare '' --redis 1000:30 --prod 1000:30,60
    .venv/bin/python bench/capacity_bench.py --rates '' --compare '' --waiting 1000:30
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import logging
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
import redis
from stream_bench import COLUMNS, LIMITS_RAISED, Bench, Design, Row, Watched, _line, format_row

from deploy.run_prod import ProdConfig, Topology
from tests.conftest import migrate, new_database
from tests.e2e.live_app import free_port
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer, reply_tokens
from tests.fakes.mcp_server import FakeMcpServer

DEFAULT_STEPS = {250: "60,90,120", 500: "30,60,80", 1000: "10,20,30,40"}
LAG_P99_S, GAP_MAX_S, RATE_HELD = 0.5, 0.25, 0.9
#: Reflex's opportunistic lock: a process keeps a tab's Redis lock (and its state in memory) while no other
#: process asks for it, instead of a lock, a read and a write in Redis for every event and frame.
OPLOCK = {"REFLEX_OPLOCK_ENABLED": "true"}
#: Peers whose CPU a prod scenario reports, by command name (nginx is watched by its own session).
SHARED_PEERS = {"redis": Watched(commands=("redis-server",)), "postgres": Watched(commands=("postgres",))}


def designs(frame_ms: int) -> dict[str, Design]:
    """The shipped design (raw parser, load-paced frames, the SDKs' aiohttp client) and those it is measured
    against: both parsers x both pacings, and the shipped one over the SDKs' default httpx client."""
    return {
        "raw+paced": Design("raw+paced", frame_ms, parser="raw"),
        "raw+fixed": Design("raw+fixed", frame_ms, frames_per_s=0, parser="raw"),
        "sdk+paced": Design("sdk+paced", frame_ms, parser="sdk"),
        "sdk+fixed": Design("sdk+fixed", frame_ms, frames_per_s=0, parser="sdk"),
        "raw+paced/httpx": Design("raw+paced/httpx", frame_ms, parser="raw", transport="httpx"),
    }


def missed(row: Row, rate: float) -> list[str]:
    """Why a scenario did not keep pace (empty when it did)."""
    reasons = []
    if row.done < row.clients:
        reasons.append(f"{row.done}/{row.clients} ended")
    if row.lag_p99 is None or row.lag_p99 > LAG_P99_S:
        reasons.append(f"lag p99 {_ms(row.lag_p99)}")
    if row.gap_max is None or row.gap_max > GAP_MAX_S:
        reasons.append(f"gap max {_ms(row.gap_max)}")
    if row.upstream_rate is None or row.upstream_rate < RATE_HELD * rate:
        reasons.append(f"upstream {row.upstream_rate or 0:,.0f} tok/s")
    return reasons


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.0f} ms"


@dataclass
class ProdBench(Bench):
    """A Bench whose scenarios run against `make prod`'s topology: nginx in front of `backends` processes
    sharing Redis and PostgreSQL. A fresh topology per scenario (the database and the site are reused)."""

    backends: int = 2
    redis_url: str = ""
    site_dir: Path | None = None

    @contextlib.contextmanager
    def serve(self, env: dict[str, str], label: str) -> Iterator[tuple[str, list[Watched], dict[str, Watched]]]:
        config = ProdConfig.load(
            {
                **env,
                "PORT": str(free_port()),
                "BACKENDS": str(self.backends),
                "CHATBOT_PROD_DIR": str(self.workdir / label.replace(" ", "-")),  # nginx paths take no spaces
                "REFLEX_REDIS_URL": self.redis_url,
                "CHATBOT_AUTH": "none",  # the benchmark's tabs are anonymous (make prod defaults to accounts)
            }
        )
        config.backend_ports = [free_port() for _ in range(self.backends)]  # free ones, not BACKEND_PORT + i
        topology = Topology(config, site_dir=self.site_dir, log_to_files=True)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            topology.start()  # quiet: its progress lines and the migrations' log
        try:
            assert topology.nginx is not None and topology.nginx.process is not None
            backends = [Watched(sessions=(b.process.pid,)) for b in topology.backends if b.process is not None]
            yield topology.url, backends, {"nginx": Watched(sessions=(topology.nginx.process.pid,)), **SHARED_PEERS}
        finally:
            for process in [topology.nginx, *topology.backends]:
                if process is not None:
                    process.stop(signal.SIGKILL)  # measured already: no need to wait for in-flight replies


#: The operator key the waiting replies are sent with (/api/chat).
WAITING_KEY = "capacity-bench-waiting-replies-key"


@dataclass
class WaitingBench(Bench):
    """A Bench whose backend also carries `replies` replies, each waiting on a slow MCP tool through the whole
    scenario (sent through /api/chat before the N clients start); `frames` counts what those replies streamed
    after their call began (the goal: none)."""

    replies: int = 20
    tool_s: float = 10.0
    frames: list[int] = field(default_factory=list)

    @contextlib.contextmanager
    def serve(self, env: dict[str, str], label: str) -> Iterator[tuple[str, list[Watched], dict[str, Watched]]]:
        with super().serve(env, label) as served, waiting_replies(served[0], self.replies, self.tool_s) as frames:
            yield served
        self.frames.append(sum(frames))


@contextlib.contextmanager
def waiting_replies(url: str, count: int, tool_s: float) -> Iterator[list[int]]:
    """`count` replies, each calling the slow tool: yields once every call runs, a list that then holds, per
    reply, the server-sent events it got after its call started (filled when the block ends)."""
    running = threading.Semaphore(0)
    done = threading.Event()
    frames: list[int] = []

    def one(n: int) -> None:
        body = {"message": f'call facts__slow {{"seconds": {tool_s:g}}}\nwaiting reply {n}', "mcp_servers": ["facts"]}
        headers = {"Authorization": f"Bearer {WAITING_KEY}", "Accept": "text/event-stream"}
        after = 0
        with (
            httpx.Client(base_url=url, timeout=httpx.Timeout(30, read=None)) as client,
            client.stream("POST", "/api/chat", json=body, headers=headers) as response,
        ):
            response.raise_for_status()
            lines = response.iter_lines()
            for line in lines:
                if line.startswith("data:") and json.loads(line[5:]).get("status") == "running":
                    break
            running.release()
            # The rest of its stream until the scenario ends; a tool that outlasts it sends nothing.
            counter = [0]
            threading.Thread(target=_count_events, args=(lines, counter), daemon=True).start()
            done.wait()
            after = counter[0]
        frames.append(after)

    with ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(one, n) for n in range(count)]
        deadline = time.monotonic() + 60
        for _ in range(count):
            if not running.acquire(timeout=max(0.0, deadline - time.monotonic())):
                failed = [f.exception() for f in futures if f.done() and f.exception()]
                raise RuntimeError(f"the waiting replies did not all reach their tool: {failed[:1]}")
        try:
            yield frames
        finally:
            done.set()


def _count_events(lines: Iterator[str], counter: list[int]) -> None:
    with contextlib.suppress(Exception):  # the stream is closed under it when the scenario ends
        for line in lines:
            counter[0] += line.startswith("data:")


def minimal_site(directory: Path) -> Path:
    """A stand-in for the exported frontend: the clients speak to the backends only, so nginx needs just a page."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("index.html", "404.html"):
        (directory / name).write_text("<!doctype html><title>capacity bench</title>\n")
    return directory


class Runner:
    """Runs scenarios at a rate (its fake behaviour and token count), sharing the database and client process."""

    def __init__(self, fake: FakeLLMServer, database_url: str, workdir: Path, pool: ProcessPoolExecutor, args) -> None:
        self.fake, self.database_url, self.workdir, self.pool, self.args = fake, database_url, workdir, pool, args
        self.rows: list[tuple[float, Row]] = []

    def run(
        self,
        design: Design,
        rate: float,
        clients: int,
        env: dict[str, str] | None = None,
        prod: dict | None = None,
        waiting: dict | None = None,
    ) -> Row:
        """One scenario: one worker, or with `prod` (ProdBench's fields) the prod topology, or with `waiting`
        (WaitingBench's fields) one worker that also carries replies waiting on a tool."""
        behaviour = Behaviour(text="", tokens=self.args.tokens, tokens_per_s=rate)
        token_ends = list(itertools.accumulate(len(t) for t in reply_tokens([], behaviour)))
        timeout = self.args.ramp_s + self.args.tokens / rate + self.args.slack
        fixed = {"fake": self.fake, "behaviour": behaviour, "database_url": self.database_url, "workdir": self.workdir}
        fixed |= {"pool": self.pool, "timeout_s": timeout, "token_ends": token_ends, "ramp_s": self.args.ramp_s}
        if prod:
            bench: Bench = ProdBench(**(fixed | prod))
        else:
            bench = WaitingBench(**(fixed | waiting)) if waiting else Bench(**fixed)
        bench.environment = {
            "CHATBOT_MAX_ACTIVE_REPLIES": str(clients + 8),
            "CHATBOT_MAX_WAITING_REPLIES": "8",
            **LIMITS_RAISED,
            **(env or {}),
        }
        if redis_url := bench.environment.get("REFLEX_REDIS_URL") or (prod or {}).get("redis_url"):
            with redis.Redis.from_url(redis_url) as client:
                client.flushdb()  # this bench's own database number: states and logs of earlier scenarios
        started = time.monotonic()
        row = bench.scenario(design, clients)
        if isinstance(bench, WaitingBench):
            row.errors += [f"the waiting replies sent {n} events meanwhile" for n in bench.frames if n]
        self.rows.append((rate, row))
        verdict = "; ".join(missed(row, rate)) or "keeps pace"
        print(f"  {design.name} {rate:g} tok/s N={clients}: {verdict} ({time.monotonic() - started:.0f} s)", flush=True)
        return row

    def find(self, name: str, rate: float, clients: int) -> Row | None:
        """A scenario already run (the same design at the same point), to reuse rather than run again."""
        return next((r for rt, r in self.rows if r.design == name and rt == rate and r.clients == clients), None)


def point(text: str) -> tuple[float, list[int]]:
    """'RATE:N[,N...]' as (rate, [N, ...])."""
    rate, clients = text.split(":")
    return float(rate), [int(n) for n in clients.split(",") if n.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="250,500,1000", help="tokens/s per stream to find the capacity at")
    parser.add_argument("--tokens", type=int, default=4000, help="tokens per reply")
    for rate, steps in DEFAULT_STEPS.items():
        parser.add_argument(f"--steps-{rate}", default=steps, help=f"N to try at {rate} tok/s, ascending")
    parser.add_argument("--compare", default="1000:30", help="RATE:N where both parsers x both pacings run; '' skips")
    parser.add_argument("--frame-ms", type=int, default=50, help="CHATBOT_FRAME_MS")
    parser.add_argument("--ramp-s", type=float, default=1.0, help="send the N messages evenly over this (0: at once)")
    parser.add_argument("--slack", type=float, default=20.0, help="seconds a scenario may run past its upstream")
    parser.add_argument("--redis", default="", help="RATE:N where one worker runs with Redis, and with oplock")
    parser.add_argument("--prod", default="", help="RATE:N[,N...] where make prod's topology runs; '' skips")
    parser.add_argument("--prod-backends", default="2", help="backend counts for --prod, e.g. 1,2")
    parser.add_argument("--prod-oplock", action="store_true", help="--prod also with REFLEX_OPLOCK_ENABLED=true")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/10", help="Redis database (flushed!)")
    parser.add_argument("--waiting", default="", help="RATE:N where one worker runs alone and beside waiting replies")
    parser.add_argument("--waiting-replies", type=int, default=20, help="replies waiting on a tool, for --waiting")
    parser.add_argument("--waiting-runs", type=int, default=2, help="times each of alone and beside runs")
    args = parser.parse_args()
    by_name = designs(args.frame_ms)
    shipped = by_name["raw+paced"]

    print(
        f"{args.tokens} tokens per reply; frames every {args.frame_ms} ms while few stream; {os.cpu_count()} CPUs"
        f" shared with everything else; load average before the run: {' '.join(f'{x:.1f}' for x in os.getloadavg())}",
        flush=True,
    )
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    fake = FakeLLMServer().start()
    capacity: list[tuple[float, int, Row | None, str]] = []
    compared: list[Row] = []
    redis_rows: list[Row] = []
    waiting_rows: list[Row] = []
    prod_rows: list[tuple[int, list[Row]]] = []
    started = time.monotonic()
    try:
        with (
            tempfile.TemporaryDirectory() as tmp,
            ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool,
        ):
            workdir = Path(tmp)
            database_url = f"sqlite:///{workdir / 'bench.db'}"
            migrate(database_url)
            runner = Runner(fake, database_url, workdir, pool, args)
            for rate in (float(r) for r in args.rates.split(",") if r.strip()):
                kept, kept_row, failed = 0, None, ""
                for clients in (int(n) for n in getattr(args, f"steps_{int(rate)}").split(",")):
                    row = runner.run(shipped, rate, clients)
                    if reasons := missed(row, rate):
                        failed = f"N={clients}: {'; '.join(reasons)}"
                        kept_row = kept_row or row  # nothing kept: show the figures of the first miss
                        break
                    kept, kept_row = clients, row
                capacity.append((rate, kept, kept_row, failed))
            if args.prod:
                rate, counts = point(args.prod)
                with new_database("postgresql", workdir, prefix="capacity_bench") as postgres_url:
                    migrate(postgres_url)
                    site = minimal_site(workdir / "site")
                    for clients in counts:
                        rows = [runner.find(shipped.name, rate, clients) or runner.run(shipped, rate, clients)]
                        prod_rows.append((clients, rows))  # filled in below: shown even if interrupted
                        for backends in (int(n) for n in args.prod_backends.split(",")):
                            prod = {
                                "backends": backends,
                                "redis_url": args.redis_url,
                                "site_dir": site,
                                "database_url": postgres_url,
                            }
                            design = Design(f"prod x{backends}", args.frame_ms, parser="raw")
                            rows.append(runner.run(design, rate, clients, prod=prod))
                            if args.prod_oplock:
                                design = Design(f"x{backends}+oplock", args.frame_ms, parser="raw")
                                rows.append(runner.run(design, rate, clients, OPLOCK, prod=dict(prod)))
            if args.compare:
                rate, (clients,) = point(args.compare)
                for design in by_name.values():
                    compared.append(runner.find(design.name, rate, clients) or runner.run(design, rate, clients))
            if args.redis:
                rate, (clients,) = point(args.redis)
                redis_rows.append(runner.find(shipped.name, rate, clients) or runner.run(shipped, rate, clients))
                with_redis = {"REFLEX_REDIS_URL": args.redis_url}
                redis_rows.append(runner.run(Design("redis", args.frame_ms, parser="raw"), rate, clients, with_redis))
                oplock = {**with_redis, **OPLOCK}
                redis_rows.append(
                    runner.run(Design("redis+oplock", args.frame_ms, parser="raw"), rate, clients, oplock)
                )
            if args.waiting:
                waiting_rows += run_waiting(runner, args)
    finally:
        fake.stop()
        print_report(capacity, compared, runner.rows if "runner" in locals() else [], args)
        print_redis(redis_rows, args)
        print_waiting(waiting_rows, args)
        print_prod(prod_rows, args)
        print_markdown(capacity, compared, redis_rows, prod_rows, args)
        print(
            f"\nload average after the run: {' '.join(f'{x:.1f}' for x in os.getloadavg())};"
            f" total {time.monotonic() - started:.0f} s"
        )


def one_core_streams(row: Row, rate: float) -> str:
    """Streams one worker could carry at this rate with a whole core to itself, from its CPU per token."""
    return "-" if not row.cpu_per_1k else f"{1000 / (row.cpu_per_1k * rate):.0f}"


def print_report(
    capacity: list[tuple[float, int, Row | None, str]], compared: list[Row], rows: list[tuple[float, Row]], args
) -> None:
    if capacity:
        print(
            "\nCapacity of one worker (raw parser, load-paced frames); figures at the largest N kept (else the miss):"
        )
        names = [
            "tok/s",
            "streams kept",
            "1st ms p50/p99",
            "lag ms p99",
            "gap ms max",
            "cpu/1k",
            "be/fk %",
            "1-core est",
        ]
        widths = [6, 12, 14, 10, 10, 6, 8, 10]
        print(_line(names, widths) + "  first miss")
        for rate, kept, row, failed in capacity:
            cells = [f"{rate:g}", f">= {kept}" if not failed and kept else str(kept)]
            if row is None:
                cells += ["-"] * 6
            else:
                cells += [
                    f"{_num(row.first_p50)}/{_num(row.first_p99)}",
                    _num(row.lag_p99),
                    _num(row.gap_max),
                    f"{row.cpu_per_1k:.3f}" if row.cpu_per_1k is not None else "-",
                    f"{row.backend_pct:.0f}/{row.bench_pct:.0f}",
                    one_core_streams(row, rate),
                ]
            print(_line(cells, widths) + "  " + (failed or "none (the largest N tried)"))
        print(
            "  (1-core est: 1 s / (backend CPU per token x rate), the streams a worker with a whole core would carry;"
            "\n   1st ms: the client's first frame with text minus the fake's first token, which includes one token"
            " interval, 1/rate; be/fk: CPU % of one core of the backend and of the fake upstream)"
        )
    if compared:
        rate = float(args.compare.split(":")[0])
        print(
            f"\nParsers x pacing at {args.compare.replace(':', ' tok/s, N=')} (cpu/1k: backend CPU s per 1,000 tokens):"
        )
        names = [
            "design",
            "done",
            "shown tok/s",
            "fps",
            "lag ms p99",
            "gap ms max",
            "cpu/1k",
            "be/fk/oth %",
            "1-core est",
        ]
        widths = [15, 7, 11, 5, 10, 10, 6, 11, 10]
        print(_line(names, widths))
        for row in compared:
            cells = [
                row.design,
                f"{row.done}/{row.clients}",
                f"{row.shown_rate or 0:,.0f}",
                f"{row.fps or 0:.1f}",
                _num(row.lag_p99),
                _num(row.gap_max),
                f"{row.cpu_per_1k:.3f}" if row.cpu_per_1k is not None else "-",
                f"{row.backend_pct:.0f}/{row.bench_pct:.0f}/{row.other_pct:.0f}",
                one_core_streams(row, rate),
            ]
            print(_line(cells, widths))
    if model := cost_model([row for _, row in rows if row.design.startswith("raw") and row.done == row.clients]):
        per_frame, per_token = model
        print(
            f"\nBackend CPU, fitted over the raw-parser scenarios that finished (least squares, no intercept):"
            f" {per_frame * 1000:.2f} ms per frame + {per_token * 1e6:.1f} µs per token. So per worker core:"
        )
        for rate, streams in ((1000, 30), (500, 60)):
            tokens = rate * streams
            for policy, frames in (
                ("fixed 50 ms", streams * 20),
                ("load-paced", min(streams * 20, max(200, streams * 4))),
            ):
                need = frames * per_frame + tokens * per_token
                print(f"  {streams} streams x {rate} tok/s, {policy} ({frames} frames/s): {need:.2f} of a core")
    if rows:
        print("\nEvery scenario:")
        widths = [w for _, w in COLUMNS]
        print("rate   " + _line([name for name, _ in COLUMNS], widths))
        for rate, row in rows:
            print(f"{rate:<6g} " + _line(format_row(row), widths))
            for error in row.errors:
                print(f"         {row.design} N={row.clients}: {error}")


def _cpu_parts(row: Row) -> str:
    """Every party's CPU, in % of one core: each backend, the fake, the clients, the peers, the rest."""
    backends = "+".join(f"{pct:.0f}" for pct in row.backend_pcts) or f"{row.backend_pct:.0f}"
    peers = "".join(f" {name} {pct:.0f}," for name, pct in row.peer_pct.items())
    total = row.backend_pct + row.bench_pct + row.client_pct + sum(row.peer_pct.values()) + row.other_pct
    return (
        f"backends {backends}, fake {row.bench_pct:.0f}, clients {row.client_pct:.0f},{peers} rest"
        f" {row.other_pct:.0f}; machine {total:.0f} of {(os.cpu_count() or 1) * 100}"
    )


def bound(row: Row, rate: float) -> str:
    """What limited a scenario, read from its CPU figures."""
    if not missed(row, rate):
        return "nothing it reached: it kept pace"
    cores = (os.cpu_count() or 1) * 100
    total = row.backend_pct + row.bench_pct + row.client_pct + sum(row.peer_pct.values()) + row.other_pct
    busiest = max(row.backend_pcts or (row.backend_pct,))
    if total >= 0.9 * cores:
        parties = {
            "backends": row.backend_pct,
            "the fake": row.bench_pct,
            "the clients": row.client_pct,
            **row.peer_pct,
            "the rest": row.other_pct,
        }
        shares = ", ".join(f"{name} {pct / total:.0%}" for name, pct in sorted(parties.items(), key=lambda p: -p[1]))
        return f"the machine's {cores // 100} cores ({shares})"
    if busiest >= 90:
        return f"a backend's core ({busiest:.0f}% of one core: one Python process)"
    return "nothing saturated: " + ("; ".join(row.errors) or "see the CPU figures")


def print_redis(rows: list[Row], args) -> None:
    if not rows:
        return
    rate, (clients,) = point(args.redis)
    print(f"\nOne worker, Redis off / on / on with REFLEX_OPLOCK_ENABLED=true, at {rate:g} tok/s, N={clients}:")
    names = ["design", "done", "shown tok/s", "1st ms p50/p99", "lag ms p99", "gap ms max", "cpu/1k", "redis %"]
    widths = [12, 7, 11, 14, 10, 10, 6, 7]
    print(_line(names, widths) + "  CPU % of one core")
    for row in rows:
        print(_line([*_one_worker_cells(row), f"{row.peer_pct.get('redis', 0):.0f}"], widths) + "  " + _cpu_parts(row))


def _one_worker_cells(row: Row) -> list[str]:
    """design, done, shown tok/s, 1st ms p50/p99, lag ms p99, gap ms max, cpu/1k."""
    return [
        row.design,
        f"{row.done}/{row.clients}",
        f"{row.shown_rate or 0:,.0f}",
        f"{_num(row.first_p50)}/{_num(row.first_p99)}",
        _num(row.lag_p99),
        _num(row.gap_max),
        f"{row.cpu_per_1k:.3f}" if row.cpu_per_1k is not None else "-",
    ]


def run_waiting(runner: Runner, args) -> list[Row]:
    """One worker at RATE:N, alone then beside the waiting replies, --waiting-runs times over (alone, beside, ...)."""
    rate, (clients,) = point(args.waiting)
    mcp = FakeMcpServer().start()
    try:
        tool_s = max(10.0, args.ramp_s + args.tokens / rate + args.slack)  # outlasts the scenario
        env = {
            "CHATBOT_API_KEYS": WAITING_KEY,
            "CHATBOT_TOOL_MODELS": "fake-large",
            "CHATBOT_MCP_SERVERS": json.dumps([{"name": "facts", "url": mcp.url}]),
            "CHATBOT_MCP_ALLOW_PRIVATE": "true",
            "CHATBOT_MAX_ACTIVE_REPLIES": str(clients + args.waiting_replies + 8),
        }
        waiting = {"replies": args.waiting_replies, "tool_s": tool_s}
        alone = Design("alone", args.frame_ms, parser="raw")
        beside = Design(f"+{args.waiting_replies} waiting", args.frame_ms, parser="raw")
        rows = []
        for _ in range(args.waiting_runs):
            rows.append(runner.run(alone, rate, clients, env))
            rows.append(runner.run(beside, rate, clients, env, waiting=waiting))
        return rows
    finally:
        mcp.stop()


def print_waiting(rows: list[Row], args) -> None:
    if not rows:
        return
    rate, (clients,) = point(args.waiting)
    print(f"\nOne worker at {rate:g} tok/s, N={clients}: alone, and beside {args.waiting_replies} waiting on a tool:")
    names = ["design", "done", "shown tok/s", "1st ms p50/p99", "lag ms p99", "gap ms max", "cpu/1k", "errors"]
    widths = [12, 7, 11, 14, 10, 10, 6, 30]
    print(_line(names, widths))
    for row in rows:
        print(_line([*_one_worker_cells(row), "; ".join(row.errors) or "none"], widths))


def most_shown(clients: int, rate: float, args) -> float:
    """Tokens/s a topology that keeps up would show: every token of N replies over the ramp plus one reply's
    time. A ratio between two topologies that both come near it measures the load, not their capacity."""
    return clients * args.tokens / (args.ramp_s + args.tokens / rate)


def print_prod(points: list[tuple[int, list[Row]]], args) -> None:
    if not points:
        return
    rate, _ = point(args.prod)
    print(
        f"\nmake prod (nginx, backends sharing Redis and PostgreSQL) against one worker (SQLite, no Redis),"
        f" {rate:g} tok/s per stream, {args.tokens} tokens:"
    )
    names = ["N", "design", "done", "at most", "shown tok/s", "x 1 worker", "lag ms p99", "gap ms max", "kept"]
    widths = [4, 11, 7, 11, 11, 10, 10, 10, 4]
    print(_line(names, widths) + "  CPU % of one core")
    for clients, rows in points:
        base = rows[0].shown_rate
        for row in rows:
            ratio = f"{row.shown_rate / base:.2f}x" if base and row.shown_rate else "-"
            kept = "yes" if not missed(row, rate) else "no"
            cells = [str(clients), row.design, f"{row.done}/{row.clients}", f"{most_shown(clients, rate, args):,.0f}"]
            cells += [f"{row.shown_rate or 0:,.0f}", ratio]
            print(_line([*cells, _num(row.lag_p99), _num(row.gap_max), kept], widths) + "  " + _cpu_parts(row))
        for row in rows:
            print(f"     {row.design} at N={clients} is bounded by {bound(row, rate)}")


def _md(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _ms_pair(a: float | None, b: float | None) -> str:
    return f"{_num(a)}/{_num(b)} ms"


def _cpu1k(row: Row) -> str:
    return f"{row.cpu_per_1k:.3f} s" if row.cpu_per_1k is not None else "-"


def print_markdown(
    capacity: list[tuple[float, int, Row | None, str]],
    compared: list[Row],
    redis_rows: list[Row],
    points: list[tuple[int, list[Row]]],
    args,
) -> None:
    """The same figures as Markdown tables, for docs/performance.md."""
    print("\nAs Markdown:")
    if capacity:
        names = ["tokens/s per stream", "streams kept", "first frame p50/p99", "lag p99", "largest gap"]
        names += ["backend CPU per 1,000 tokens", "CPU, % of a core: backend / fake / clients", "first miss"]
        print("\n" + _md(names))
        print(_md(["---"] * len(names)))
        for rate, kept, row, failed in capacity:
            if row is None:
                print(_md([f"{rate:,.0f}", str(kept), *["-"] * 5, failed]))
                continue
            cells = [f"{rate:,.0f}", f">= {kept}" if not failed else str(kept)]
            cells += [_ms_pair(row.first_p50, row.first_p99), f"{_num(row.lag_p99)} ms", f"{_num(row.gap_max)} ms"]
            cells += [_cpu1k(row), f"{row.backend_pct:.0f} / {row.bench_pct:.0f} / {row.client_pct:.0f}"]
            print(_md([*cells, failed or "none tried"]))
    if compared:
        print(f"\nAt {args.compare.replace(':', ' tokens/s, N=')}:\n")
        names = ["parser + pacing", "replies ended", "frames/s per stream", "lag p99", "largest gap"]
        print(_md([*names, "backend CPU per 1,000 tokens"]))
        print(_md(["---"] * 6))
        for row in compared:
            cells = [row.design, f"{row.done}/{row.clients}", f"{row.fps or 0:.1f}", f"{_num(row.lag_p99)} ms"]
            print(_md([*cells, f"{_num(row.gap_max)} ms", _cpu1k(row)]))
    if redis_rows:
        print(f"\nOne worker at {args.redis.replace(':', ' tokens/s, N=')}:\n")
        names = ["state and reply log", "tokens/s shown", "first frame p50/p99", "lag p99", "largest gap"]
        print(_md([*names, "backend CPU per 1,000 tokens", "Redis CPU"]))
        print(_md(["---"] * 7))
        for row in redis_rows:
            cells = [row.design, f"{row.shown_rate or 0:,.0f}", _ms_pair(row.first_p50, row.first_p99)]
            cells += [f"{_num(row.lag_p99)} ms", f"{_num(row.gap_max)} ms", _cpu1k(row)]
            print(_md([*cells, f"{row.peer_pct.get('redis', 0):.0f}%"]))
    if points:
        rate, _ = point(args.prod)
        print(f"\n{rate:,.0f} tokens/s per stream:\n")
        names = ["streams", "topology", "replies ended", "most tokens/s", "tokens/s delivered", "ratio to one worker"]
        print(_md([*names, "lag p99", "CPU, % of a core"]))
        print(_md(["---"] * 8))
        for clients, rows in points:
            base = rows[0].shown_rate
            for row in rows:
                ratio = f"{row.shown_rate / base:.2f}" if base and row.shown_rate else "-"
                cells = [
                    str(clients),
                    row.design,
                    f"{row.done}/{row.clients}",
                    f"{most_shown(clients, rate, args):,.0f}",
                ]
                cells += [f"{row.shown_rate or 0:,.0f}", ratio]
                print(_md([*cells, f"{_num(row.lag_p99)} ms", _cpu_parts(row)]))


def cost_model(rows: list[Row]) -> tuple[float, float] | None:
    """(CPU s per frame, CPU s per token) fitted to backend core use = a x frames/s + b x tokens/s."""
    points = [
        ((r.fps or 0) * r.clients, r.shown_rate or 0, r.backend_pct / 100) for r in rows if r.fps and r.shown_rate
    ]
    xx = sum(f * f for f, _, _ in points)
    xy = sum(f * t for f, t, _ in points)
    yy = sum(t * t for _, t, _ in points)
    xc = sum(f * c for f, _, c in points)
    yc = sum(t * c for _, t, c in points)
    det = xx * yy - xy * xy
    if len(points) < 2 or det <= 0:
        return None
    return (xc * yy - yc * xy) / det, (yc * xx - xc * xy) / det


def _num(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.0f}"


if __name__ == "__main__":
    main()
