"""Streaming under load: N concurrent chats over real websockets, coalesced frames vs the naive baseline.

For each design and each N in --clients, a fresh production backend (`reflex run --backend-only
--env prod`: one worker process, as the app runs without Redis) is started against the fake Groq
server, which streams every reply as --tokens word tokens at --rate tokens/s. N websocket clients
(tests/e2e/reflex_client.py: Socket.IO over one websocket, as the browser's state.js speaks it) each
connect with a new tab token and hydrate; then all send `ReplyState.send_message` at once, each
starting its own new conversation, and follow the redirect to it as the browser does. One warm-up
chat runs first, so one-time costs stay out. After --timeout the scenario ends whatever is left,
and the backend is killed. The app's own limits apply as shipped (CHATBOT_MAX_ACTIVE_REPLIES and
CHATBOT_MAX_WAITING_REPLIES): replies it refuses are listed under the table. The abuse limits
(per address, new identities per hour) are raised: every client comes from one loopback address.

Designs:
  coalesced  the app as shipped: the reply goes out in frames at most every CHATBOT_FRAME_MS
             (--frame-ms, else the app's default), the first at once, each frame carrying only
             the newest of the reply's parts (chatbot_app/state/stream_parts.py);
  naive      the same app with CHATBOT_FRAME_MS=0 and CHATBOT_STREAM_PARTS=1: every arrival from
             upstream is flushed as its own frame carrying the whole text so far (what Reflex's
             own chat example does).

The columns (p50/p99 are across the N chats of one scenario):
  done         replies that ended (`streaming` flipped off, the reply appended) within --timeout;
  up tok/s     the rate the fake upstream achieved per stream (tokens over first..last token), p50;
               below --rate, the backend was not reading its streams fast enough (or the fake, in
               this process, ran out of CPU: see fk %); the socket buffers on loopback hold a whole
               reply, so the fake keeps its pace even while the backend falls behind reading;
  up conc      the most upstream streams in flight at once (fewer than N when the backend is too
               busy to start every request together);
  shown tok/s  reply tokens the clients were shown, all clients together, per second of the window;
  1st ms       the client's receipt of the first frame holding reply text, minus the fake's time of
               its first token (the fake's first token is empty, so this includes 1/--rate);
  bytes x      websocket bytes received from sending the message until the reply ended (payload plus
               frame header of every frame: stream frames, the final `messages` frame, the redirect's
               and sidebar's updates) over the bytes of reply text shown: for a finished reply, the
               whole reply;
  fps          stream frames per second per client, from the first text frame to the end;
  gap ms       the largest gap between consecutive frames while text flowed (p50 and max);
  lag ms       the client's end frame minus the fake's last token;
  cpu/1k       backend CPU seconds (utime+stime of its process tree, /proc/<pid>/stat) per 1,000
               reply tokens shown;
  be/fk/cl/oth CPU used during the window, in % of one core: the backend tree, this process (whose
               thread runs the fake upstream), the client process, and everything else on the machine
               (/proc/stat), since the machine may be shared;
  rss MB       peak resident memory of the backend tree: VmHWM summed over its processes.
The window runs from sending the messages until every reply ended or the timeout. A design "falls
behind" at the first N where a reply did not end in time, ended over 1 s after the upstream's last
token (p99), or the upstream streams slowed below 90% of --rate; the verdict under the table says
which, and how busy the backend and the machine were.

All times are time.monotonic(), i.e. CLOCK_MONOTONIC, one clock for every process on the machine:
the fake runs in this process and the clients in a child process, so the clients' event loop is
not slowed by the fake's thread holding this process's GIL.

    .venv/bin/python bench/stream_bench.py [--clients 1,10,50,100] [--tokens 4000] [--rate 1000]
    .venv/bin/python bench/stream_bench.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import collections
import contextlib
import gc
import importlib.metadata
import itertools
import logging
import math
import multiprocessing
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from app_names import IDENTITY, MAX_TOKENS, SEND_MESSAGE, STREAM_PARTS, STREAMING, changed_messages
from reflex.state import OnLoadInternalState, State, UpdateVarsInternalState

from chatbot_app.config import Settings
from tests.conftest import TEST_API_KEY, migrate
from tests.e2e.live_app import Backend, app_environment, free_port
from tests.e2e.reflex_client import ON_LOAD_INTERNAL, ROOT_STATE, UPDATE_VARS_INTERNAL, ReflexClient
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer, reply_tokens

REFLEX_VERSION = importlib.metadata.version("reflex")
#: The app's abuse limits (per address, new identities), raised: N tabs from one loopback address are not abuse.
LIMITS_RAISED = {
    "CHATBOT_ADDRESS_RATE_LIMIT_PER_MINUTE": "1000000",
    "CHATBOT_NEW_IDENTITIES_PER_HOUR": "1000000",
    "CHATBOT_RATE_LIMIT_PER_MINUTE": "1000000",
}
CLOCK_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Design:
    name: str
    frame_ms: int | None  # CHATBOT_FRAME_MS; None leaves the app's default
    stream_parts: int | None = None  # CHATBOT_STREAM_PARTS; None leaves the app's default
    frames_per_s: int | None = None  # CHATBOT_FRAMES_PER_S (0: fixed interval); None leaves the app's default
    parser: str | None = None  # CHATBOT_STREAM_PARSER (raw or sdk); None leaves the app's default
    transport: str | None = None  # CHATBOT_HTTP_TRANSPORT (aiohttp or httpx); None leaves the app's default

    def environment(self) -> dict[str, str]:
        """The backend's settings for this design (only those it sets)."""
        names = {
            "CHATBOT_FRAME_MS": self.frame_ms,
            "CHATBOT_STREAM_PARTS": self.stream_parts,
            "CHATBOT_FRAMES_PER_S": self.frames_per_s,
            "CHATBOT_STREAM_PARSER": self.parser,
            "CHATBOT_HTTP_TRANSPORT": self.transport,
        }
        return {name: str(value) for name, value in names.items() if value is not None}


