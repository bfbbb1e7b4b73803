"""With accounts on, only the app's own web origins may use the session cookie.

The cookie is SameSite=Strict: other sites never send it, but other origins of the same site do (another
port of the host, a sibling subdomain). A page there could open the UI's websocket with the user's cookie
and act as them (mint a personal API key), or read /auth/session. So the requests that carry the cookie,
the websocket (Reflex's /_event), uploads (/_upload) and everything under /auth/, are refused when they
come with an Origin other than the UI's (CHATBOT_APP_URL) or the backend's own (REFLEX_API_URL).
Requests without an Origin (curl, the SDKs) are not a browser page acting for someone, and pass.

Reflex's own CORS layer (`cors_allowed_origins`, which also checks the websocket's Origin) is narrowed by
`reflex_cors_origins` to those origins plus CHATBOT_CORS_ORIGINS, the API's browser clients (their
requests carry a key, not the cookie). With accounts off there is no cookie to protect, and both stay open.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

#: HTTP paths that act on the session cookie (the websocket is guarded whatever its path).
CREDENTIALED_PREFIXES = ("/auth/", "/_upload")
REFUSED = "Requests from this web origin are not allowed: open the app at its own address."


def origin_of(url: str | None) -> str | None:
    """scheme://host[:port] of a URL, or None for anything else."""
    if not url:
        return None
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def app_origins(app_url: str, api_url: str | None) -> frozenset[str]:
    """The UI's origin and the backend's: the only pages allowed to act with the user's cookie."""
    return frozenset(origin for origin in (origin_of(app_url), origin_of(api_url)) if origin)


def reflex_cors_origins(app_url: str, api_url: str | None, api_origins: Iterable[str]) -> list[str]:
    """What Reflex's `cors_allowed_origins` must allow: the app's origins and the API's browser clients."""
    return sorted(app_origins(app_url, api_url) | {origin.rstrip("/").lower() for origin in api_origins})


def origin_guard(allowed: frozenset[str]) -> Callable[[ASGIApp], ASGIApp]:
    """An api_transformer: refuse cookie-carrying requests whose Origin is not one of `allowed`."""

    def transform(app: ASGIApp) -> ASGIApp:
        async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
            kind, path = scope["type"], scope.get("path", "")
            if kind == "websocket" or (kind == "http" and path.startswith(CREDENTIALED_PREFIXES)):
                origin = Headers(scope=scope).get("origin")
                if origin is not None and origin.rstrip("/").lower() not in allowed:
                    await _refuse(kind, send)
                    return
            await app(scope, receive, send)

        return guarded

    return transform


async def _refuse(kind: str, send: Send) -> None:
    if kind == "websocket":
        # Closed before it is accepted: the server answers the handshake with 403.
        await send({"type": "websocket.close", "code": 1008})
        return
    body = json.dumps({"detail": REFUSED}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 403, "headers": headers})
    await send({"type": "http.response.body", "body": body})
