"""Is the event loop free while hostile clients send the worst files the limits allow? And what does an export cost?

Part 1, the event loop. A production backend (`reflex run --backend-only --env prod`, accounts on, SQLite,
the fake Groq server in this process) serves a signed-in tab that streams one reply (--tokens word tokens
at --rate tokens/s), and a pinger that asks `/ping` every 50 ms. Meanwhile, in another process:

- the uploaders (--uploaders concurrent clients) post, back to back, requests of the worst files the
  limits allow: CHATBOT_MAX_ATTACHMENTS files, each a PDF at the page cap whose pages share one heavy
  content stream (it runs to the CPU budget) but for one 49-megapixel WebP (under the pixel cap, about
  1 s and 750 MB to decode); every other request is instead CHATBOT_MAX_IMPORT_BYTES of multi-byte
  UTF-8 text files (the most bytes the upload limit lets through, decoded in the backend process);
- a sign-up client creates accounts as fast as the sign-up throttle lets it (back to back while it
  admits them, then once a second), or at --signups-per-minute.

Scenarios: no load (the baseline); uploaders without a session (a tab on /login, cookie-less: the
handler refuses before reading); uploaders signed in (their files are decoded, in the file-check pool).
Printed per scenario: the tab's gaps between stream frames (max and p99), `/ping` latency (p50, p99,
max), and what the uploaders got. Goals: frame gaps <= 250 ms, `/ping` p99 <= 100 ms. The tab's clock
starts when its message is sent; the pinger's at each request.

Part 2, the export. A fresh backend holds --export-mib MiB of attachments (1 MiB files of random
bytes, 4 a conversation); a client downloads "everything" three times from a link as the page makes
one (GET /api/exports/<token>), reading as it arrives (or at --export-read-mib-per-s); the backend's
resident memory (VmRSS summed over its processes, sampled every 10 ms) is printed: each download's
peak growth over the level before it, and the peak over the level before the first.

    .venv/bin/python bench/event_loop_bench.py [--tokens 900] [--rate 36] [--uploaders 3]
    .venv/bin/python bench/event_loop_bench.py --skip loop --export-mib 160
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import itertools
import multiprocessing
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from app_names import SEND_MESSAGE
from bench_backend import bench_environment
from stream_bench import CLOCK_TICK_S, ChatTracker, ClientRecord, Watched, machine_busy_seconds

from chatbot_app.config import Settings
from chatbot_app.services.accounts import SESSION_COOKIE
from chatbot_app.services.attachments import MAX_PDF_PAGES, PreparedAttachment
from chatbot_app.services.export_links import ExportLinks, ExportTicket, export_url
from chatbot_app.state.attachments import ComposerFilesState
from chatbot_app.storage import conversations
from chatbot_app.storage.attachments import add_attachments
from chatbot_app.storage.database import make_engine, session_scope
from tests.conftest import migrate
from tests.e2e.live_app import Backend, free_port
from tests.e2e.reflex_client import ReflexClient
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer
from tests.fakes.sample_files import make_image, make_shared_stream_pdf

REFLEX_VERSION = importlib.metadata.version("reflex")
ADD_FILES = f"{ComposerFilesState.get_full_name()}.add_files"
REMOVE_FILE = f"{ComposerFilesState.get_full_name()}.remove_file"
PASSWORD = "a long benchmark password"
SECRET_KEY = "event-loop-bench-" + "k" * 32
PING_EVERY_S = 0.05
#: An uploader refused by the upload rate tries again after this long: the refusals cost the backend little,
#: but sending 20 MiB bodies into closed connections back to back costs this machine's (shared) CPU.
REFUSED_PAUSE_S = 1.0
GAP_GOAL_S, PING_P99_GOAL_S = 0.25, 0.1
#: The defaults the worst files are made for (the app's CHATBOT_MAX_ATTACHMENTS, CHATBOT_MAX_IMPORT_BYTES).
MAX_FILES = Settings.model_fields["max_attachments"].default
MAX_REQUEST_BYTES = Settings.model_fields["max_import_bytes"].default


# -- the worst files ----------------------------------------------------------------------------------


def worst_requests() -> list[list[tuple[str, bytes, str]]]:
    """The two request kinds an uploader alternates: CPU-heaviest files, and the most bytes of text."""
    pdf = make_shared_stream_pdf(pages=MAX_PDF_PAGES, operations=20_000)
    bomb = make_image(7000, 7000, "WEBP")
    heavy = [(f"attack-{n}.pdf", pdf, "application/pdf") for n in range(MAX_FILES - 1)]
    heavy.append(("pixels.webp", bomb, "image/webp"))
    text_file_bytes = (MAX_REQUEST_BYTES - 64 * 1024) // 2
    text = ("é€漢" * (text_file_bytes // 8)).encode()  # 2-, 3- and 3-byte characters: the slow UTF-8 path
    texts = [(f"big-{n}.txt", text, "text/plain") for n in range(2)]
    return [heavy, texts]


# -- the load, in a child process -------------------------------------------------------------------


@dataclass
class LoadReport:
    requests: int = 0
    files_kept: int = 0
    refusals: dict[str, int] = field(default_factory=dict)
    sent_to_sign_in: int = 0
    rate_limited: int = 0
    signups: int = 0
    signups_refused: int = 0
    signup_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    cpu_s: float = 0.0  # the load process's own CPU time (it shares the machine with the backend)


def run_load(
    backend_url: str, cookie: str | None, address: str, uploaders: int, signups_per_minute: float, stop: Any
) -> LoadReport:
    """In the load process: upload the worst files and sign up, until `stop` (a managed Event) is set.

    The requests come from `address` (X-Forwarded-For, the backend trusting this machine as nginx), the
    sign-ups from the address next to it: each scenario's clients are counted apart from the last one's.
    """
    started = time.process_time()
    report = asyncio.run(_load(backend_url, cookie, address, uploaders, signups_per_minute, stop))
    report.cpu_s = time.process_time() - started
    return report


async def _load(
    backend_url: str, cookie: str | None, address: str, uploaders: int, signups_per_minute: float, stop: Any
) -> LoadReport:
    report = LoadReport()
    requests = worst_requests()
    stopped = asyncio.Event()

    async def watch_stop() -> None:
        await asyncio.to_thread(stop.wait)  # the measuring process is done
        stopped.set()

    async def uploader(number: int) -> None:
        redirected = asyncio.Event()

        def on_update(_at: float, _size: int, update: dict[str, Any]) -> None:
            if any(e.get("name") == "_redirect" for e in update.get("events") or []):
                report.sent_to_sign_in += 1
                redirected.set()

        # Signed in, a tab holding the cookie; without a session, a cookie-less tab on the sign-in page.
        tab = ReflexClient(
            backend_url,
            REFLEX_VERSION,
            on_update=on_update,
            headers={"Cookie": cookie} if cookie else {},
            pathname="/" if cookie else "/login",
        )
        await tab.connect()
        try:
            kind = number
            while not stopped.is_set():
                files = requests[kind % len(requests)]
                kind += 1
                try:
                    updates = await tab.upload(ADD_FILES, files, {"X-Forwarded-For": address})
                except httpx.HTTPStatusError as exc:
                    if exc.response.status_code != 429:
                        raise
                    report.rate_limited += 1
                    await _pause(stopped, REFUSED_PAUSE_S)
                    continue
                except httpx.TransportError as exc:  # refused mid-body: the server answered and closed
                    report.errors.append(f"{type(exc).__name__}: {str(exc)[:120]}")
                    await _pause(stopped, REFUSED_PAUSE_S)
                    continue
                except Exception as exc:  # anything else: counted, go on
                    report.errors.append(f"{type(exc).__name__}: {str(exc)[:120]}")
                    continue
                report.requests += 1
                values = _values(updates)
                for refusal in _sentences(values.get("notice") or ""):
                    report.refusals[refusal] = report.refusals.get(refusal, 0) + 1
                kept = len(values.get("files") or [])
                report.files_kept += kept
                for _ in range(kept):  # make room for the next request, as the chip's x does
                    await tab.emit(REMOVE_FILE, {"index": 0})
        finally:
            await tab.close()

    async def signer() -> None:
        # At a set rate, or (0) as fast as the sign-up throttle lets it: back to back while sign-ups are
        # made, a second's pause after each refusal.
        spacing = 60.0 / signups_per_minute if signups_per_minute > 0 else 0.0
        signer_address = address.rsplit(".", 1)[0] + f".{int(address.rsplit('.', 1)[1]) + 100}"
        headers = {"X-Forwarded-For": signer_address}
        async with httpx.AsyncClient(base_url=backend_url, timeout=60, headers=headers) as http:
            while not stopped.is_set():
                started = time.monotonic()
                email = f"signup-{secrets.token_hex(6)}@example.com"
                answer = await http.post("/auth/sign-up", data={"email": email, "password": PASSWORD})
                made = answer.status_code == 303 and "error=" not in answer.headers.get("location", "")
                report.signup_ms.append((time.monotonic() - started) * 1000)
                report.signups += made
                report.signups_refused += not made
                wait = spacing if spacing else (0.0 if made else REFUSED_PAUSE_S)
                await _pause(stopped, max(0.0, wait - (time.monotonic() - started)) if spacing else wait)

    watcher = asyncio.create_task(watch_stop())
    await asyncio.gather(*(uploader(n) for n in range(uploaders)), signer(), return_exceptions=False)
    watcher.cancel()
    return report


async def _pause(stopped: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopped.wait(), seconds)


def _values(updates: list[dict[str, Any]]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for update in updates:
        for fields in (update.get("delta") or {}).values():
            for var, value in fields.items():
                values[var.split("_rx_state_")[0]] = value
    return values


def _sentences(notice: str) -> list[str]:
    """A notice's refusals, each by its kind (the file's name left out)."""
    kinds = []
    for part in notice.split(". "):
        words = part.split(" ", 1)
        kinds.append((words[1] if len(words) > 1 and "." in words[0] else part).strip(". ")[:70])
    return [k for k in kinds if k]


# -- the measurement, in another child process -------------------------------------------------------


@dataclass
class Measured:
    frame_gaps_s: list[float]
    pings_s: list[float]
    reply_status: str
    reply_s: float | None
    cpu_s: float = 0.0


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds over a window: the backend's server process, its file checks (the forkserver and the jobs
    it forked, reaped or running), and the whole machine (/proc/stat)."""

    server: float
    file_checks: float
    machine: float

    @classmethod
    def take(cls, session: int) -> CpuUse:
        server = checks = 0.0
        for pid in Watched(sessions=(session,)).pids():
            with contextlib.suppress(OSError, IndexError, ValueError):
                command = Path(f"/proc/{pid}/cmdline").read_bytes()
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                # utime, stime, and (for the forkserver) the reaped jobs' cutime, cstime
                own, reaped = int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])
                if b"multiprocessing" in command or _parent_is_forkserver(pid):
                    checks += (own + reaped) * CLOCK_TICK_S
                elif b"reflex" in command and pid != session:
                    server += own * CLOCK_TICK_S
        return cls(server, checks, machine_busy_seconds())

    def __sub__(self, other: CpuUse) -> CpuUse:
        return CpuUse(self.server - other.server, self.file_checks - other.file_checks, self.machine - other.machine)