# -- process accounting (/proc) ------------------------------------------------------------


def session_pids(session_id: int) -> list[int]:
    """Live processes of a session: the backend runs in its own (Backend uses start_new_session)."""
    return Watched(sessions=(session_id,)).pids()


@dataclass(frozen=True)
class Watched:
    """Processes whose CPU a scenario reports: whole sessions (a child started with start_new_session,
    with its workers), and processes by command name (peers started outside the bench: redis-server)."""

    sessions: tuple[int, ...] = ()
    commands: tuple[str, ...] = ()

    def pids(self) -> list[int]:
        pids = []
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    text = Path(f"/proc/{entry.name}/stat").read_text()
                    command = text[text.index("(") + 1 : text.rindex(")")]
                    session = int(text[text.rindex(")") + 2 :].split()[3])
                    if session in self.sessions or command in self.commands:
                        pids.append(int(entry.name))
        return pids


def _stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat from field 3 on (after the parenthesised command name)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of these processes (all their threads)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = _stat_fields(pid)
            total += int(fields[11]) + int(fields[12])
    return total * CLOCK_TICK_S


def machine_busy_seconds() -> float:
    """CPU time the whole machine spent busy (all CPUs, everything but idle and iowait), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) * CLOCK_TICK_S


def peak_rss_mb(pids: Sequence[int]) -> float:
    """VmHWM (peak resident set) summed over these processes."""
    total_kb = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total_kb += int(line.split()[1])
    return total_kb / 1024


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds consumed so far by each party, and by the whole machine.

    `backends` has one figure per backend process tree (one, unless a proxy spreads the load);
    `peers` has one per named peer (nginx, redis, postgres), when the scenario runs with them.
    """

    at: float
    backends: tuple[float, ...]
    bench: float
    client: float
    machine: float
    peers: tuple[tuple[str, float], ...] = ()

    @property
    def backend(self) -> float:
        return sum(self.backends)

    @classmethod
    def take(
        cls, backends: Sequence[Sequence[int]], bench_pid: int, peers: dict[str, Sequence[int]] | None = None
    ) -> CpuSample:
        return cls(
            time.monotonic(),
            tuple(cpu_seconds(pids) for pids in backends),
            cpu_seconds([bench_pid]),
            cpu_seconds([os.getpid()]),
            machine_busy_seconds(),
            tuple((name, cpu_seconds(pids)) for name, pids in (peers or {}).items()),
        )

    def __sub__(self, other: CpuSample) -> CpuSample:
        before = dict(other.peers)
        return CpuSample(
            self.at - other.at,
            tuple(a - b for a, b in zip(self.backends, other.backends, strict=True)),
            self.bench - other.bench,
            self.client - other.client,
            self.machine - other.machine,
            tuple((name, seconds - before.get(name, 0.0)) for name, seconds in self.peers),
        )


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No garbage collection in this process while a scenario is measured; one right after.

    For the rig's own processes (the fake upstream's, the clients'), not the app's: a full collection
    there took up to 140 ms, which held back every stream's tokens (or frames) and showed as the app's gap.
    """
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


# -- the clients (run in a child process) ------------------------------------------------------


@dataclass
class ClientRecord:
    """What one chat's client saw, in monotonic seconds and bytes."""

    message: str
    error: str = ""
    sent_at: float | None = None
    first_text_at: float | None = None
    end_at: float | None = None
    stream_frames: list[float] = field(default_factory=list)
    reply_wire_bytes: int = 0
    text_chars: int = 0  # the longest reply text shown
    status: str = ""


