"""The chat page, served at `/` (a new chat) and `/c/<id>` (a stored conversation)."""

from __future__ import annotations

import reflex as rx

from chatbot_app.components.composer import composer
from chatbot_app.components.conversation_menu import conversation_info
from chatbot_app.components.header import header
from chatbot_app.components.message import message_row, streaming_row
from chatbot_app.components.share_panel import share_panel
from chatbot_app.components.sidebar import sidebar
from chatbot_app.components.user_menu import claim_dialog
from chatbot_app.state.conversation import ConversationState
from chatbot_app.state.reply import ReplyState


def _empty_state() -> rx.Component:
    return rx.center(
        rx.vstack(
            rx.heading("How can I help?", size="7"),
            rx.text("Replies stream in as they are written. Your conversations are saved.", color_scheme="gray"),
            align="center",
        ),
        height="50vh",
    )


def chat_page() -> rx.Component:
    return rx.flex(sidebar(), _chat_column(), claim_dialog(), width="100%", height="100dvh", class_name="layout")


def _chat_column() -> rx.Component:
    return rx.flex(
        header(),
        share_panel(),
        rx.auto_scroll(
            rx.vstack(
                conversation_info(),
                rx.cond(
                    ConversationState.messages.length() == 0,
                    rx.cond(ReplyState.streaming, rx.fragment(), _empty_state()),
                ),
                rx.foreach(ConversationState.messages, message_row),
                streaming_row(),
                spacing="5",
                width="100%",
                max_width="48em",
                margin_x="auto",
                padding="1em",
                id="message-list",
            ),
            flex="1",
            width="100%",
        ),
        rx.box(
            rx.box(composer(), max_width="48em", margin_x="auto"),
            padding="1em",
            padding_bottom="max(1em, env(safe-area-inset-bottom))",
            width="100%",
            border_top="1px solid var(--gray-a4)",
            background="var(--color-background)",
        ),
        direction="column",
        height="100dvh",
        flex="1",
        min_width="0",
    )
