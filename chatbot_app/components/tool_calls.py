"""A reply's tool calls, each collapsed to its name and status, and the web sources its answer used.

Contract for browser tests (issue 21): each call is `[data-testid="tool-call"]` with `data-name` and
`data-status`; its approval buttons are `[data-testid="tool-approve"]` and `[data-testid="tool-deny"]`;
each source is `a[data-testid="source"]`.
"""

from __future__ import annotations

import reflex as rx

from chatbot_app.state.reply import ReplyState
from chatbot_app.state.views import SourceView, ToolCallView

_STATUS_LABELS = {
    "running": "Running…",
    "awaiting-approval": "Waiting for your approval",
    "done": "Done",
    "error": "Failed",
    "denied": "Denied",
}
_STATUS_COLORS = {"running": "blue", "awaiting-approval": "amber", "done": "green", "error": "red", "denied": "gray"}


def _status(status: rx.Var[str]) -> rx.Component:
    return rx.match(
        status,
        *(
            (value, rx.badge(label, color_scheme=_STATUS_COLORS[value], size="1"))
            for value, label in _STATUS_LABELS.items()
        ),
        rx.badge(status, size="1"),
    )


def _block(label: str, text: rx.Var[str]) -> rx.Component:
    return rx.cond(
        text != "",
        rx.box(
            rx.text(label, size="1", weight="medium", color_scheme="gray"),
            rx.el.pre(text, class_name="tool-call-text"),
        ),
    )


def _approval(call: ToolCallView) -> rx.Component:
    """Approve once or Deny; a call whose arguments are too long to show whole can only be denied."""
    return rx.hstack(
        rx.cond(
            call.arguments_cut,
            rx.text("Its arguments are too long to show whole: deny it.", size="1", color_scheme="amber"),
            rx.button(
                "Approve once",
                size="1",
                on_click=ReplyState.answer_tool(call.call_id, True),
                custom_attrs={"data-testid": "tool-approve"},
            ),
        ),
        rx.button(
            "Deny",
            size="1",
            variant="soft",
            color_scheme="gray",
            on_click=ReplyState.answer_tool(call.call_id, False),
            custom_attrs={"data-testid": "tool-deny"},
        ),
        spacing="2",
        class_name="tool-approval",
    )


def tool_call(call: ToolCallView, *, live: bool) -> rx.Component:
    """One call; a live one waiting for approval shows its buttons outside the collapsed part."""
    return rx.box(
        rx.el.details(
            rx.el.summary(
                rx.hstack(
                    rx.icon("wrench", size=14, aria_hidden="true"),
                    rx.code(call.name, size="1"),
                    rx.cond(call.server != "", rx.text("· " + call.server, size="1", color_scheme="gray")),
                    _status(call.status),
                    rx.text(call.duration, size="1", color_scheme="gray"),
                    align="center",
                    spacing="2",
                    display="inline-flex",
                ),
                class_name="tool-call-summary",
            ),
            _block("Arguments", call.arguments),
            _block(rx.cond(call.status == "done", "Result", "Error"), call.result),  # type: ignore[arg-type]
        ),
        rx.cond(call.status == "awaiting-approval", _approval(call)) if live else rx.fragment(),
        custom_attrs={"data-testid": "tool-call", "data-name": call.name, "data-status": call.status},
        class_name="tool-call",
    )


def tool_calls(calls: rx.Var[list[ToolCallView]], *, live: bool = False) -> rx.Component:
    return rx.cond(
        calls.length() > 0,  # type: ignore[attr-defined]
        rx.vstack(rx.foreach(calls, lambda call: tool_call(call, live=live)), spacing="1", class_name="tool-calls"),
    )


def sources(items: rx.Var[list[SourceView]]) -> rx.Component:
    """Numbered links to the pages a search used, each opening in a new tab."""
    return rx.cond(
        items.length() > 0,  # type: ignore[attr-defined]
        rx.box(
            rx.text("Sources", size="1", weight="medium", color_scheme="gray"),
            rx.el.ol(
                rx.foreach(
                    items,
                    lambda source: rx.el.li(
                        rx.el.a(
                            source.title,
                            href=source.url,
                            target="_blank",
                            rel="noopener noreferrer nofollow",
                            custom_attrs={"data-testid": "source"},
                        )
                    ),
                ),
            ),
            class_name="sources",
        ),
    )
