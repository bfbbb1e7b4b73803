"""The daily token quota: reserve before each provider call, settle to what it used.

A call holds its largest possible cost before it starts: an upper bound of the prompt's tokens
plus the completion's `max_tokens`, the latter cut to what is left of the day. So calls that run at
once, or a reply that is stopped, hung up or cut before any usage report, can never take a user
past the quota: the provider cannot produce more than it was allowed to. At the end the call
settles to the usage the provider reported or, without one, to an estimate from the text that was
streamed (never more than was held), and the rest of the reservation is released.

Only signed-in users ("user:<id>") have a quota; anonymous browsers and operator keys do not.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import partial

from sqlalchemy import Engine
from sqlmodel import Session

from chatbot_app.providers.base import ChatMessage, Usage
from chatbot_app.services.context import estimate_tokens
from chatbot_app.storage import usage as store
from chatbot_app.storage.database import Database
from chatbot_app.storage.models import utcnow

log = logging.getLogger(__name__)

#: Per message, what a chat template adds around its text (role markers, separators), in tokens at most.
MESSAGE_OVERHEAD_TOKENS = 8
#: What one image may cost a vision model, held in full (Groq's vision models count well under this
#: for the 2048-pixel images we send).
IMAGE_TOKENS = 8_192
#: A reply is not started with room for fewer tokens than this: it would be cut almost at once.
MIN_REPLY_TOKENS = 16
#: A reservation that a call has not settled within this is taken for a dead process's and released.
RESERVATION_TTL = timedelta(minutes=30)
#: Speech to text counts this many tokens per second of audio (see docs/accounts.md, "The daily quota").
TRANSCRIPTION_TOKENS_PER_S = 10
#: Read aloud counts this many tokens per character spoken: speech models are billed by the character, and a
#: character of speech costs about what a token of chat does (see docs/accounts.md, "The daily quota").
SPEECH_TOKENS_PER_CHAR = 1
#: The lowest bitrate we assume when holding tokens for an audio file before its duration is known.
MIN_AUDIO_BYTES_PER_S = 1_000


class QuotaExceeded(Exception):
    """The user has spent the day's tokens (or the call needs more than is left): nothing went to the provider."""


def prompt_token_bound(messages: Sequence[ChatMessage], tools: Sequence[Mapping[str, object]] = ()) -> int:
    """At most how many tokens a provider counts for `messages` (with the tool calls they carry) and the
    functions `tools` offers.

    No tokenizer makes more tokens of a text than it has UTF-8 bytes (byte-level BPE and byte
    fallback both cover at least one byte per token), so bytes bound the text, whatever its language;
    the functions' JSON, with non-ASCII escaped, never has fewer bytes than their UTF-8.
    """
    offered = len(json.dumps(list(tools))) if tools else 0
    return offered + sum(_message_bytes(m) + MESSAGE_OVERHEAD_TOKENS + IMAGE_TOKENS * len(m.images) for m in messages)


def _message_bytes(message: ChatMessage) -> int:
    calls = "".join(f"{c.id}{c.name}{c.arguments}" for c in message.tool_calls)
    return len(f"{message.content}{calls}{message.tool_call_id or ''}".encode("utf-8", "replace"))


