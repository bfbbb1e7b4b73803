"""Usage as the charts draw it: tokens per day of the last days, by model, every day present (zero when unused).

A chart stays readable with a few series: the models that spent the most each get their own, and the
rest are drawn together as one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

#: How many models get a series of their own; the others share OTHER_MODELS.
MAX_SERIES = 6
OTHER_MODELS = "Other models"


@dataclass(frozen=True, slots=True)
class UsageChart:
    """`tokens[d][s]`: the tokens of series `s` on `days[d]` (oldest day first)."""

    days: list[date]
    series: list[str]
    tokens: list[list[int]]

    @property
    def total(self) -> int:
        return sum(sum(day) for day in self.tokens)


@dataclass(frozen=True, slots=True)
class TopUser:
    user_id: int
    email: str | None
    tokens: int
    messages: int


def usage_chart(
    rows: Iterable[tuple[date, str, int]], last_day: date, days: int, max_series: int = MAX_SERIES
) -> UsageChart:
    """The chart of `days` days up to `last_day` from (day, model, tokens) rows; rows outside are left out."""
    first_day = last_day - timedelta(days=days - 1)
    kept = [(day, model, tokens) for day, model, tokens in rows if first_day <= day <= last_day]
    per_model: dict[str, int] = {}
    for _day, model, tokens in kept:
        per_model[model] = per_model.get(model, 0) + tokens
    ranked = sorted(per_model, key=lambda model: (-per_model[model], model))
    own = ranked if len(ranked) <= max_series else ranked[: max_series - 1]
    series = own + ([OTHER_MODELS] if len(own) < len(ranked) else [])
    index = {model: number for number, model in enumerate(own)}
    tokens = [[0] * len(series) for _ in range(days)]
    for day, model, spent in kept:
        tokens[(day - first_day).days][index.get(model, len(own))] += spent
    return UsageChart([first_day + timedelta(days=n) for n in range(days)], series, tokens)