def _parent_is_forkserver(pid: int) -> bool:
    parent = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
    return b"forkserver" in Path(f"/proc/{parent}/cmdline").read_bytes()


def measure(backend_url: str, cookie: str, timeout_s: float) -> Measured:
    """In the measuring process: one signed-in tab streams a reply while a pinger asks /ping."""
    started = time.process_time()
    measured = asyncio.run(_measure(backend_url, cookie, timeout_s))
    measured.cpu_s = time.process_time() - started
    return measured


async def _measure(backend_url: str, cookie: str, timeout_s: float) -> Measured:
    tracker = ChatTracker(ClientRecord("event loop bench"))
    tab = ReflexClient(backend_url, REFLEX_VERSION, on_update=tracker.on_update, headers={"Cookie": cookie})
    await tab.connect()
    await asyncio.wait_for(tab.hydrated.wait(), 60)
    with contextlib.suppress(TimeoutError):  # the message's length comes from the settings, once loaded
        await asyncio.wait_for(tracker.settings_loaded.wait(), 30)
    pings: list[float] = []
    done = asyncio.Event()

    async def pinger() -> None:
        async with httpx.AsyncClient(base_url=backend_url, timeout=60) as http:
            while not done.is_set():
                started = time.monotonic()
                await http.get("/ping")
                pings.append(time.monotonic() - started)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), max(0.0, PING_EVERY_S - (time.monotonic() - started)))

    pinging = asyncio.create_task(pinger())
    tracker.record.sent_at = time.monotonic()
    await tab.emit(SEND_MESSAGE, {"form_data": {"message": "stream while others attack"}})
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(tracker.done.wait(), timeout_s)
    done.set()
    await pinging
    await tab.close()
    record = tracker.record
    frames = record.stream_frames
    gaps = [b - a for a, b in itertools.pairwise(frames)]
    reply_s = None if record.end_at is None or record.sent_at is None else record.end_at - record.sent_at
    return Measured(gaps, pings, record.status or "did not end", reply_s)