@dataclass
class ClientRun:
    records: list[ClientRecord]
    cpu: CpuSample  # over the window from sending the messages until every reply ended (or the timeout)
    compression: str


class ChatTracker:
    """Follows one chat's updates: the frames that carry the streamed text, and the one that ends it."""

    def __init__(self, record: ClientRecord) -> None:
        self.record = record
        self.done = asyncio.Event()
        self._streaming_seen = False
        self.max_tokens: int | None = None  # what the tab's next message asks for, once its settings loaded
        self.settings_loaded = asyncio.Event()
        self._parts: dict[tuple[str, str], str] = {}  # the streamed reply's parts, as the browser holds them

    def on_update(self, at: float, size: int, update: dict[str, Any]) -> None:
        record = self.record
        if (max_tokens := ((update.get("delta") or {}).get(MAX_TOKENS[0]) or {}).get(MAX_TOKENS[1])) is not None:
            self.max_tokens = int(max_tokens)
            self.settings_loaded.set()
        if record.sent_at is None or record.end_at is not None:
            return
        record.reply_wire_bytes += size
        delta = update.get("delta") or {}
        if not delta:
            return
        parts = {(state, var): delta[state][var] for state, var in STREAM_PARTS if var in delta.get(state, ())}
        self._parts.update(parts)
        if any(parts.values()):
            record.first_text_at = record.first_text_at or at
            record.stream_frames.append(at)
            record.text_chars = max(record.text_chars, sum(len(v) for v in self._parts.values()))
        streaming = (delta.get(STREAMING[0]) or {}).get(STREAMING[1])
        if streaming is True:
            self._streaming_seen = True
        elif streaming is False and self._streaming_seen:
            messages = changed_messages(delta)
            if messages and messages[-1].get("role") == "assistant":
                record.text_chars = max(record.text_chars, len(messages[-1].get("content") or ""))
                record.status = str(messages[-1].get("status", ""))
                if record.status != "complete":
                    record.status += f" ({messages[-1].get('error') or messages[-1].get('details') or 'no detail'})"
            if record.text_chars:
                record.first_text_at = record.first_text_at or at
            record.end_at = at
            self.done.set()


