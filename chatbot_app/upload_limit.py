"""Limits on uploads to Reflex's `/_upload`: their size, enforced while the body arrives, and their rate.

Reflex parses an upload with Starlette's multipart parser, which spools every file to disk and has
no total size limit. `limit_upload_size` refuses a declared Content-Length over the limit before
reading anything, and stops a body sent without one (or lying about it) as soon as the bytes
received pass the limit: the parser is interrupted, its spooled files are released, and the
client gets 413.

That parsing runs on the event loop, before any handler can look at the caller, and anyone can post
(the upload request carries no session cookie from a page served on another origin).
`limit_upload_rate` refuses an address's uploads past CHATBOT_UPLOADS_PER_MINUTE with 429, before
reading the body: counted in this process, as it is this process's event loop the limit protects.
Other paths pass untouched.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatbot_app.services.limits import address_key, client_address, parse_networks

UPLOAD_PATH = "/_upload"
#: Room for the multipart framing (boundaries, part headers, the handler's args) around the file itself.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


class UploadTooLarge(Exception):
    """Raised into the upload's parser when the body passes the limit."""


def refusal_message(max_bytes: int) -> str:
    return f"The file is too large: uploads are limited to {max_bytes / 2**20:g} MiB."


def _json_refusal(status: int, detail: str, *headers: tuple[bytes, bytes]) -> tuple[Message, Message]:
    """An answer of `status` with `{"detail": detail}` that closes the connection (the body is not read)."""
    body = json.dumps({"detail": detail}).encode()
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *headers,
            (b"connection", b"close"),
        ],
    }
    return start, {"type": "http.response.body", "body": body}


async def _send_all(send: Send, messages: Iterable[Message]) -> None:
    for message in messages:
        await send(message)


def limit_upload_size(max_bytes: int, path: str = UPLOAD_PATH) -> Callable[[ASGIApp], ASGIApp]:
    """An api_transformer that wraps the backend so POSTs to `path` carry at most `max_bytes` of file."""
    limit = max_bytes + MULTIPART_OVERHEAD_BYTES
    refusal = _json_refusal(413, refusal_message(max_bytes))

    def transform(app: ASGIApp) -> ASGIApp:
        async def limited(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http" or scope.get("method") != "POST" or not _is_upload(scope.get("path", ""), path):
                await app(scope, receive, send)
                return
            declared = Headers(scope=scope).get("content-length")
            if declared is not None and (not declared.isdigit() or int(declared) > limit):
                await _send_all(send, refusal)
                return

            received = 0
            over = False
            started = False

            async def counting_receive() -> Message:
                nonlocal received, over
                if over:  # the parser may ask again while it unwinds: the client is gone for it
                    return {"type": "http.disconnect"}
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        over = True
                        raise UploadTooLarge(f"upload passed {limit} bytes")
                return message

            async def guarded_send(message: Message) -> None:
                nonlocal started
                if over:  # whatever the app answers to the interrupted parse, the client hears 413
                    if not started:
                        started = True
                        await _send_all(send, refusal)
                    return
                if message["type"] == "http.response.start":
                    started = True
                await send(message)

            try:
                await app(scope, counting_receive, guarded_send)
            except Exception:
                if not over:
                    raise
            if over and not started:
                await _send_all(send, refusal)

        return limited

    return transform


def limit_upload_rate(
    per_minute: int, trusted_proxies: Iterable[str] = (), path: str = UPLOAD_PATH
) -> Callable[[ASGIApp], ASGIApp]:
    """An api_transformer that answers 429 to an address's POSTs to `path` past `per_minute` (a moving window)."""
    limit = RateLimitItemPerMinute(per_minute)
    # `limits`' moving window in this process's memory (expired windows are dropped as it goes).
    limiter = MovingWindowRateLimiter(MemoryStorage())
    trusted = parse_networks(trusted_proxies)
    refusal = _json_refusal(
        429, f"Too many uploads from your network: the limit is {per_minute} a minute.", (b"retry-after", b"60")
    )

    def transform(app: ASGIApp) -> ASGIApp:
        async def limited(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and scope.get("method") == "POST" and _is_upload(scope.get("path", ""), path):
                peer = (scope.get("client") or (None,))[0]
                address = client_address(peer, Headers(scope=scope).get("x-forwarded-for"), trusted)
                if not limiter.hit(limit, "upload", address_key(address)):
                    await _send_all(send, refusal)
                    return
            await app(scope, receive, send)

        return limited

    return transform


def _is_upload(request_path: str, upload_path: str) -> bool:
    # Reflex may prepend a backend path (config.prepend_backend_path); files are served under the same prefix.
    return request_path.rstrip("/").endswith(upload_path)
