"""The chat page, served at `/` (a new chat) and `/c/<id>` (a stored conversation).

Keyboard: the first Tab stop is "Skip to the message box"; Escape stops a reply being written and
closes the conversation drawer (phones).
"""

from __future__ import annotations

import reflex as rx

from chatbot_app.components.browser_state import (
    COMPOSER_INPUT_ID,
    away_from_end,
    on_key,
    set_draft_present,
    track_scroll,
)
from chatbot_app.components.composer import composer
from chatbot_app.components.conversation_menu import conversation_info
from chatbot_app.components.feedback import copied_confirmation
from chatbot_app.components.header import header
from chatbot_app.components.message import history, streaming_row
from chatbot_app.components.read_aloud import read_aloud_player
from chatbot_app.components.share_panel import share_panel
from chatbot_app.components.sidebar import sidebar
from chatbot_app.components.user_menu import claim_dialog
from chatbot_app.pages.not_found_page import not_found_panel
from chatbot_app.state.conversation import ConversationState
from chatbot_app.state.library import LibraryState
from chatbot_app.state.reply import ReplyState

#: Shown on a new chat; a click puts one in the message box, to send or change.
EXAMPLE_PROMPTS = (
    ("Explain a concept", "Explain how HTTPS keeps a connection private, in simple terms."),
    ("Write code", "Write a Python function that checks whether a string is a palindrome, with tests."),
    ("Plan something", "Plan a relaxed three-day trip to Lisbon, with one museum a day."),
    ("Improve a text", "Make this email shorter and friendlier: "),
)
#: The end of the message list, which the scroll-to-bottom button brings into view.
MESSAGE_END_ID = "message-end"


def _example_prompt(title: str, prompt: str) -> rx.Component:
    return rx.el.button(
        rx.text(title, weight="medium", size="2", as_="span", display="block"),
        rx.text(prompt, size="2", color_scheme="gray", as_="span", display="block", class_name="example-text"),
        type="button",
        on_click=[rx.set_value(COMPOSER_INPUT_ID, prompt), set_draft_present(True), rx.set_focus(COMPOSER_INPUT_ID)],
        class_name="example-prompt",
        custom_attrs={"data-testid": "example-prompt"},
    )


def _empty_state() -> rx.Component:
    return rx.center(
        rx.vstack(
            rx.heading("How can I help?", as_="h2", size="7"),
            rx.text("Replies stream in as they are written. Your conversations are saved.", color_scheme="gray"),
            rx.grid(*[_example_prompt(t, p) for t, p in EXAMPLE_PROMPTS], class_name="example-prompts"),
            align="center",
            spacing="4",
            width="100%",
        ),
        min_height="50vh",
        width="100%",
    )


def _skip_link() -> rx.Component:
    # A button, not a "#chat-input" link: a link would change the URL, and with it the page's route.
    return rx.el.button(
        "Skip to the message box", type="button", on_click=rx.set_focus(COMPOSER_INPUT_ID), class_name="skip-link"
    )


def _scroll_to_bottom() -> rx.Component:
    return rx.cond(
        away_from_end(),
        rx.icon_button(
            rx.icon("arrow-down", size=18),
            id="scroll-to-bottom",
            type="button",
            on_click=rx.scroll_to(MESSAGE_END_ID, align_to_top=False),
            aria_label="Scroll to the newest message",
            title="Scroll to the newest message",
            radius="full",
            variant="surface",
            size="2",
            class_name="scroll-to-bottom",
        ),
    )


def chat_page() -> rx.Component:
    return rx.fragment(
        _skip_link(),
        rx.flex(sidebar(), _chat_column(), claim_dialog(), width="100%", height="100dvh", class_name="layout"),
        copied_confirmation(),
        # Escape: stop the reply being written, close the drawer; no other key leaves the browser.
        rx.window_event_listener(on_key_down=on_key("Escape", ReplyState.stop, LibraryState.close_sidebar)),
    )


def _messages() -> rx.Component:
    return rx.box(
        rx.auto_scroll(
            rx.vstack(
                conversation_info(),
                rx.cond(
                    ConversationState.history_order.length() == 0,  # type: ignore[attr-defined]
                    rx.cond(ReplyState.streaming, rx.fragment(), _empty_state()),
                ),
                history(),
                streaming_row(),
                rx.box(id=MESSAGE_END_ID),
                spacing="5",
                width="100%",
                max_width="48em",
                margin_x="auto",
                padding="1em",
                id="message-list",
            ),
            on_scroll=track_scroll(
                ConversationState.load_earlier(ConversationState.first_shown_id), ConversationState.has_earlier
            ),
            height="100%",
            width="100%",
            id="message-scroller",
        ),
        _scroll_to_bottom(),
        # Read here, not in each message: a message reading ReplyState would re-render on every streamed frame.
        class_name=rx.cond(ReplyState.streaming, "history replying", "history"),
        position="relative",
        flex="1",
        min_height="0",
        width="100%",
    )


def _composer_bar() -> rx.Component:
    return rx.box(
        rx.box(read_aloud_player(), composer(), max_width="48em", margin_x="auto"),
        padding="0.75em 1em",
        padding_bottom="max(0.75em, env(safe-area-inset-bottom))",
        width="100%",
        border_top="1px solid var(--gray-a4)",
        background="var(--color-background)",
    )


def _chat_column() -> rx.Component:
    return rx.el.main(
        header(),
        share_panel(),
        rx.cond(
            ConversationState.page_missing,
            not_found_panel(),
            rx.fragment(_messages(), _composer_bar()),
        ),
        class_name="chat-column",
    )
