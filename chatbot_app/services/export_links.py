"""Short-lived links: the page links to a URL that streams a file (an export, a reply read aloud) for a
few minutes.

A link carries a Fernet token (cryptography: AES-CBC and an HMAC-SHA256, stamped with the time it was
made) over what it serves: for an export, the owner, the conversation (or everything) and the format.
It cannot be forged or altered, it is refused after its time (CHATBOT_EXPORT_LINK_TTL_S for exports),
and it cannot be read either: an anonymous owner id is the browser's secret identity, and links end up
in access logs. Each kind of link has its own key, made from the secret with its purpose: a token of
one kind is no token of another.

Every backend behind nginx must accept every other's links, so they share the secret:
CHATBOT_SECRET_KEY when it is set; otherwise one kept in Redis (SET NX: backends that start together
agree on the first one written; each backend reads it again for every link it makes, so that after
Redis lost it they agree again at once); otherwise (no Redis: one backend process) one made by this
process. The secret is never in a state var, the browser or a log.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken
from redis.asyncio import Redis

from chatbot_app.config import Settings

log = logging.getLogger(__name__)

#: Where the shared secret is kept in Redis when CHATBOT_SECRET_KEY is not set.
REDIS_SECRET_KEY = "chatbot_app:export_link_secret"
#: Keeps keys made from the secret for export links apart from any other use of it.
PURPOSE = b"chatbot_app export links v1\0"
#: What a token's fields may hold (JSON).
Fields = list[str | int | None]


class LinksUnavailable(RuntimeError):
    """The shared secret could not be read (Redis is down): no link can be made or checked right now."""


@dataclass(frozen=True, slots=True)
class ExportTicket:
    """What a link exports: the owner's conversations (all when `conversation_id` is None), as `export_format`."""

    owner_id: str
    conversation_id: str | None
    export_format: str


def export_url(token: str) -> str:
    """The backend path a link's token is served at."""
    return f"/api/exports/{token}"


class SignedLinks:
    """Seals a few fields into a link's token, and opens them again, with the deployment's shared secret."""

    def __init__(
        self,
        settings: Settings,
        *,
        purpose: bytes,
        ttl_s: int,
        clock: Callable[[], float] = time.time,
        redis_key: str = REDIS_SECRET_KEY,
    ) -> None:
        self.ttl_s = ttl_s
        self._purpose = purpose
        self._redis_url = None if settings.secret_key else settings.redis_url
        self._redis_key = redis_key
        self._redis: Redis | None = None
        self._clock = clock
        self._secret = settings.secret_key.encode() if settings.secret_key else secrets.token_hex(32).encode()
        self._fernet = _fernet(purpose, self._secret)
        self._known = False  # a secret was read from Redis at least once
        self._lock = asyncio.Lock()

    async def seal(self, fields: Fields) -> str:
        """A token for `fields`, good for `ttl_s` seconds from now; raises LinksUnavailable."""
        payload = json.dumps(fields).encode()
        key = await self._shared_key() if self._redis_url else self._fernet
        return key.encrypt_at_time(payload, int(self._clock())).decode("ascii")

    async def unseal(self, token: str) -> Fields | None:
        """The fields a token was sealed over; None if it is forged, altered, malformed or expired."""
        if not 40 <= len(token) <= 2000:
            return None
        fields = self._decrypt(self._fernet, token)
        if fields is None and self._redis_url:  # the deployment's secret may have changed (Redis lost it)
            known = self._fernet
            if (key := await self._shared_key()) is not known:
                fields = self._decrypt(key, token)
        return fields

    def _decrypt(self, key: Fernet, token: str) -> Fields | None:
        try:
            fields = json.loads(key.decrypt_at_time(token.encode("ascii"), self.ttl_s, int(self._clock())))
        except (InvalidToken, UnicodeEncodeError, ValueError, TypeError):
            return None
        return fields if isinstance(fields, list) else None

    async def _shared_key(self) -> Fernet:
        """The key from the secret in Redis, read afresh (links are made rarely: one read each).

        Redis without the secret (new, or restarted empty) gets this process's, unless another backend
        was first; a Redis that cannot be reached leaves the last known secret in use.
        """
        async with self._lock:
            try:
                if self._redis is None:
                    self._redis = Redis.from_url(self._redis_url or "")
                await self._redis.set(self._redis_key, self._secret, nx=True)
                stored = await self._redis.get(self._redis_key)
            except Exception as exc:  # redis-py raises RedisError and OSError subclasses alike
                if self._known:
                    log.warning("export links: Redis unreachable, the last known secret is used")
                    return self._fernet
                raise LinksUnavailable("the export links' secret could not be read from Redis") from exc
            if not stored:
                raise LinksUnavailable("the export links' secret is missing from Redis")
            self._known = True
            if bytes(stored) != self._secret:
                self._secret, self._fernet = bytes(stored), _fernet(self._purpose, bytes(stored))
            return self._fernet


class ExportLinks(SignedLinks):
    """Export links: a token over an `ExportTicket`, good for CHATBOT_EXPORT_LINK_TTL_S."""

    def __init__(
        self, settings: Settings, clock: Callable[[], float] = time.time, redis_key: str = REDIS_SECRET_KEY
    ) -> None:
        super().__init__(settings, purpose=PURPOSE, ttl_s=settings.export_link_ttl_s, clock=clock, redis_key=redis_key)

    async def token(self, ticket: ExportTicket) -> str:
        """A token for `ticket`, good for `ttl_s` seconds from now; raises LinksUnavailable."""
        return await self.seal([ticket.owner_id, ticket.conversation_id, ticket.export_format])

    async def open(self, token: str) -> ExportTicket | None:
        """The ticket a token stands for; None if it is forged, altered, malformed or expired."""
        match await self.unseal(token):
            case [str(owner_id), str() | None as conversation_id, str(export_format)]:
                return ExportTicket(owner_id, conversation_id, export_format)
        return None


def _fernet(purpose: bytes, secret: bytes) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(purpose + secret).digest()))
