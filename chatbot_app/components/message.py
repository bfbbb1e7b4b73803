"""A chat message: the user's on the right, the assistant's as rendered Markdown."""

from __future__ import annotations

import reflex as rx

from chatbot_app.components.markdown import markdown
from chatbot_app.state.chat import ChatState
from chatbot_app.state.views import MessageView


def _status_badge(status: rx.Var[str]) -> rx.Component:
    return rx.match(
        status,
        ("stopped", rx.badge("stopped", color_scheme="gray", variant="soft")),
        ("interrupted", rx.badge("interrupted", color_scheme="orange", variant="soft")),
        ("error", rx.badge("error", color_scheme="red", variant="soft")),
        rx.fragment(),
    )


def _assistant_bubble(content: rx.Var[str], footer: rx.Component, status: rx.Var[str] | str) -> rx.Component:
    return rx.box(
        markdown(content),
        footer,
        custom_attrs={"data-testid": "message", "data-role": "assistant", "data-status": status},
        class_name="message assistant-message",
        width="100%",
    )


def _user_bubble(content: rx.Var[str]) -> rx.Component:
    return rx.flex(
        rx.box(
            rx.text(content, white_space="pre-wrap", class_name="user-text"),
            custom_attrs={"data-testid": "message", "data-role": "user"},
            class_name="message user-message",
        ),
        justify="end",
        width="100%",
    )


def message_row(message: MessageView) -> rx.Component:
    return rx.box(
        _message(message),
        id="m-" + message.id.to_string(),
        class_name=rx.cond(message.id == ChatState.focus_message_id, "message-row focused", "message-row"),
        width="100%",
    )


def _message(message: MessageView) -> rx.Component:
    return rx.cond(
        message.role == "user",
        _user_bubble(message.content),
        _assistant_bubble(
            message.content,
            rx.vstack(
                rx.cond(
                    message.error != "", rx.callout(message.error, icon="triangle_alert", color_scheme="red", size="1")
                ),
                rx.hstack(
                    _status_badge(message.status),
                    rx.text(message.details, size="1", color_scheme="gray", class_name="message-details"),
                    align="center",
                ),
                spacing="1",
                align="start",
            ),
            message.status,
        ),
    )


def streaming_row() -> rx.Component:
    """The reply being generated; it reads only `stream_text`, so frames stay small."""
    return rx.cond(
        ChatState.streaming,
        _assistant_bubble(
            ChatState.stream_text,
            rx.cond(ChatState.stream_text == "", rx.spinner(size="2", aria_label="Generating")),
            "streaming",
        ),
    )
