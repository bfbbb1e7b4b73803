"""services/quota.py on both databases: a call holds its largest cost before it starts and settles to its use,
so concurrent calls, stopped replies and expired reservations can never take a user past the day's quota.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from chatbot_app.providers.base import ChatMessage, ToolCall, Usage
from chatbot_app.services.quota import (
    IMAGE_TOKENS,
    MESSAGE_OVERHEAD_TOKENS,
    RESERVATION_TTL,
    QuotaExceeded,
    Reservation,
    Spent,
    TokenQuota,
    prompt_token_bound,
)
from chatbot_app.storage.models import DailyUsage, TokenLedger, TokenReservation, User, utcnow
from tests.conftest import Clock

ANONYMOUS = "browser-identity-" + "x" * 16


def _user(engine: Engine, quota: int | None = None) -> str:
    with Session(engine) as session:
        user = User(email=f"u{utcnow().timestamp()}@example.com", daily_token_quota=quota)
        session.add(user)
        session.commit()
        return user.owner_id


def _ledger(engine: Engine) -> tuple[int, int]:
    with Session(engine) as session:
        rows = session.exec(select(TokenLedger)).all()
        return sum(r.used_tokens for r in rows), sum(r.reserved_tokens for r in rows)


async def test_a_call_holds_its_largest_cost_and_settles_to_its_use(engine: Engine) -> None:
    quota = TokenQuota(engine, default_limit=1_000)
    owner = _user(engine)

    reservation = await quota.reserve(owner, 100, 500)
    held = _ledger(engine)
    await quota.settle(reservation, Spent("fake-large", 80, 40))

    assert (reservation.prompt_tokens, reservation.max_tokens) == (100, 500)
    assert held == (0, 600)
    assert _ledger(engine) == (120, 0)
    with Session(engine) as session:
        [usage] = session.exec(select(DailyUsage)).all()
        assert session.exec(select(TokenReservation)).all() == []
    assert (usage.model, usage.messages, usage.prompt_tokens, usage.completion_tokens) == ("fake-large", 1, 80, 40)


async def test_the_completion_budget_is_cut_to_what_is_left_and_a_spent_day_refuses(engine: Engine) -> None:
    quota = TokenQuota(engine, default_limit=300)
    owner = _user(engine)

    first = await quota.reserve(owner, 100, 1024)
    with pytest.raises(QuotaExceeded, match="today's 300 tokens"):
        await quota.reserve(owner, 100, 1024)  # the first holds all of it
    with pytest.raises(QuotaExceeded):
        await quota.check(owner)
    await quota.settle(first, Spent("m", 100, 50))  # it used less: the rest is free again
    second = await quota.reserve(owner, 100, 1024)

    assert first.max_tokens == 200
    assert second.max_tokens == 300 - 150 - 100
    assert _ledger(engine) == (150, 150)


async def test_concurrent_calls_never_hold_more_than_the_quota(engine: Engine) -> None:
    quota = TokenQuota(engine, default_limit=1_000)
    owner = _user(engine)

    async def one() -> Reservation | None:
        try:
            return await quota.reserve(owner, 50, 100)
        except QuotaExceeded:
            return None

    results = await asyncio.gather(*(one() for _ in range(20)))
    held = [r for r in results if r is not None]

    assert sum(r.prompt_tokens + r.max_tokens for r in held) <= 1_000
    assert _ledger(engine) == (0, sum(r.prompt_tokens + r.max_tokens for r in held))
    assert len(held) >= 6  # 150 each: at least six fit whole


async def test_anonymous_identities_and_operator_keys_have_no_quota(engine: Engine) -> None:
    quota = TokenQuota(engine, default_limit=1)

    reservation = await quota.reserve(ANONYMOUS, 10_000, 10_000)
    await quota.settle(reservation, Spent("m", 10_000, 10_000))
    await quota.check("key_" + "0" * 32)

    assert (reservation.user_id, reservation.max_tokens) == (None, 10_000)
    assert _ledger(engine) == (0, 0)


async def test_a_users_own_quota_overrides_the_default_and_a_new_day_starts_afresh(engine: Engine) -> None:
    clock = Clock()
    quota = TokenQuota(engine, default_limit=None, clock=clock)
    limited, unlimited = _user(engine, quota=100), _user(engine)

    await quota.settle(await quota.reserve(limited, 50, 50), Spent("m", 50, 50))
    await quota.settle(await quota.reserve(unlimited, 5_000, 5_000), Spent("m", 5_000, 5_000))
    with pytest.raises(QuotaExceeded, match="today's 100 tokens"):
        await quota.check(limited)
    await quota.check(unlimited)
    clock.now += timedelta(days=1)
    await quota.check(limited)


async def test_a_reservation_never_settled_is_released_when_it_expires(engine: Engine) -> None:
    clock = Clock()
    quota = TokenQuota(engine, default_limit=1_000, clock=clock)
    owner = _user(engine)
    orphan = await quota.reserve(owner, 100, 900)  # its process "died": it never settles

    assert await quota.release_expired() == 0
    clock.now += RESERVATION_TTL + timedelta(seconds=1)
    assert await quota.release_expired() == 1
    late = await quota.reserve(owner, 100, 900)
    await quota.settle(orphan, Spent("m", 100, 20))  # a late settle counts its use, releases nothing twice

    assert late.max_tokens == 900
    assert _ledger(engine) == (120, 1_000)


def test_spent_without_a_usage_report_is_estimated_and_never_more_than_was_held() -> None:
    held = Reservation("user:1", 1, 1, utcnow().date(), prompt_tokens=40, max_tokens=10)

    reported = Spent.of(held, "m", Usage(30, 5), prompt_estimate=999, streamed="ignored")
    stopped = Spent.of(held, "m", None, prompt_estimate=25, streamed="word " * 100)
    refused = Spent.of(held, "m", None, prompt_estimate=25, streamed="")

    assert (reported.prompt_tokens, reported.completion_tokens) == (30, 5)
    assert (stopped.prompt_tokens, stopped.completion_tokens) == (25, 10)  # 125 estimated, 10 allowed
    assert (refused.prompt_tokens, refused.completion_tokens) == (0, 0)  # nothing reached the provider


def test_the_prompt_bound_is_its_utf8_bytes_and_overheads() -> None:
    messages = [ChatMessage("system", "Be brief."), ChatMessage("user", "héllo", images=("data:image/png;base64,",))]

    assert prompt_token_bound(messages) == 9 + 6 + 2 * MESSAGE_OVERHEAD_TOKENS + IMAGE_TOKENS


def test_the_prompt_bound_counts_the_calls_sent_back_and_the_functions_offered() -> None:
    asked = ChatMessage("assistant", "", tool_calls=(ToolCall("c1", "search_files", '{"query": "ü"}'),))
    answered = ChatMessage("tool", "found", tool_call_id="c1")
    tools = ({"type": "function", "function": {"name": "search_files"}},)

    calls = len("c1") + len("search_files") + len('{"query": "ü"}'.encode())
    messages = calls + len("found") + len("c1") + 2 * MESSAGE_OVERHEAD_TOKENS
    assert prompt_token_bound([asked, answered]) == messages
    assert prompt_token_bound([asked, answered], tools) == messages + len(json.dumps(list(tools)))