def run_clients(
    backend_url: str,
    backends: Sequence[Watched],
    bench_pid: int,
    clients: int,
    timeout_s: float,
    peers: dict[str, Watched] | None = None,
    ramp_s: float = 0.0,
) -> ClientRun:
    """In the client process: drive one scenario's chats and measure the CPU window around them."""
    return asyncio.run(_drive(backend_url, backends, bench_pid, clients, timeout_s, peers or {}, ramp_s))


async def _open(backend_url: str, tracker: ChatTracker | None = None) -> ReflexClient:
    client = ReflexClient(
        backend_url,
        REFLEX_VERSION,
        synced_storage=frozenset({IDENTITY}),
        on_update=tracker.on_update if tracker else None,
    )
    try:
        await client.connect()
        await asyncio.wait_for(client.hydrated.wait(), 60)
    except BaseException:
        await client.close()
        raise
    return client


async def _chat(client: ReflexClient, tracker: ChatTracker, delay_s: float = 0.0) -> None:
    await asyncio.sleep(delay_s)  # the arrival schedule (--ramp-s), not a wait for a condition
    tracker.record.sent_at = time.monotonic()
    await client.emit(SEND_MESSAGE, {"form_data": {"message": tracker.record.message}})
    await tracker.done.wait()


async def _drive(
    backend_url: str,
    backends: Sequence[Watched],
    bench_pid: int,
    clients: int,
    timeout_s: float,
    peers: dict[str, Watched],
    ramp_s: float,
) -> ClientRun:
    warm = ChatTracker(ClientRecord("warm up"))
    client = await _open(backend_url, warm)
    await asyncio.wait_for(_chat(client, warm), 60)
    await asyncio.sleep(0.5)  # its title and sidebar refresh
    await client.close()

    trackers = [ChatTracker(ClientRecord(f"stream bench chat {i}")) for i in range(clients)]
    opened = await asyncio.gather(*(_open(backend_url, t) for t in trackers), return_exceptions=True)
    connected: list[tuple[ReflexClient, ChatTracker]] = []
    for tracker, result in zip(trackers, opened, strict=True):
        if isinstance(result, BaseException):
            tracker.record.error = f"connect: {type(result).__name__}: {result}"
        else:
            connected.append((result, tracker))
    await asyncio.sleep(0.5)  # let the on_load events (sidebar, settings) finish
    # A message sent before the tab's settings load asks for the state's default length (1,024 tokens), not
    # CHATBOT_MAX_TOKENS: wait for the settings (bounded; a tab still without them is reported by its length).
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(t.settings_loaded.wait() for _, t in connected)), 60)

    backend_pids = [watched.pids() for watched in backends]
    peer_pids = {name: watched.pids() for name, watched in peers.items()}
    before = CpuSample.take(backend_pids, bench_pid, peer_pids)
    # Sent at once (ramp 0), or arriving evenly over ramp_s seconds as users do.
    spacing = ramp_s / len(connected) if connected else 0.0
    with collector_paused():
        chats = [asyncio.create_task(_chat(c, t, i * spacing)) for i, (c, t) in enumerate(connected)]
        if chats:
            await asyncio.wait(chats, timeout=timeout_s)
        cpu = CpuSample.take(backend_pids, bench_pid, peer_pids) - before
    for task in chats:
        task.cancel()
    compression = connected[0][0].compression if connected else ""
    await asyncio.gather(*(c.close() for c, _ in connected), return_exceptions=True)
    return ClientRun([t.record for t in trackers], cpu, compression)


# -- one scenario ------------------------------------------------------------------------------