# -- the scenarios -----------------------------------------------------------------------------------


def sign_up(backend_url: str, email: str) -> str:
    """A new account's session cookie, as the browser stores it."""
    with httpx.Client(base_url=backend_url, timeout=60) as http:
        answer = http.post("/auth/sign-up", data={"email": email, "password": PASSWORD})
        if answer.status_code != 303 or "error=" in answer.headers.get("location", ""):
            raise RuntimeError(f"sign-up of {email} failed: {answer.status_code} {answer.headers.get('location')}")
        return f"{SESSION_COOKIE}={answer.cookies[SESSION_COOKIE]}"


def scenario(
    label: str,
    address: str,
    backend: Backend,
    tab_cookie: str,
    load_cookie: str | None,
    args: argparse.Namespace,
    fake: FakeLLMServer,
    with_load: bool,
) -> None:
    fake.enqueue_stream(Behaviour(tokens=args.tokens, tokens_per_s=args.rate))
    timeout_s = args.tokens / args.rate * 3 + 60
    backend_url = backend.url
    assert backend.process is not None
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(2) as pool:
        stop = manager.Event()
        load = None
        if with_load:
            load = pool.apply_async(
                run_load, (backend_url, load_cookie, address, args.uploaders, args.signups_per_minute, stop)
            )
            time.sleep(args.warm_up_s)  # the attack is under way before the tab sends (a schedule, not a condition)
        before, started = CpuUse.take(backend.process.pid), time.monotonic()
        measured = pool.apply(measure, (backend_url, tab_cookie, timeout_s))
        cpu, window_s = CpuUse.take(backend.process.pid) - before, time.monotonic() - started
        stop.set()
        report = load.get(timeout=300) if load is not None else None
    _print(label, measured, report)
    load_cpu = report.cpu_s if report is not None else 0.0
    rest = cpu.machine - cpu.server - cpu.file_checks - measured.cpu_s - load_cpu
    print(
        f"  CPU, % of one core over the tab's {window_s:.0f} s: backend server {cpu.server / window_s:.0%},"
        f" file checks {cpu.file_checks / window_s:.0%}, measuring clients {measured.cpu_s / window_s:.0%},"
        f" load clients (whole run) {load_cpu / window_s:.0%}, the rest of the machine {max(rest, 0) / window_s:.0%}"
    )


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.0f} ms"


