"""Run the app as it is hosted in production: a `reflex export` static frontend on a plain
static file server, and `reflex run --backend-only --env prod` behind it.

Used by the browser tests and by the benchmarks in bench/.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from chatbot_app.config import PROJECT_ROOT

VENV_BIN = PROJECT_ROOT / ".venv" / "bin"
REFLEX_ENV = {
    "REFLEX_USE_NPM": "1",
    "REFLEX_TELEMETRY_ENABLED": "false",
    "REFLEX_CHECK_LATEST_VERSION": "false",
}


#: Every port free_port has given out in this process: none is given twice.
_GIVEN_PORTS: set[int] = set()
_GIVEN_PORTS_LOCK = threading.Lock()


def free_port() -> int:
    """A port free on loopback now, and never one this process was given before: the kernel may hand
    a just-closed port out again, and two picks in a row (nginx's and a backend's) were once the same."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with _GIVEN_PORTS_LOCK:
            if port not in _GIVEN_PORTS:
                _GIVEN_PORTS.add(port)
                return port


def app_environment(**overrides: str) -> dict[str, str]:
    """The process environment for Reflex commands: the venv's Node first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GROQ_", "CHATBOT_", "OPENAI_"))}
    env.update(REFLEX_ENV)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(overrides)
    return env


def export_frontend(api_url: str, destination: Path, development: bool = False, **build_env: str) -> Path:
    """`reflex export --frontend-only` against `api_url`, copied to `destination`.

    `development` builds React's development bundle, which reports mistakes (hooks called in a changing
    order, missing keys) as console warnings that the production bundle leaves out.
    """
    env = app_environment(REFLEX_API_URL=api_url, **build_env, **({"NODE_ENV": "development"} if development else {}))
    subprocess.run(
        [str(VENV_BIN / "reflex"), "export", "--frontend-only", "--no-zip", "--loglevel", "warning"],
        cwd=PROJECT_ROOT,
        env=env,
        check=True,
        timeout=900,
        stdout=subprocess.DEVNULL,
    )
    shutil.copytree(PROJECT_ROOT / ".web" / "build" / "client", destination, dirs_exist_ok=True)
    return destination


class _SpaHandler(SimpleHTTPRequestHandler):
    """Serve files; anything else gets 404.html, Reflex's single-page fallback (as static hosts do)."""

    def send_head(self):  # type: ignore[no-untyped-def]
        path = Path(self.translate_path(self.path))
        if not path.exists():
            self.path = "/404.html"
        return super().send_head()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def static_server(directory: Path, port: int) -> Iterator[str]:
    handler = functools.partial(_SpaHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()


def wait_until_up(url: str, process: subprocess.Popen[bytes] | None, timeout_s: float = 120) -> None:
    """Poll `url` until it answers 200; fail early if `process` exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} came up")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not come up in {timeout_s} s")


@dataclass
class Backend:
    """`reflex run --backend-only --env prod` as a child process, restartable."""

    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                str(VENV_BIN / "reflex"),
                "run",
                "--backend-only",
                "--env",
                "prod",
                "--backend-port",
                str(self.port),
                "--backend-host",
                "127.0.0.1",
            ],
            cwd=PROJECT_ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop() reaches the workers too
        )
        wait_until_up(f"{self.url}/ping", self.process)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def restart(self, **env_changes: str | None) -> None:
        """Restart, optionally with environment changes (None removes a variable)."""
        self.stop()
        for name, value in env_changes.items():
            if value is None:
                self.env.pop(name, None)
            else:
                self.env[name] = value
        self.start()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class LiveApp:
    frontend_url: str
    backend: Backend
    site_dir: Path
    database_url: str


@contextlib.contextmanager
def live_app(workdir: Path, database_url: str, development: bool = False, **app_env: str) -> Iterator[LiveApp]:
    """Export, serve and run the whole app; `app_env` sets GROQ_*/CHATBOT_* variables (and CHATBOT_APP_NAME,
    which the export reads too). `development`: React's development bundle (see export_frontend)."""
    backend_port, frontend_port = free_port(), free_port()
    api_url = f"http://127.0.0.1:{backend_port}"
    build_env = {name: value for name, value in app_env.items() if name == "CHATBOT_APP_NAME"}
    site = export_frontend(api_url, workdir / "site", development, **build_env)
    env = app_environment(CHATBOT_DATABASE_URL=database_url, **app_env)
    backend = Backend(backend_port, env, workdir / "backend.log")
    with static_server(site, frontend_port) as frontend_url:
        backend.start()
        try:
            yield LiveApp(frontend_url, backend, site, database_url)
        finally:
            backend.stop()


@contextlib.contextmanager
def backend_only(workdir: Path, database_url: str, **app_env: str) -> Iterator[Backend]:
    """Only the backend (no frontend export: seconds, not minutes), for tests that speak its websocket."""
    backend = Backend(
        free_port(), app_environment(CHATBOT_DATABASE_URL=database_url, **app_env), workdir / "backend.log"
    )
    backend.start()
    try:
        yield backend
    finally:
        backend.stop()