@dataclass
class Row:
    """One design and N: the figures printed in the table (seconds, or None where nothing was measured)."""

    design: str
    clients: int
    done: int = 0
    upstream_rate: float | None = None
    upstream_peak: int = 0
    shown_rate: float | None = None
    first_p50: float | None = None
    first_p99: float | None = None
    bytes_ratio: float | None = None
    fps: float | None = None
    gap_p50: float | None = None
    gap_max: float | None = None
    lag_p50: float | None = None
    lag_p99: float | None = None
    cpu_per_1k: float | None = None
    backend_pct: float = 0.0
    bench_pct: float = 0.0
    client_pct: float = 0.0
    other_pct: float = 0.0
    rss_mb: float = 0.0
    backend_pcts: tuple[float, ...] = ()  # per backend process tree, when there are several
    peer_pct: dict[str, float] = field(default_factory=dict)  # nginx, redis, postgres, when they run
    errors: list[str] = field(default_factory=list)


def quantile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank quantile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def peak_overlap(intervals: Sequence[tuple[float, float]]) -> int:
    """The most intervals that overlap at any moment."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    return max(itertools.accumulate(step for _, step in edges), default=0)


@dataclass
class Bench:
    """The fixed parts of a run: the fake upstream, the database, the client process."""

    fake: FakeLLMServer
    behaviour: Behaviour
    database_url: str
    workdir: Path
    pool: ProcessPoolExecutor
    timeout_s: float
    token_ends: list[int]  # cumulative reply length after each token, to count the tokens shown
    compression: str = ""
    environment: dict[str, str] = field(default_factory=dict)  # more backend settings, for every design
    ramp_s: float = 0.0  # the N messages are sent evenly over this many seconds (0: all at once)

    def scenario(self, design: Design, clients: int) -> Row:
        """A fresh backend of this design, N chats through it, then the backend is killed."""
        self.fake.reset()
        self.fake.default = self.behaviour
        self.fake.enqueue(Behaviour(text="Warm up reply."))
        overrides = design.environment()
        env = app_environment(
            CHATBOT_DATABASE_URL=self.database_url,
            GROQ_API_KEY=TEST_API_KEY,
            GROQ_BASE_URL=self.fake.base_url,
            CHATBOT_MODEL="fake-large",
            CHATBOT_LOCAL_MODEL="off",
            CHATBOT_MAX_TOKENS=str(len(self.token_ends)),
            **self.environment,
            **overrides,
        )
        try:
            with self.serve(env, f"{design.name}-{clients}") as (url, backends, peers):
                future = self.pool.submit(
                    run_clients, url, backends, os.getpid(), clients, self.timeout_s, peers, self.ramp_s
                )
                try:
                    with collector_paused():  # this process runs the fake upstream
                        run = future.result(timeout=self.timeout_s + 300)
                except Exception as exc:
                    return Row(design.name, clients, errors=[f"client process: {type(exc).__name__}: {exc}"])
                rss = sum(peak_rss_mb(watched.pids()) for watched in backends)
                self.compression = run.compression or self.compression
        finally:
            self._wait_for_upstream_idle()
        return self._row(design, clients, run, rss)

    @contextlib.contextmanager
    def serve(self, env: dict[str, str], label: str) -> Iterator[tuple[str, list[Watched], dict[str, Watched]]]:
        """One backend process for a scenario: (its URL, its process tree, the peers it uses); killed after."""
        backend = Backend(free_port(), env, self.workdir / f"backend-{label}.log")
        backend.start()
        try:
            assert backend.process is not None
            peers = {"redis": Watched(commands=("redis-server",))} if env.get("REFLEX_REDIS_URL") else {}
            yield backend.url, [Watched(sessions=(backend.process.pid,))], peers
        finally:
            backend.stop(signal.SIGKILL)  # measured already: no need to wait for in-flight replies

    def _wait_for_upstream_idle(self, timeout_s: float = 30.0) -> None:
        """Let streams the killed backend left behind run out, so they do not load the next scenario."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            streamed = {n for n, r in enumerate(self.fake.requests, start=1) if r.body.get("stream")}
            if streamed <= set(self.fake.token_times) | set(self.fake.aborted):
                return
            time.sleep(0.1)

    def _row(self, design: Design, clients: int, run: ClientRun, rss_mb: float) -> Row:
        streams: dict[str, int] = {}
        for number, request in enumerate(self.fake.requests, start=1):
            users = [m for m in request.body.get("messages", []) if m.get("role") == "user"]
            if request.body.get("stream") and users:
                streams[str(users[-1].get("content"))] = number
        tokens = len(self.token_ends)
        first, lag, ratio, fps, gaps, rates = [], [], [], [], [], []
        tokens_shown = 0
        for record in run.records:
            tokens_shown += bisect.bisect_right(self.token_ends, record.text_chars)
            times = self.fake.token_times.get(streams.get(record.message, -1))
            if times is not None and times[1] > times[0]:
                rates.append((tokens - 1) / (times[1] - times[0]))
            if record.first_text_at is None:
                continue
            if times is not None:
                first.append(record.first_text_at - times[0])
                if record.end_at is not None:
                    lag.append(record.end_at - times[1])
            if record.text_chars:
                ratio.append(record.reply_wire_bytes / record.text_chars)
            flowing = [*record.stream_frames, *([record.end_at] if record.end_at is not None else [])]
            if (span := flowing[-1] - record.first_text_at) > 0:
                fps.append(len(record.stream_frames) / span)
            gaps.append(max((b - a for a, b in itertools.pairwise(flowing)), default=0.0))
        errors = sorted({r.error for r in run.records if r.error})
        failed = collections.Counter(r.status for r in run.records if r.status and r.status != "complete")
        errors += [f"{count} replies ended with status {status}" for status, count in sorted(failed.items())]
        short = {bisect.bisect_right(self.token_ends, r.text_chars) for r in run.records if r.end_at is not None}
        errors += [f"a reply ended with {n} of {tokens} tokens" for n in sorted(short) if n != tokens]
        cpu, pct = run.cpu, 100 / max(run.cpu.at, 1e-9)
        return Row(
            design=design.name,
            clients=clients,
            done=sum(r.end_at is not None for r in run.records),
            upstream_rate=quantile(rates, 0.5),
            upstream_peak=peak_overlap(
                [self.fake.token_times[n] for n in streams.values() if n in self.fake.token_times]
            ),
            shown_rate=tokens_shown / max(cpu.at, 1e-9),
            first_p50=quantile(first, 0.5),
            first_p99=quantile(first, 0.99),
            bytes_ratio=quantile(ratio, 0.5),
            fps=quantile(fps, 0.5),
            gap_p50=quantile(gaps, 0.5),
            gap_max=max(gaps, default=None),
            lag_p50=quantile(lag, 0.5),
            lag_p99=quantile(lag, 0.99),
            cpu_per_1k=cpu.backend / (tokens_shown / 1000) if tokens_shown else None,
            backend_pct=cpu.backend * pct,
            bench_pct=cpu.bench * pct,
            client_pct=cpu.client * pct,
            other_pct=max(0.0, cpu.machine - cpu.backend - cpu.bench - cpu.client - sum(s for _, s in cpu.peers)) * pct,
            rss_mb=rss_mb,
            backend_pcts=tuple(seconds * pct for seconds in cpu.backends),
            peer_pct={name: seconds * pct for name, seconds in cpu.peers},
            errors=errors,
        )


