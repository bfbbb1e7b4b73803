"""Who is calling the API: a bearer key, and the owner id it stands for.

A key is one of CHATBOT_API_KEYS (an operator's; it owns its own conversations), or, with accounts
on (CHATBOT_AUTH), a user's personal key, which acts as that user (owner id "user:<id>"): the API
then sees exactly the conversations the user sees in the UI. Personal keys are looked up by hash on
every request, so a revoked key or a disabled user is refused at once.

`ApiGuard` checks every /api and /v1 request (except /api/health) before anything reads its body:
the key, the browser origin (if any), and the body size. Routes then take the owner id from
`current_owner`. Keys are compared in constant time and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from functools import lru_cache
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatbot_app.api.errors import error_body
from chatbot_app.config import Settings, get_settings
from chatbot_app.services.accounts import API_KEY_PREFIX
from chatbot_app.services.limits import client_address, parse_networks
from chatbot_app.services.wiring import services

#: Paths the guard protects, and the one it leaves open.
GUARDED_PREFIXES = ("/api/", "/v1/")
PUBLIC_PATHS = frozenset({"/api/health"})
#: Larger request bodies get 413 before they are read into memory.
MAX_BODY_BYTES = 4 * 1024 * 1024
#: Attachment, shared file and export downloads and replies read aloud: fetched by the page's <img> and <audio>
#: tags and links, which carry no key; the token in the URL is the secret. A request that does send a key must
#: own the attachment.
KEYLESS_GET_PREFIXES = ("/api/attachments/", "/api/shared/", "/api/exports/", "/api/speech/")
#: Upload paths, which take a body up to CHATBOT_MAX_ATTACHMENT_BYTES (plus multipart overhead).
UPLOAD_PATHS = frozenset({"/api/transcribe"})
#: Response headers a browser script on an allowed origin may read.
EXPOSED_HEADERS = "X-Conversation-Id"

NO_KEYS_CONFIGURED = (
    "The REST API is disabled: no API keys are configured. "
    "Set CHATBOT_API_KEYS (comma-separated keys) in the environment or .env, then restart the backend."
)
MISSING_KEY = "Send an API key as 'Authorization: Bearer <key>'."
WRONG_KEY = "That API key is not valid."

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="One of the keys in CHATBOT_API_KEYS, as `Authorization: Bearer <key>`.",
)


def owner_id_for_key(key: str) -> str:
    """The owner of everything created with `key`: the API's counterpart of the browser identity."""
    return "key_" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def matching_key(presented: str, keys: Iterable[str]) -> str | None:
    """The configured key equal to `presented`, compared in constant time (digests, so length leaks nothing)."""
    presented_digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
    found: str | None = None
    for key in keys:  # no early exit: every key is compared
        if hmac.compare_digest(presented_digest, hashlib.sha256(key.encode("utf-8")).digest()):
            found = key
    return found


def bearer_key(authorization: str | None) -> str | None:
    scheme, _, key = (authorization or "").strip().partition(" ")
    return (key.strip() or None) if scheme.lower() == "bearer" else None


async def owner_for_key(presented: str, settings: Settings) -> str | None:
    """The owner id a presented key stands for: an operator key's own, or a personal key's user's."""
    if (key := matching_key(presented, settings.api_keys)) is not None:
        return owner_id_for_key(key)
    if settings.accounts_enabled and presented.startswith(API_KEY_PREFIX):
        user = await services().accounts.user_for_api_key(presented)
        return None if user is None else user.owner_id
    return None


def origin_allowed(origin: str, headers: Headers, scheme: str, allowed: Iterable[str]) -> bool:
    """The backend's own origin (e.g. /docs), or one listed in CHATBOT_CORS_ORIGINS."""
    origin = origin.rstrip("/")
    allowed = tuple(allowed)
    if "*" in allowed or origin in allowed:
        return True
    host = headers.get("host", "")
    return bool(host) and origin in (f"{scheme}://{host}", f"http://{host}", f"https://{host}")


