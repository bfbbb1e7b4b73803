"""The top bar: the conversation's title, a new-chat button and the light/dark switch."""

from __future__ import annotations

import reflex as rx

from chatbot_app.components.conversation_menu import conversation_menu
from chatbot_app.components.model_picker import model_picker
from chatbot_app.components.settings_panel import settings_panel
from chatbot_app.components.user_menu import user_menu
from chatbot_app.state.conversation import ConversationState
from chatbot_app.state.library import LibraryState


def header() -> rx.Component:
    return rx.hstack(
        rx.hstack(
            rx.icon_button(
                rx.icon("menu"),
                on_click=LibraryState.toggle_sidebar,
                variant="ghost",
                aria_label="Conversations",
                class_name="mobile-only",
            ),
            rx.icon("message-circle", size=20, class_name="desktop-only"),
            rx.heading(
                rx.cond(ConversationState.title != "", ConversationState.title, "chatbot_app"),
                size="4",
                class_name="title",
            ),
            align="center",
            min_width="0",
        ),
        rx.hstack(
            model_picker(),
            settings_panel(),
            conversation_menu(),
            rx.tooltip(
                rx.icon_button(
                    rx.icon("square-pen"),
                    id="new-chat-button",
                    on_click=ConversationState.new_chat,
                    variant="soft",
                    aria_label="New chat",
                ),
                content="New chat",
            ),
            rx.color_mode.button(variant="soft", aria_label="Toggle dark mode"),
            user_menu(),
            align="center",
        ),
        justify="between",
        align="center",
        width="100%",
        padding_x="1em",
        padding_y="0.75em",
        border_bottom="1px solid var(--gray-a5)",
        background="var(--color-background)",
        position="sticky",
        top="0",
        z_index="10",
    )