def audio_token_bound(size_bytes: int) -> int:
    """Tokens to hold for an audio file of `size_bytes` before its duration is known."""
    return TRANSCRIPTION_TOKENS_PER_S * (size_bytes // MIN_AUDIO_BYTES_PER_S + 1)


def audio_tokens(duration_s: float) -> int:
    """What `duration_s` seconds of transcribed audio count as."""
    return max(1, round(duration_s * TRANSCRIPTION_TOKENS_PER_S))


def speech_tokens(chars: int) -> int:
    """What reading `chars` characters aloud counts as."""
    return chars * SPEECH_TOKENS_PER_CHAR


def user_id_of(owner_id: str) -> int | None:
    """The user id in a "user:<id>" owner id; None for anonymous and operator-key owners."""
    prefix, _, number = owner_id.partition(":")
    return int(number) if prefix == "user" and number.isascii() and number.isdigit() else None


def quota_message(limit: int) -> str:
    return f"You have used today's {limit:,} tokens. The quota starts again at midnight UTC, or an admin can raise it."


@dataclass(frozen=True, slots=True)
class Reservation:
    """Tokens held for one call. `max_tokens` is the completion budget the call may use (cut to what is left)."""

    owner_id: str
    user_id: int | None
    id: int | None
    day: date
    prompt_tokens: int
    max_tokens: int


@dataclass(frozen=True, slots=True)
class Spent:
    """What a call used: reported by the provider, or estimated from its text when it reported nothing."""

    model: str
    prompt_tokens: int
    completion_tokens: int

    @classmethod
    def of(
        cls, reservation: Reservation, model: str, usage: Usage | None, *, prompt_estimate: int, streamed: str = ""
    ) -> Spent:
        """The usage if the provider reported it; else estimates, each capped by what was held for it.

        A call that streamed nothing and reported nothing (refused, or failed before its first token) counts 0.
        """
        prompt = usage.prompt_tokens if usage is not None else None
        completion = usage.completion_tokens if usage is not None else None
        if prompt is None:
            prompt = min(prompt_estimate, reservation.prompt_tokens) if streamed or completion else 0
        if completion is None:
            completion = min(estimate_tokens(streamed), reservation.max_tokens) if streamed else 0
        return cls(model, prompt, completion)


class TokenQuota:
    """Reservations and settlements against each signed-in user's daily tokens (CHATBOT_DAILY_TOKENS_PER_USER,
    or the user's own quota set by an admin)."""

    def __init__(self, engine: Engine, default_limit: int | None, clock: Callable[[], datetime] = utcnow) -> None:
        self._db = Database(engine).run
        self.default_limit = default_limit
        self.clock = clock

    async def check(self, owner_id: str, needed: int = MIN_REPLY_TOKENS) -> None:
        """Raise QuotaExceeded if less than `needed` tokens are left of the day (a cheap early refusal; `reserve`
        is the guarantee)."""
        if (user_id := user_id_of(owner_id)) is None:
            return
        day = self.clock().date()

        def work(session: Session) -> int | None:
            limit = store.daily_limit(session, user_id, self.default_limit)
            if limit is None:
                return None
            used, reserved = store.ledger(session, user_id, day)
            return limit if used + reserved + needed > limit else None

        if (spent_limit := await self._db(work)) is not None:
            raise QuotaExceeded(quota_message(spent_limit))

    async def reserve(self, owner_id: str, prompt_tokens: int, max_tokens: int) -> Reservation:
        """Hold `prompt_tokens` plus up to `max_tokens` for one call; raises QuotaExceeded when too little is left.

        The completion budget is cut to what the day has left, so the call can never pass the quota.
        """
        user_id = user_id_of(owner_id)
        day = self.clock().date()
        if user_id is None:
            return Reservation(owner_id, None, None, day, prompt_tokens, max_tokens)
        expires_at = self.clock() + RESERVATION_TTL

        def work(session: Session) -> Reservation:
            limit = store.daily_limit(session, user_id, self.default_limit)
            for _ in range(3):  # another call may hold tokens between our read and our hold: read again
                used, reserved = store.ledger(session, user_id, day)
                room = max_tokens if limit is None else min(max_tokens, limit - used - reserved - prompt_tokens)
                if limit is not None and room < min(MIN_REPLY_TOKENS, max_tokens):
                    raise QuotaExceeded(quota_message(limit))
                if store.hold(session, user_id, day, prompt_tokens + room, limit):
                    held = store.add_reservation(session, user_id, day, prompt_tokens + room, expires_at)
                    return Reservation(owner_id, user_id, held, day, prompt_tokens, room)
            raise QuotaExceeded(quota_message(limit or 0))

        return await self._db(work)

    async def settle(self, reservation: Reservation, spent: Spent) -> None:
        """Count what the call used (and the per-model totals the usage pages show); release the rest."""
        if reservation.user_id is None:
            return
        used = spent.prompt_tokens + spent.completion_tokens

        def work(session: Session) -> None:
            store.settle(session, reservation.id, reservation.user_id, reservation.day, used)  # type: ignore[arg-type]
            if spent.model:
                store.add_daily_usage(
                    session,
                    reservation.user_id,  # type: ignore[arg-type]
                    reservation.day,
                    spent.model,
                    spent.prompt_tokens,
                    spent.completion_tokens,
                )

        await self._db(work)

    async def release(self, reservation: Reservation) -> None:
        """Give back a reservation whose call never reached the provider."""
        await self.settle(reservation, Spent("", 0, 0))

    async def release_expired(self) -> int:
        """Release reservations whose calls never settled (their process died); run now and then."""
        return await self._db(partial(store.release_expired, now=self.clock()))
