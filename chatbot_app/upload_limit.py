"""A size limit on uploads to Reflex's `/_upload`, enforced while the body arrives.

Reflex parses an upload with Starlette's multipart parser, which spools every file to disk and has
no total size limit. This middleware refuses a declared Content-Length over the limit before
reading anything, and stops a body sent without one (or lying about it) as soon as the bytes
received pass the limit: the parser is interrupted, its spooled files are released, and the
client gets 413. Other paths pass untouched.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UPLOAD_PATH = "/_upload"
#: Room for the multipart framing (boundaries, part headers, the handler's args) around the file itself.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


class UploadTooLarge(Exception):
    """Raised into the upload's parser when the body passes the limit."""


def refusal_message(max_bytes: int) -> str:
    return f"The file is too large: uploads are limited to {max_bytes / 2**20:g} MiB."


def limit_upload_size(max_bytes: int, path: str = UPLOAD_PATH) -> Callable[[ASGIApp], ASGIApp]:
    """An api_transformer that wraps the backend so POSTs to `path` carry at most `max_bytes` of file."""
    limit = max_bytes + MULTIPART_OVERHEAD_BYTES
    body = json.dumps({"detail": refusal_message(max_bytes)}).encode()
    refusal_start: Message = {
        "type": "http.response.start",
        "status": 413,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ],
    }
    refusal_body: Message = {"type": "http.response.body", "body": body}

    def transform(app: ASGIApp) -> ASGIApp:
        async def limited(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http" or scope.get("method") != "POST" or not _is_upload(scope.get("path", ""), path):
                await app(scope, receive, send)
                return
            declared = Headers(scope=scope).get("content-length")
            if declared is not None and (not declared.isdigit() or int(declared) > limit):
                await send(refusal_start)
                await send(refusal_body)
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
                        await send(refusal_start)
                        await send(refusal_body)
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
                await send(refusal_start)
                await send(refusal_body)

        return limited

    return transform


def _is_upload(request_path: str, upload_path: str) -> bool:
    # Reflex may prepend a backend path (config.prepend_backend_path); files are served under the same prefix.
    return request_path.rstrip("/").endswith(upload_path)