# -- output ------------------------------------------------------------------------------------

COLUMNS = [
    ("design", 9),
    ("N", 4),
    ("done", 7),
    ("up tok/s", 8),
    ("up conc", 7),
    ("shown tok/s", 11),
    ("1st ms p50/p99", 15),
    ("bytes x", 7),
    ("fps", 5),
    ("gap ms p50/max", 15),
    ("lag ms p50/p99", 15),
    ("cpu/1k", 6),
    ("be/fk/cl/oth %", 15),
    ("rss MB", 6),
]


def _num(value: float | None, scale: float = 1.0, digits: int = 0) -> str:
    return "-" if value is None else f"{value * scale:,.{digits}f}"


def _pair(a: float | None, b: float | None, scale: float = 1000.0) -> str:
    return f"{_num(a, scale)}/{_num(b, scale)}"


def format_row(row: Row) -> list[str]:
    return [
        row.design,
        str(row.clients),
        f"{row.done}/{row.clients}",
        _num(row.upstream_rate),
        str(row.upstream_peak),
        _num(row.shown_rate),
        _pair(row.first_p50, row.first_p99),
        _num(row.bytes_ratio, digits=1),
        _num(row.fps, digits=1),
        _pair(row.gap_p50, row.gap_max),
        _pair(row.lag_p50, row.lag_p99),
        _num(row.cpu_per_1k, digits=2),
        f"{row.backend_pct:.0f}/{row.bench_pct:.0f}/{row.client_pct:.0f}/{row.other_pct:.0f}",
        _num(row.rss_mb),
    ]


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(
        cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
    )


