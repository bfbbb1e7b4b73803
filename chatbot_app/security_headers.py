"""Security headers on every HTTP response of the backend (API, docs, and Reflex's own routes).

Scripts: no 'unsafe-inline'. Reflex's compiled pages carry a few inline scripts (the colour-mode
bootstrap, React Router's context and scroll restoration, React's streaming markers); they are the
same for every visit, so the policy allows exactly those by their SHA-256 hashes, read from the
build (.web/build/client) the first time a response goes out. A page whose scripts were not in that
build cannot run inline code. Styles keep 'unsafe-inline': Emotion and Radix set styles at run time.

connect-src is the page's own origin (and its websocket form, which 'self' does not cover in every
browser) plus the backend's (REFLEX_API_URL, http and ws), nothing else; media-src the page's and the
backend's (replies read aloud stream from it).

For a separate static host (nginx, a CDN) serving the exported frontend, print the same policy with
`python -m chatbot_app.security_headers [build_dir]` and configure that host to send it.
"""

from __future__ import annotations

import base64
import hashlib
import re
import sys
from functools import lru_cache
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatbot_app.config import PROJECT_ROOT

BUILD_DIR = PROJECT_ROOT / ".web" / "build" / "client"

HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
    (b"x-frame-options", b"DENY"),
]
_HOST = re.compile(r"[A-Za-z0-9.\-]{1,253}(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?")
# FastAPI's interactive docs load their scripts from a CDN, so they get no CSP.
_NO_CSP_PREFIXES = ("/docs", "/redoc")


class _InlineScripts(HTMLParser):
    """The text of every <script> without a src attribute, exactly as the browser hashes it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.scripts: list[str] = []
        self._inline: bool = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self._inline = not any(name == "src" for name, _ in attrs)
            if self._inline:
                self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._inline = False

    def handle_data(self, data: str) -> None:
        if self._inline:
            self.scripts[-1] += data


def inline_script_hashes(build_dir: Path) -> list[str]:
    """CSP hash sources ('sha256-…') for the inline scripts of every page in a Reflex build, sorted."""
    hashes: set[str] = set()
    for page in sorted(build_dir.rglob("*.html")):
        parser = _InlineScripts()
        parser.feed(page.read_text(encoding="utf-8"))
        for script in parser.scripts:
            digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
            hashes.add(f"'sha256-{digest}'")
    return sorted(hashes)


def backend_origins(api_url: str | None) -> list[str]:
    """The backend's origin for fetches and its websocket (ws/wss), from REFLEX_API_URL."""
    if not api_url:
        return []
    parts = urlsplit(api_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return []
    socket_scheme = "wss" if parts.scheme == "https" else "ws"
    return [f"{parts.scheme}://{parts.netloc}", f"{socket_scheme}://{parts.netloc}"]


def content_security_policy(script_hashes: list[str], origins: list[str]) -> str:
    return "; ".join(
        [
            "default-src 'self'",
            " ".join(["script-src 'self'", *script_hashes]),
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "font-src 'self' data:",
            " ".join(["connect-src 'self'", *origins]),
            # Replies read aloud stream from the backend (GET /api/speech/...) into the page's <audio>.
            " ".join(["media-src 'self'", *(origin for origin in origins if origin.startswith("http"))]),
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def _api_url() -> str | None:
    try:
        from reflex.config import get_config
    except ImportError:  # pragma: no cover - Reflex is always installed with the app
        return None
    return get_config().api_url


@lru_cache(maxsize=1)
def _build_hashes() -> tuple[str, ...]:
    return tuple(inline_script_hashes(BUILD_DIR)) if BUILD_DIR.is_dir() else ()


@lru_cache(maxsize=64)
def current_policy(own_origin: str | None = None) -> str:
    """The policy for this process: the build's script hashes; the backend's and the page's own origins."""
    origins = [*backend_origins(_api_url()), *backend_origins(own_origin)]
    return content_security_policy(list(_build_hashes()), list(dict.fromkeys(origins)))


def _own_origin(scope: Scope) -> str | None:
    host = next((value.decode("latin-1") for name, value in scope.get("headers", []) if name == b"host"), "")
    if not _HOST.fullmatch(host):  # a host and port only: nothing that could bend the policy
        return None
    return f"{scope.get('scheme', 'http')}://{host}"


def security_headers(app: ASGIApp) -> ASGIApp:
    """Wrap an ASGI app so that its HTTP responses carry the headers above."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        extra = list(HEADERS)
        if not scope.get("path", "").startswith(_NO_CSP_PREFIXES):
            extra.append((b"content-security-policy", current_policy(_own_origin(scope)).encode()))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in extra if h[0] not in present)]
            await send(message)

        await app(scope, receive, send_with_headers)

    return wrapped


def static_site_headers(build_dir: Path = BUILD_DIR) -> list[tuple[str, str]]:
    """The headers a static host must add to the exported frontend, so that its pages match the backend's.

    deploy/run_prod.py writes them into nginx's configuration: this module stays their one source. The
    site and its backend share one origin there, so 'self' covers the backend and its websocket.
    """
    policy = content_security_policy(inline_script_hashes(build_dir) if build_dir.is_dir() else [], [])
    return [(name.decode(), value.decode()) for name, value in HEADERS] + [("content-security-policy", policy)]


if __name__ == "__main__":
    build = Path(sys.argv[1]) if len(sys.argv) > 1 else BUILD_DIR
    print(content_security_policy(inline_script_hashes(build), backend_origins(_api_url())))
