"""Security headers on every HTTP response of the backend (API, docs, and Reflex's own routes)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        # Reflex's compiled pages use inline bootstrapping and Emotion's inline styles.
        "script-src 'self' 'unsafe-inline'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self' ws: wss:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
    (b"x-frame-options", b"DENY"),
]
# FastAPI's interactive docs load their scripts from a CDN, so they get no CSP.
_NO_CSP_PREFIXES = ("/docs", "/redoc")


def security_headers(app: ASGIApp) -> ASGIApp:
    """Wrap an ASGI app so that its HTTP responses carry the headers above."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        extra = list(HEADERS)
        if not scope.get("path", "").startswith(_NO_CSP_PREFIXES):
            extra.append((b"content-security-policy", CONTENT_SECURITY_POLICY.encode()))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in extra if h[0] not in present)]
            await send(message)

        await app(scope, receive, send_with_headers)

    return wrapped


def static_site_headers() -> list[tuple[str, str]]:
    """The headers a static host must add to the exported frontend, so that its pages match the backend's.

    deploy/run_prod.py writes them into nginx's configuration: this module stays their one source.
    """
    return [(name.decode(), value.decode()) for name, value in HEADERS] + [
        ("content-security-policy", CONTENT_SECURITY_POLICY)
    ]