class ApiGuard:
    """ASGI middleware: key, origin and body-size checks for the API's paths; other paths pass untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(GUARDED_PREFIXES) or path in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        settings = get_settings()
        headers = Headers(scope=scope)

        async def refuse(status: int, message: str, extra: dict[str, str] | None = None) -> None:
            body = json.dumps(error_body(path, status, message)).encode()
            response_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            response_headers += [(k.lower().encode(), v.encode()) for k, v in (extra or {}).items()]
            await send({"type": "http.response.start", "status": status, "headers": response_headers})
            await send({"type": "http.response.body", "body": body})

        origin = headers.get("origin")
        if origin is not None and not origin_allowed(
            origin, headers, scope.get("scheme", "http"), settings.cors_origins
        ):
            await refuse(403, "Requests from this web origin are not allowed. Add it to CHATBOT_CORS_ORIGINS.")
            return

        if scope.get("method") == "GET" and path.startswith(KEYLESS_GET_PREFIXES):
            presented = bearer_key(headers.get("authorization"))
            if presented is not None:  # an operator's key or a user's personal one, which must then own it
                if (key_owner := await owner_for_key(presented, settings)) is None:
                    await refuse(401, WRONG_KEY, {"WWW-Authenticate": "Bearer"})
                    return
                scope = {**scope, "state": {**scope.get("state", {}), "owner_id": key_owner}}
            await self.app(scope, receive, send)
            return

        challenge = {"WWW-Authenticate": "Bearer"}
        if not settings.api_keys and not settings.accounts_enabled:
            await refuse(401, NO_KEYS_CONFIGURED, challenge)
            return
        presented = bearer_key(headers.get("authorization"))
        if presented is None:
            await refuse(401, MISSING_KEY, challenge)
            return
        owner = await owner_for_key(presented, settings)
        if owner is None:
            await refuse(401, WRONG_KEY, challenge)
            return

        limit = MAX_BODY_BYTES
        if path in UPLOAD_PATHS:
            limit = max(limit, settings.max_attachment_bytes + 64 * 1024)
        too_large = f"The request body is larger than {limit / 2**20:.0f} MiB."
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await refuse(413, too_large)
            return
        body, replay = await _read_body(receive, limit)
        if body is None:
            await refuse(413, too_large)
            return

        peer = (scope.get("client") or (None,))[0]
        address = client_address(peer, headers.get("x-forwarded-for"), _trusted(settings.trusted_proxies))
        scope = {**scope, "state": {**scope.get("state", {}), "owner_id": owner, "client_address": address}}
        if origin is not None:
            send = _exposing(send)
        await self.app(scope, replay, send)


async def _read_body(receive: Receive, limit: int) -> tuple[bytes | None, Receive]:
    """Read the whole body (None if it exceeds `limit`), and a `receive` that replays it first."""
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":  # the client went away: let the app see it
            pending: list[Message] = [message]
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None, receive
        chunks.append(chunk)
        more = message.get("more_body", False)
    else:
        pending = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return b"".join(chunks), replay


def _exposing(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            MutableHeaders(scope=message)["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        await send(message)

    return wrapped


def current_owner(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)] = None,
) -> str:
    """The owner id ApiGuard established (the Security parameter documents the key in OpenAPI)."""
    owner = request.scope.get("state", {}).get("owner_id")
    if not isinstance(owner, str):  # only reachable if ApiGuard is not installed
        raise RuntimeError("ApiGuard did not run for this request")
    return owner


Owner = Annotated[str, Depends(current_owner)]


@lru_cache(maxsize=4)
def _trusted(proxies: tuple[str, ...]) -> tuple:  # type: ignore[type-arg]
    return parse_networks(proxies)


def current_address(request: Request) -> str:
    """The client address ApiGuard established: the socket's peer, or X-Forwarded-For behind a trusted proxy."""
    address = request.scope.get("state", {}).get("client_address")
    if not isinstance(address, str):  # only reachable if ApiGuard is not installed
        raise RuntimeError("ApiGuard did not run for this request")
    return address


ClientAddress = Annotated[str, Depends(current_address)]


def request_address(request: Request, settings: Settings) -> str:
    """The client address of a request outside ApiGuard's paths (the sign-in forms), by the same rule."""
    peer = request.client.host if request.client else None
    return client_address(peer, request.headers.get("x-forwarded-for"), _trusted(settings.trusted_proxies))
