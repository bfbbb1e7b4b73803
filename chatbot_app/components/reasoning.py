"""A reasoning model's thinking: a collapsed "Thinking" section above its answer."""

from __future__ import annotations

import reflex as rx

from chatbot_app.state.reply import ReplyState


def _section(summary: rx.Component, body: rx.Component) -> rx.Component:
    # <details> is collapsed until the user opens it, with no state round trip.
    return rx.el.details(
        rx.el.summary(summary, class_name="reasoning-summary"),
        body,
        custom_attrs={"data-testid": "reasoning"},
        class_name="reasoning",
    )


def reasoning_section(reasoning: rx.Var[str], label: rx.Var[str]) -> rx.Component:
    """A finished reply's whole reasoning, collapsed; the label says how long it took."""
    return rx.cond(
        reasoning != "",
        _section(
            rx.text(label, size="1", color_scheme="gray", as_="span"),
            rx.text(reasoning, size="2", color_scheme="gray", white_space="pre-wrap", class_name="reasoning-text"),
        ),
    )


def live_reasoning() -> rx.Component:
    """While a reply thinks: only the last few words (a frame carries them, never the whole reasoning)."""
    return rx.cond(
        ReplyState.reasoning_tail != "",
        _section(
            rx.hstack(
                rx.cond(ReplyState.stream_part_0 == "", rx.spinner(size="1")),
                rx.text(rx.cond(ReplyState.stream_part_0 == "", "Thinking…", "Thought"), size="1", as_="span"),
                align="center",
                display="inline-flex",
            ),
            rx.text("…" + ReplyState.reasoning_tail, size="2", color_scheme="gray", class_name="reasoning-text"),
        ),
    )
