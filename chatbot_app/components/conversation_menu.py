"""The conversation's menu (summarize, end session, clear, share, export; light/dark on phones) and its summary line."""

from __future__ import annotations

import reflex as rx

from chatbot_app.state.conversation import ConversationState
from chatbot_app.state.share import ShareLinksState


def conversation_menu() -> rx.Component:
    has_conversation = ConversationState.conversation_id != ""
    return rx.dropdown_menu.root(
        rx.dropdown_menu.trigger(
            rx.icon_button(
                rx.icon("ellipsis-vertical"),
                variant="soft",
                size="2",
                id="conversation-menu",
                aria_label="Conversation menu",
            )
        ),
        rx.dropdown_menu.content(
            rx.dropdown_menu.item(
                "Summarize", on_click=ConversationState.summarize, disabled=~has_conversation, id="summarize-item"
            ),
            rx.dropdown_menu.item(
                "End session (summarize, then start fresh)",
                on_click=ConversationState.end_session,
                disabled=~has_conversation,
            ),
            rx.dropdown_menu.item(
                "Clear conversation", on_click=ConversationState.clear_conversation, disabled=~has_conversation
            ),
            rx.dropdown_menu.separator(),
            rx.dropdown_menu.item(
                "Share a read-only link…", on_click=ShareLinksState.share, disabled=~has_conversation, id="share-button"
            ),
            rx.dropdown_menu.item(
                "Export as Markdown", on_click=ConversationState.export("md"), disabled=~has_conversation
            ),
            rx.dropdown_menu.item(
                "Export as JSON", on_click=ConversationState.export("json"), disabled=~has_conversation
            ),
            # On phones the header has no room for the light/dark switch: it is here instead.
            rx.dropdown_menu.separator(class_name="mobile-only"),
            rx.dropdown_menu.item(
                rx.cond(rx.color_mode == "dark", "Light mode", "Dark mode"),
                on_click=rx.toggle_color_mode,
                id="color-mode-item",
                class_name="mobile-only",
            ),
        ),
    )


def conversation_info() -> rx.Component:
    """The summary (when there is one) and the running totals, at the top of a conversation."""
    return rx.cond(
        ConversationState.conversation_id != "",
        rx.vstack(
            rx.cond(ConversationState.summarizing, rx.hstack(rx.spinner(size="1"), rx.text("Summarizing…", size="2"))),
            rx.cond(
                ConversationState.summary != "",
                rx.callout(ConversationState.summary, icon="notebook-text", size="1", id="summary", width="100%"),
            ),
            rx.text(ConversationState.stats_line, size="1", color_scheme="gray", id="conversation-stats"),
            rx.cond(
                ConversationState.has_earlier,
                rx.hstack(
                    rx.button(
                        "Load earlier messages",
                        on_click=ConversationState.load_earlier(None),
                        variant="ghost",
                        size="1",
                    ),
                    rx.button(
                        "Go to the first message",
                        on_click=ConversationState.load_from_start,
                        variant="ghost",
                        size="1",
                        id="first-message-button",
                    ),
                    spacing="2",
                ),
            ),
            width="100%",
            align="center",
            spacing="2",
        ),
    )
