"""`make prod`'s topology on free ports, for the tests and benchmarks that break it.

nginx in front of two backends (deploy/run_prod.py's Topology), a fresh PostgreSQL database and a
private redis-server, so that killing, restarting or flushing any of them disturbs no one else.
Which backend holds a tab's websocket is read from the kernel's socket table: nginx keeps one
upstream connection per websocket, and no other connection to a backend stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from deploy.run_prod import ProdConfig, Topology, find_nginx, running
from tests.conftest import TEST_API_KEY, new_database, skip_or_fail
from tests.e2e.live_app import app_environment, free_port
from tests.fakes.fake_llm_server import FakeLLMServer

# reflex.istate.manager.redis.NOTIFY_KEYSPACE_EVENTS: what Reflex's state manager needs from Redis.
REFLEX_KEYSPACE_EVENTS = "K$sgxe"
# Every tab here comes from 127.0.0.1 through nginx: the per-address and per-identity limits (tested on
# their own elsewhere) would refuse a long run's messages.
LIMITS_RAISED = {
    "CHATBOT_NEW_IDENTITIES_PER_HOUR": "100000",
    "CHATBOT_ADDRESS_RATE_LIMIT_PER_MINUTE": "100000",
    "CHATBOT_RATE_LIMIT_PER_MINUTE": "100000",
}
# Test-side instrumentation: keep every websocket the page opens, so a test can drop one.
TRACK_WEBSOCKETS = """
window.__sockets = [];
const NativeWebSocket = window.WebSocket;
window.WebSocket = class extends NativeWebSocket {
  constructor(...args) { super(...args); window.__sockets.push(this); }
};
"""
DROP_WEBSOCKETS = """
() => {
  const open = window.__sockets.filter(s => s.readyState === 1);
  open.forEach(s => s.close());
  return open.length;
}
"""


@dataclass
class RedisServer:
    """A private redis-server without persistence: a restart empties it, as a crash would.

    Configured as production Redis must be (see docs/production.md): Reflex turns on keyspace notifications
    once, when a backend starts, and waits for state locks through them; a restarted server must have
    them already, or every backend's lock waits hang.
    """

    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        argv = [
            *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
            *("--notify-keyspace-events", REFLEX_KEYSPACE_EVENTS),
        ]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True).stdout != b"PONG\n":
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()


def require_nginx() -> None:
    """Skip (fail, under CI) a test of the topology where nginx is not installed."""
    try:
        find_nginx()
    except Exception as exc:
        skip_or_fail(str(exc))


@contextlib.contextmanager
def started_redis() -> Iterator[RedisServer]:
    """A private redis-server on a free port, stopped at the end; skipped (failed, under CI) without one."""
    if shutil.which("redis-server") is None:
        skip_or_fail("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class PostgresServer:
    """A private PostgreSQL server in a temporary directory of its own (removed by `close`), so that
    restarting it disturbs no one else. Debian's server binaries refuse to run as root: then they run
    as the `postgres` user, who owns the directory."""

    port: int
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="chatbot_pg_")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Its `postgres` database, which the app uses as its own."""
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    @staticmethod
    def binaries() -> Path | None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if found:
            return found[-1].parent
        initdb = shutil.which("initdb")
        return Path(initdb).parent if initdb else None

    def _as_owner(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv

    def start(self) -> None:
        bin_dir = self.binaries()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL's server binaries are not installed (apt-get install postgresql)")
        data = self.directory / "data"
        if not data.exists():
            if os.geteuid() == 0:
                shutil.chown(self.directory, "postgres", "postgres")
            initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync"]
            subprocess.run(self._as_owner(initdb), check=True, capture_output=True)
        server = [str(bin_dir / "postgres"), "-D", str(data), "-p", str(self.port), "-k", str(self.directory)]
        server += ["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]
        self.process = subprocess.Popen(
            self._as_owner(server), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        ready = [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
        deadline = time.monotonic() + 30
        while subprocess.run(ready, capture_output=True).returncode != 0:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("the private PostgreSQL server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        """A fast shutdown (SIGINT): open connections are cut, as in a restart by the machine's operator."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            self.process.wait(timeout=30)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def prod_cluster(
    workdir: Path,
    fake: FakeLLMServer,
    redis: RedisServer,
    *,
    postgres: PostgresServer | None = None,
    site_dir: Path | None = None,
    **env: str,
) -> Iterator[Topology]:
    """nginx and two backends on free ports, a fresh PostgreSQL database, answered by `fake`.

    The database is a new one on the machine's PostgreSQL, or `postgres`'s own when given. `env` is
    added to the backends' environment (CHATBOT_AUTH, for one). The frontend is exported for nginx's
    address unless `site_dir` already holds one (then nginx's port must be the same).
    """
    port = free_port()
    with (
        contextlib.nullcontext(postgres.url)
        if postgres is not None
        else new_database("postgresql", workdir, prefix="chatbot_prod")
    ) as database_url:
        environment = app_environment(
            PORT=str(port),
            BACKENDS="2",
            REFLEX_API_URL=f"http://127.0.0.1:{port}",
            REFLEX_REDIS_URL=redis.url,
            CHATBOT_DATABASE_URL=database_url,
            CHATBOT_PROD_DIR=str(workdir),
            GROQ_API_KEY=TEST_API_KEY,
            GROQ_BASE_URL=fake.base_url,
            CHATBOT_MODEL="fake-large",
            **LIMITS_RAISED,
            **env,
        )
        config = replace(ProdConfig.load(environment), backend_ports=[free_port(), free_port()])
        with running(config, site_dir=site_dir) as topology:
            yield topology


# --- where each tab is connected -------------------------------------------------------------------


def established_to(port: int) -> set[str]:
    """Open TCP connections whose local end is `port`, by their remote end (for a backend: nginx's
    upstream connections, one per websocket)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                local, remote, state = line.split()[1:4]
                if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:
                    found.add(remote)
    return found


def connections(prod: Topology) -> list[set[str]]:
    return [established_to(port) for port in prod.config.backend_ports]


def wait_for_new_connection(prod: Topology, before: list[set[str]], timeout_s: float = 30) -> int:
    """The index of the backend that got a websocket not open at `before`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        gained = [i for i, (now, then) in enumerate(zip(connections(prod), before, strict=True)) if now - then]
        if len(gained) == 1:
            return gained[0]
        time.sleep(0.02)
    raise TimeoutError(f"no backend got a new websocket: before {before}, now {connections(prod)}")


def open_tab_on_a_backend(prod: Topology, open_tab: Callable[[], Any]) -> tuple[Any, int]:
    """A tab opened by `open_tab`, and the index of the backend its websocket reached."""
    before = connections(prod)
    page = open_tab()
    return page, wait_for_new_connection(prod, before)


def drop_websocket(prod: Topology, page: Any) -> int:
    """Close the tab's websocket from the browser; returns the backend its reconnection reached."""
    before = connections(prod)
    assert page.evaluate(DROP_WEBSOCKETS) == 1
    return wait_for_new_connection(prod, before)


def move_websocket(prod: Topology, page: Any, to: int, tries: int = 12) -> None:
    """Drop the tab's websocket until its reconnection reaches backend `to` (nginx picks one in turn)."""
    for _ in range(tries):
        if drop_websocket(prod, page) == to:
            return
    raise AssertionError(f"the tab's websocket never reached backend {to} in {tries} tries")


# --- accounts --------------------------------------------------------------------------------------


def new_signed_in_session(database_url: str, email: str, *, api_key: bool = False) -> str:
    """A new local account and a session for it, made in the database as the sign-up page would;
    returns the session token (the `chatbot_session` cookie's value), or with `api_key` a personal API key."""
    from chatbot_app.config import Settings
    from chatbot_app.services.accounts import Accounts
    from chatbot_app.storage.database import make_engine

    async def work() -> str:
        engine = make_engine(database_url)
        try:
            # Sign-up is closed after the first account (chatbot_app.config): these sessions are made as test fixtures.
            accounts = Accounts(Settings(database_url=database_url, auth_methods=("local",), allow_signup=True), engine)
            user = await accounts.sign_up(email, "a long test password")
            if api_key:
                assert user.id is not None
                return (await accounts.create_api_key(user.id, "tests"))[1]
            return await accounts.start_session(user)
        finally:
            engine.dispose()

    # In a thread of its own: Playwright's sync API may already own this thread's event loop.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work()).result()
