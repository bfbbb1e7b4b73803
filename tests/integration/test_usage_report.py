"""The usage charts' data on both databases: tokens per day and model of the last 30 days in one grouped
query, every day present (zero when unused), a user's own or everyone's (admins only), and the top users.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta

import pytest
from sqlalchemy import Engine, event
from sqlmodel import Session

from chatbot_app.config import Settings
from chatbot_app.services.accounts import Accounts, NotAllowed
from chatbot_app.services.usage_report import OTHER_MODELS, TopUser, usage_chart
from chatbot_app.storage import usage as usage_store
from chatbot_app.storage.models import DailyUsage, User
from tests.conftest import Clock

DAYS = 30


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def accounts(settings: Settings, engine: Engine, clock: Clock) -> Iterator[Accounts]:
    made = Accounts(settings, engine, clock=clock)
    yield made
    made.passwords.close()


def add_user(engine: Engine, email: str, admin: bool = False, disabled: bool = False) -> int:
    with Session(engine) as session:
        user = User(email=email, role="admin" if admin else "user", disabled=disabled)
        session.add(user)
        session.commit()
        assert user.id is not None
        return user.id


def spend(engine: Engine, user_id: int, day: date, model: str, prompt: int, completion: int, calls: int = 1) -> None:
    with Session(engine) as session:
        usage = DailyUsage(
            user_id=user_id, day=day, model=model, messages=calls, prompt_tokens=prompt, completion_tokens=completion
        )
        session.add(usage)
        session.commit()


@pytest.fixture
def two_users(engine: Engine, clock: Clock) -> tuple[int, int, date]:
    """An admin and a user, with use today, 3 days ago, 29 days ago (the period's first day) and 30 days
    ago (just outside it)."""
    today = clock().date()
    admin, user = add_user(engine, "admin@example.com", admin=True), add_user(engine, "user@example.com")
    spend(engine, user, today, "llama-3.1-8b", 100, 50)
    spend(engine, user, today, "fake-large", 10, 5)
    spend(engine, user, today - timedelta(days=3), "llama-3.1-8b", 7, 3)
    spend(engine, user, today - timedelta(days=29), "fake-large", 1, 1)
    spend(engine, user, today - timedelta(days=30), "fake-large", 1_000, 1_000)  # outside
    spend(engine, admin, today, "llama-3.1-8b", 1_000, 1_000, calls=4)
    return admin, user, today


def count_queries(engine: Engine) -> list[str]:
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda _c, _cur, sql, *_: statements.append(sql))
    return statements


def test_tokens_per_day_is_one_grouped_query_over_the_period(engine: Engine, two_users: tuple[int, int, date]) -> None:
    _admin, user, today = two_users
    since = today - timedelta(days=DAYS - 1)
    with Session(engine) as session:
        session.connection()  # the connection's own set-up statements are not the query's
        statements = count_queries(engine)
        own = usage_store.tokens_per_day(session, since, user)
        everyone = usage_store.tokens_per_day(session, since)

    assert len(statements) == 2  # one each, whatever the number of days
    assert own == [
        (since, "fake-large", 2),
        (today - timedelta(days=3), "llama-3.1-8b", 10),
        (today, "fake-large", 15),
        (today, "llama-3.1-8b", 150),
    ]
    assert (today, "llama-3.1-8b", 2_150) in everyone
    assert all(day >= since for day, _model, _tokens in everyone)


async def test_a_users_chart_has_every_day_of_the_period_with_zero_for_unused_ones(
    accounts: Accounts, two_users: tuple[int, int, date]
) -> None:
    _admin, user, today = two_users

    chart = await accounts.usage_chart(user, DAYS)

    assert chart.days == [today - timedelta(days=DAYS - 1 - n) for n in range(DAYS)]
    assert chart.series == ["llama-3.1-8b", "fake-large"]  # most tokens first
    by_day = dict(zip(chart.days, chart.tokens, strict=True))
    assert by_day[today] == [150, 15]
    assert by_day[today - timedelta(days=3)] == [10, 0]
    assert by_day[today - timedelta(days=DAYS - 1)] == [0, 2]
    assert by_day[today - timedelta(days=1)] == [0, 0]
    assert chart.total == 150 + 15 + 10 + 2  # the day 30 days ago is outside the period


async def test_everyones_chart_and_the_top_users_are_for_admins_only(
    accounts: Accounts, engine: Engine, two_users: tuple[int, int, date]
) -> None:
    admin, user, today = two_users
    disabled_admin = add_user(engine, "gone@example.com", admin=True, disabled=True)

    everyone = await accounts.usage_chart(admin, DAYS, everyone=True)
    top = await accounts.top_users(admin, DAYS, limit=10)

    assert dict(zip(everyone.days, everyone.tokens, strict=True))[today] == [2_150, 15]
    assert top == [TopUser(admin, "admin@example.com", 2_000, 4), TopUser(user, "user@example.com", 177, 4)]
    assert await accounts.top_users(admin, DAYS, limit=1) == top[:1]
    for caller in (user, disabled_admin, 999_999):
        with pytest.raises(NotAllowed):
            await accounts.usage_chart(caller, DAYS, everyone=True)
        with pytest.raises(NotAllowed):
            await accounts.top_users(caller, DAYS)


async def test_no_use_is_an_empty_chart_of_zeros(accounts: Accounts, engine: Engine) -> None:
    user = add_user(engine, "new@example.com")

    chart = await accounts.usage_chart(user, DAYS)

    assert (chart.series, chart.total, len(chart.days)) == ([], 0, DAYS)
    assert all(day == [] for day in chart.tokens)


def test_models_past_the_sixth_are_drawn_together() -> None:
    today = date(2026, 3, 14)
    rows = [(today, f"model-{n}", 100 - n) for n in range(8)]

    chart = usage_chart(rows, today, 7)

    assert chart.series == [*(f"model-{n}" for n in range(5)), OTHER_MODELS]
    assert chart.tokens[-1] == [100, 99, 98, 97, 96, 95 + 94 + 93]
    assert chart.total == sum(100 - n for n in range(8))