def _ratio(naive: float | None, coalesced: float | None) -> str:
    if naive is None or coalesced is None or coalesced == 0:
        return "-"
    return f"{naive / coalesced:.2g}x"


def print_table(rows: list[Row]) -> None:
    widths = [w for _, w in COLUMNS]
    print(_line([name for name, _ in COLUMNS], widths))
    print(_line(["-" * w for w in widths], widths))
    for row in rows:
        print(_line(format_row(row), widths))
    by_key = {(r.design, r.clients): r for r in rows}
    pairs = [(by_key.get(("naive", n)), by_key.get(("coalesced", n))) for n in dict.fromkeys(r.clients for r in rows)]
    if any(naive and coalesced for naive, coalesced in pairs):
        names = ["N", "shown tok/s", "1st p50", "bytes x", "fps", "lag p50", "cpu/1k", "rss"]
        ratio_widths = [4, 11, 7, 7, 5, 7, 6, 5]
        print("\nbaseline ratio, naive ÷ coalesced at the same N:")
        print(_line(names, ratio_widths))
        for naive, coalesced in pairs:
            if naive is None or coalesced is None:
                continue
            cells = [
                str(naive.clients),
                _ratio(naive.shown_rate, coalesced.shown_rate),
                _ratio(naive.first_p50, coalesced.first_p50),
                _ratio(naive.bytes_ratio, coalesced.bytes_ratio),
                _ratio(naive.fps, coalesced.fps),
                _ratio(naive.lag_p50, coalesced.lag_p50),
                _ratio(naive.cpu_per_1k, coalesced.cpu_per_1k),
                _ratio(naive.rss_mb, coalesced.rss_mb),
            ]
            print(_line(cells, ratio_widths))
    for row in rows:
        for error in row.errors:
            print(f"  {row.design} N={row.clients}: {error}")


def verdicts(rows: list[Row], rate: float) -> Iterator[str]:
    """Per design, the first N that did not keep pace, and what was saturated there."""
    cores = os.cpu_count() or 1
    for design in dict.fromkeys(r.design for r in rows):
        verdict = f"{design}: kept pace at every N measured"
        for row in (r for r in rows if r.design == design):
            reasons = []
            if row.done < row.clients:
                reasons.append(f"{row.done}/{row.clients} replies ended within the timeout")
            if row.lag_p99 is not None and row.lag_p99 > 1.0:
                reasons.append(f"replies ended up to {row.lag_p99:.1f} s (p99) after the upstream's last token")
            if row.upstream_rate is not None and row.upstream_rate < 0.9 * rate:
                reasons.append(f"upstream streams slowed to {row.upstream_rate:,.0f} tok/s (p50)")
            if not reasons:
                continue
            load = row.backend_pct + row.bench_pct + row.client_pct + row.other_pct
            verdict = (
                f"{design}: falls behind at N={row.clients} ({'; '.join(reasons)}); clients were shown "
                f"{_num(row.shown_rate)} tok/s in all against {row.clients * rate:,.0f} asked; backend at "
                f"{row.backend_pct:.0f}% of one core (one worker process), machine at {load:.0f}% of {cores * 100}%"
            )
            break
        yield verdict


