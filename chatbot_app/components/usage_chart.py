"""Tokens per day of the last 30 days, by model, as a stacked bar chart (/account and /admin)."""

from __future__ import annotations

import reflex as rx

from chatbot_app.services.usage_report import MAX_SERIES, OTHER_MODELS

#: Each series' colour, by position: Radix scales, which have a light and a dark shade of their own.
SERIES_COLORS = [f"var(--{scale}-9)" for scale in ("indigo", "teal", "amber", "crimson", "grass", "cyan")]
OTHER_COLOR = "var(--gray-9)"
assert len(SERIES_COLORS) >= MAX_SERIES
AXIS_COLOR = "var(--gray-11)"
TICKS = {"fontSize": 11, "fill": AXIS_COLOR}
#: 12,500 tokens as "12.5K" on the axis (the table beside the chart has the exact numbers).
COMPACT_NUMBER = rx.vars.FunctionStringVar.create(
    '(value) => new Intl.NumberFormat(undefined, { notation: "compact" }).format(value)'
)


def _bar(series: rx.Var[dict[str, str]], index: rx.Var[int]) -> rx.Component:
    return rx.recharts.bar(
        data_key=series["key"],
        name=series["name"],
        fill=rx.cond(series["name"] == OTHER_MODELS, OTHER_COLOR, rx.Var.create(SERIES_COLORS)[index]),
        stack_id="tokens",
        is_animation_active=False,
    )


def usage_chart(points: rx.Var[list[dict[str, str | int]]], series: rx.Var[list[dict[str, str]]]) -> rx.Component:
    """The chart (`points`: {"day", "s0", "s1", ...} per day; `series`: {"key", "name"} per model),
    or a plain sentence when there was no use at all."""
    return rx.box(
        rx.cond(
            series.length() > 0,  # type: ignore[attr-defined]
            rx.recharts.responsive_container(
                rx.recharts.bar_chart(
                    rx.recharts.cartesian_grid(stroke_dasharray="3 3", stroke="var(--gray-a5)", vertical=False),
                    rx.recharts.x_axis(data_key="day", stroke=AXIS_COLOR, tick=TICKS, min_tick_gap=8),
                    rx.recharts.y_axis(stroke=AXIS_COLOR, tick=TICKS, width=48, tick_formatter=COMPACT_NUMBER),
                    rx.recharts.graphing_tooltip(
                        content_style={"background": "var(--color-panel-solid)", "border": "1px solid var(--gray-a6)"},
                        cursor={"fill": "var(--gray-a3)"},
                    ),
                    rx.recharts.legend(),
                    rx.foreach(series, _bar),
                    data=points,
                    margin={"top": 8, "right": 8, "left": 0, "bottom": 0},
                ),
                width="100%",
                height=280,
            ),
            rx.center(
                rx.text("No usage in the last 30 days: the chart fills in as you chat.", size="2", color_scheme="gray"),
                height="6rem",
                width="100%",
                class_name="usage-chart-empty",
            ),
        ),
        role="figure",
        aria_label="Tokens per day of the last 30 days, by model",
        custom_attrs={"data-testid": "usage-chart"},
        width="100%",
        min_width="0",
    )
