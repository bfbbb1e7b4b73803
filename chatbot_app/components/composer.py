"""The message box: Enter sends, Shift+Enter adds a line; Stop while a reply streams."""

from __future__ import annotations

import reflex as rx

from chatbot_app.state.reply import ReplyState


def composer() -> rx.Component:
    return rx.form(
        rx.flex(
            rx.text_area(
                id="chat-input",
                name="message",
                placeholder="Message the assistant",
                enter_key_submit=True,
                auto_height=True,
                auto_focus=True,
                rows="1",
                aria_label="Message",
                class_name="chat-input",
                flex="1",
                size="3",
                variant="surface",
            ),
            rx.cond(
                ReplyState.streaming,
                rx.icon_button(
                    rx.icon("square"),
                    id="stop-button",
                    type="button",
                    on_click=ReplyState.stop,
                    aria_label="Stop generating",
                    color_scheme="gray",
                    size="3",
                ),
                rx.icon_button(rx.icon("arrow-up"), id="send-button", type="submit", aria_label="Send", size="3"),
            ),
            gap="2",
            align="end",
            width="100%",
        ),
        rx.cond(
            ReplyState.notice != "",
            rx.text(ReplyState.notice, id="notice", size="2", color_scheme="red", margin_top="0.5em"),
        ),
        on_submit=ReplyState.send_message,
        # Not reset here: the message stays in the box until it is stored (ReplyState clears it then).
        reset_on_submit=False,
        width="100%",
    )
