"""The top bar: the conversation list (phones), the product and conversation names, and the chat's controls.

On a phone (CSS, under 768 px) the model picker takes a line of its own under the others and the
light/dark switch moves into the conversation's ⋮ menu, so every control stays on screen and at
least 32 px wide. The new-chat button shows there only: on wider screens the sidebar has its own.
"""

from __future__ import annotations

import reflex as rx

from chatbot_app.components.conversation_menu import conversation_menu
from chatbot_app.components.model_picker import model_picker
from chatbot_app.components.settings_panel import settings_panel
from chatbot_app.components.user_menu import user_menu
from chatbot_app.config import get_settings
from chatbot_app.state.conversation import ConversationState
from chatbot_app.state.library import LibraryState


def _titles() -> rx.Component:
    app_name = get_settings().app_name
    return rx.hstack(
        rx.hstack(
            rx.icon("message-circle", size=20, aria_hidden="true"),
            rx.text(app_name, weight="bold", size="3", id="app-name"),
            align="center",
            spacing="2",
            class_name="brand desktop-only",
        ),
        rx.heading(
            rx.cond(
                ConversationState.title != "",
                ConversationState.title,
                # A new chat: the product's name on a phone (no brand shows there), "New chat" beside the brand.
                rx.fragment(
                    rx.text.span(app_name, class_name="mobile-only-text"),
                    rx.text.span("New chat", class_name="desktop-only-text"),
                ),
            ),
            as_="h1",
            size="3",
            weight="medium",
            class_name="title",
            id="conversation-title",
        ),
        align="center",
        spacing="3",
        min_width="0",
        flex="1",
    )


def header() -> rx.Component:
    return rx.el.header(
        rx.icon_button(
            rx.icon("menu"),
            id="sidebar-toggle",
            on_click=LibraryState.toggle_sidebar,
            variant="ghost",
            size="2",
            aria_label="Conversations",
            aria_controls="sidebar",
            aria_expanded=rx.cond(LibraryState.sidebar_open, "true", "false"),
            class_name="mobile-only",
        ),
        _titles(),
        rx.box(model_picker(), class_name="header-model"),
        settings_panel(),
        conversation_menu(),
        rx.icon_button(
            rx.icon("square-pen"),
            id="new-chat-button",
            on_click=ConversationState.new_chat,
            variant="soft",
            size="2",
            aria_label="New chat",
            title="New chat",
            class_name="mobile-only",
        ),
        rx.color_mode.button(
            variant="soft", size="2", aria_label="Switch between light and dark mode", class_name="desktop-only"
        ),
        user_menu(),
        class_name="app-header",
    )