# -- main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="1,10,50,100", help="comma-separated concurrent chat counts")
    parser.add_argument("--tokens", type=int, default=4000, help="tokens per reply")
    parser.add_argument("--rate", type=float, default=1000.0, help="upstream tokens per second, per stream")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds each scenario's replies may take")
    parser.add_argument("--frame-ms", type=int, default=None, help="CHATBOT_FRAME_MS for the coalesced design")
    parser.add_argument("--designs", default="coalesced,naive", help="which designs to run")
    parser.add_argument("--quick", action="store_true", help="a small run: --clients 1,5 --tokens 500 --timeout 30")
    args = parser.parse_args()
    if args.quick:
        args.clients, args.tokens, args.timeout = "1,5", 500, 30.0
    client_counts = [int(n) for n in args.clients.split(",") if n.strip()]
    known = {"coalesced": Design("coalesced", args.frame_ms), "naive": Design("naive", 0, stream_parts=1)}
    designs = [known[name.strip()] for name in args.designs.split(",") if name.strip()]

    for expected, actual in [
        (ROOT_STATE, State.get_full_name()),
        (ON_LOAD_INTERNAL, f"{OnLoadInternalState.get_full_name()}.on_load_internal"),
        (UPDATE_VARS_INTERNAL, f"{UpdateVarsInternalState.get_full_name()}.update_vars_internal"),
    ]:
        assert expected == actual, f"reflex_client names {expected}, Reflex has {actual}"

    behaviour = Behaviour(text="", tokens=args.tokens, tokens_per_s=args.rate)
    tokens = reply_tokens([], behaviour)
    token_ends = list(itertools.accumulate(len(t) for t in tokens))
    reply_bytes = len("".join(tokens).encode())
    frame_ms = args.frame_ms if args.frame_ms is not None else Settings.model_fields["frame_interval_ms"].default
    print(
        f"{args.tokens} tokens per reply ({reply_bytes:,} bytes) at {args.rate:g} tok/s per stream"
        f" ({args.tokens / args.rate:.1f} s upstream); coalesced frames every {frame_ms} ms; timeout"
        f" {args.timeout:g} s per scenario.\n{os.cpu_count()} CPUs shared by the backend, the fake upstream,"
        f" the clients and everything else; load average before the run: {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # the fake's writes to a killed backend
    fake = FakeLLMServer(default=behaviour).start()
    rows: list[Row] = []
    bench: Bench | None = None
    started = time.monotonic()
    spawn = multiprocessing.get_context("spawn")
    try:
        with tempfile.TemporaryDirectory() as tmp, ProcessPoolExecutor(1, mp_context=spawn) as pool:
            workdir = Path(tmp)
            database_url = f"sqlite:///{workdir / 'bench.db'}"
            migrate(database_url)
            bench = Bench(fake, behaviour, database_url, workdir, pool, args.timeout, token_ends)
            bench.environment = dict(LIMITS_RAISED)
            for design in designs:
                for clients in client_counts:
                    t0 = time.monotonic()
                    rows.append(bench.scenario(design, clients))
                    print(f"  ran {design.name} N={clients} in {time.monotonic() - t0:.0f} s", flush=True)
    finally:
        fake.stop()
        if rows:  # also what was measured before a failure or ^C
            print(f"\nwebsocket compression negotiated: {(bench and bench.compression) or 'none'}\n")
            print_table(rows)
            print()
            for verdict in verdicts(rows, args.rate):
                print(verdict)
            print(f"\ntotal {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