def _p(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def _print(label: str, measured: Measured, report: LoadReport | None) -> None:
    gap_max, gap_p99 = (max(measured.frame_gaps_s) if measured.frame_gaps_s else None), _p(measured.frame_gaps_s, 0.99)
    ping_p99 = _p(measured.pings_s, 0.99)
    gap_verdict = "met" if gap_max is not None and gap_max <= GAP_GOAL_S else "MISSED"
    ping_verdict = "met" if ping_p99 is not None and ping_p99 <= PING_P99_GOAL_S else "MISSED"
    print(f"\n== {label}")
    print(
        f"  tab: reply {measured.reply_status} in {_ms(measured.reply_s)}, {len(measured.frame_gaps_s) + 1} frames;"
        f" frame gap max {_ms(gap_max)}, p99 {_ms(gap_p99)}"
        f"  [goal <= {_ms(GAP_GOAL_S)}: {gap_verdict}]"
    )
    print(
        f"  /ping: {len(measured.pings_s)} requests, p50 {_ms(_p(measured.pings_s, 0.5))},"
        f" p99 {_ms(ping_p99)}, max {_ms(max(measured.pings_s) if measured.pings_s else None)}"
        f"  [goal p99 <= {_ms(PING_P99_GOAL_S)}: {ping_verdict}]"
    )
    if report is None:
        return
    print(
        f"  uploaders: {report.requests} requests answered, {report.files_kept} files kept,"
        f" {report.sent_to_sign_in} sent to sign in, {report.rate_limited} refused by the upload rate (429),"
        f" {len(report.errors)} cut off mid-body or failed" + (f" (first: {report.errors[0]})" if report.errors else "")
    )
    for refusal, count in sorted(report.refusals.items(), key=lambda item: -item[1])[:6]:
        print(f"    {count:>4} x {refusal}")
    signup = f", answered in {statistics.median(report.signup_ms):,.0f} ms (median)" if report.signup_ms else ""
    print(f"  sign-ups: {report.signups} made, {report.signups_refused} refused (throttled){signup}")


# -- part 2: the export's memory ------------------------------------------------------------------------


def seed_attachments(database_url: str, owner: str, mib: int) -> None:
    """`mib` 1 MiB files of random bytes (incompressible), four to a conversation, each on a user message."""
    engine = make_engine(database_url)
    for start in range(0, mib, 4):
        with session_scope(engine) as session:
            conversation = conversations.create_conversation(session, owner, title=f"Files {start // 4}")
            for n in range(start, min(start + 4, mib)):
                message = conversations.add_message(session, conversation, "user", f"file {n}")
                assert message.id is not None
                files = [PreparedAttachment(f"f{n}.bin", "text/plain", os.urandom(2**20), None)]
                add_attachments(session, message.id, files)
                conversations.add_message(session, conversation, "assistant", "Noted.")
    engine.dispose()


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


@contextlib.contextmanager
def sampled_rss(pids: list[int], every_s: float = 0.01) -> Iterator[list[int]]:
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(rss_bytes(pids))
            stop.wait(every_s)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()


def export_memory(workdir: Path, fake: FakeLLMServer, mib: int, read_mib_per_s: float = 0.0) -> None:
    database_url = f"sqlite:///{workdir / 'export.db'}"
    migrate(database_url)
    owner = secrets.token_urlsafe(24)  # an anonymous browser's identity
    seed_attachments(database_url, owner, mib)
    env = bench_environment(database_url, fake.base_url, CHATBOT_SECRET_KEY=SECRET_KEY, CHATBOT_AUTH="none")
    backend = Backend(free_port(), env, workdir / "export-backend.log")
    backend.start()
    links = ExportLinks(Settings(secret_key=SECRET_KEY))
    try:
        assert backend.process is not None
        pids = Watched(sessions=(backend.process.pid,)).pids()
        url = backend.url + export_url(asyncio.run(links.token(ExportTicket(owner, None, "json"))))
        rounds = []
        with httpx.Client(timeout=300) as http:
            # A first download warms what any first export sets up (code paths, database connections, threads).
            for _ in range(3):
                before = rss_bytes(pids)
                received = 0
                started = time.monotonic()
                with sampled_rss(pids) as samples, http.stream("GET", url) as answer:
                    answer.raise_for_status()
                    for chunk in answer.iter_bytes():
                        received += len(chunk)
                        if read_mib_per_s:  # a slow client: the pace at which a browser on a slow link reads
                            time.sleep(max(0.0, started + received / (read_mib_per_s * 2**20) - time.monotonic()))
                rounds.append((before, max(samples, default=before), received, time.monotonic() - started))
    finally:
        backend.stop()
    print(f"\n== export of {mib} MiB of attachments ({-(-mib // 4)} conversations), streamed from a link, 3 times")
    for number, (before, peak, received, took) in enumerate(rounds, 1):
        print(
            f"  download {number}: {received / 2**20:,.1f} MiB in {took:.1f} s; backend RSS before"
            f" {before / 2**20:,.0f} MiB, peak growth {(peak - before) / 2**20:,.1f} MiB"
            + (" (the first: one-time set-up included)" if number == 1 else "")
        )
    overall = max(peak for _, peak, _, _ in rounds) - rounds[0][0]
    print(f"  peak over the level before the first download, all three together: {overall / 2**20:,.1f} MiB")


# -- main ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=900, help="the tab's reply, in word tokens (under 1,024)")
    parser.add_argument("--rate", type=float, default=36.0, help="the reply's tokens per second upstream")
    parser.add_argument("--uploaders", type=int, default=3)
    parser.add_argument(
        "--signups-per-minute",
        type=float,
        default=0.0,
        help="0 (the default): as fast as the sign-up throttle lets it (CHATBOT_SIGNUPS_PER_ADDRESS_PER_HOUR)",
    )
    parser.add_argument("--warm-up-s", type=float, default=5.0, help="load before the tab sends")
    parser.add_argument("--export-mib", type=int, default=40)
    parser.add_argument("--export-read-mib-per-s", type=float, default=0.0, help="read the export this slowly")
    parser.add_argument("--skip", choices=("loop", "export"), help="leave one part out")
    args = parser.parse_args()

    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} (shared with others)")
    fake = FakeLLMServer().start()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if args.skip != "loop":
            database_url = f"sqlite:///{workdir / 'bench.db'}"
            migrate(database_url)
            env = bench_environment(
                database_url,
                fake.base_url,
                CHATBOT_AUTH="local",
                CHATBOT_ALLOW_SIGNUP="true",
                CHATBOT_MAX_TOKENS="1024",
                CHATBOT_SECRET_KEY=SECRET_KEY,
                CHATBOT_TRUSTED_PROXIES="127.0.0.1",  # as behind nginx: the load says where it comes from
            )
            backend = Backend(free_port(), env, workdir / "backend.log")
            backend.start()
            try:
                tab_cookie = sign_up(backend.url, "tab@example.com")
                uploader_cookie = sign_up(backend.url, "uploader@example.com")
                pace = f"{args.signups_per_minute:g} a minute" if args.signups_per_minute else "as the throttle lets"
                print(
                    f"uploads: {args.uploaders} uploaders, back to back; sign-ups {pace};"
                    f" the tab's reply {args.tokens} tokens at {args.rate:g} tok/s"
                )
                run = (backend, tab_cookie)
                scenario("no load (baseline)", "203.0.113.1", *run, None, args, fake, with_load=False)
                scenario("uploaders without a session", "203.0.113.2", *run, None, args, fake, with_load=True)
                scenario("uploaders signed in", "203.0.113.3", *run, uploader_cookie, args, fake, with_load=True)
            finally:
                backend.stop()
        if args.skip != "export":
            export_memory(workdir, fake, args.export_mib, args.export_read_mib_per_s)
    fake.stop()


if __name__ == "__main__":
    main()
