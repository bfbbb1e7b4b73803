"""/s/<token>: a shared conversation, read-only, rendered with the chat's safe Markdown; not indexed."""

from __future__ import annotations

import reflex as rx

from chatbot_app.components.attachments import message_files
from chatbot_app.components.feedback import copied_confirmation
from chatbot_app.components.markdown import markdown
from chatbot_app.components.tool_calls import sources, tool_calls
from chatbot_app.config import get_settings
from chatbot_app.state.share import SharedMessage, SharePageState

#: For app.add_page(..., meta=SHARE_META): search engines must not index shared conversations.
SHARE_META = [{"name": "robots", "content": "noindex, nofollow"}]


def _message(message: SharedMessage) -> rx.Component:
    return rx.box(
        rx.text(rx.cond(message.role == "user", "You", "Assistant"), size="1", weight="bold", color_scheme="gray"),
        message_files(message.files),
        tool_calls(message.tool_calls),
        rx.cond(
            message.role == "user",
            rx.text(message.content, white_space="pre-wrap"),
            markdown(message.content),
        ),
        sources(message.sources),
        class_name="shared-message",
        width="100%",
    )


def _back_to_the_app() -> rx.Component:
    app_name = get_settings().app_name
    return rx.hstack(
        rx.link(
            rx.hstack(rx.icon("message-circle", size=20, aria_hidden="true"), rx.text(app_name, weight="bold")),
            href="/",
            underline="none",
            high_contrast=True,
            id="share-app-link",
        ),
        rx.link(rx.button("Start your own chat", variant="soft", size="2"), href="/", id="share-start-chat"),
        justify="between",
        align="center",
        width="100%",
    )


def share_page() -> rx.Component:
    return rx.container(
        rx.vstack(
            _back_to_the_app(),
            rx.el.main(
                rx.cond(
                    ~SharePageState.loaded,
                    # Read from the database on each page load (and reconnect): never kept per visitor.
                    rx.center(rx.spinner(size="3", aria_label="Loading the conversation"), width="100%"),
                    rx.cond(
                        SharePageState.missing,
                        rx.callout("This link does not exist, or it was revoked.", icon="info", id="share-missing"),
                        rx.vstack(
                            rx.heading(SharePageState.title, as_="h1", size="6", id="shared-title"),
                            rx.text(
                                "A read-only copy of a conversation, as it was when it was shared.",
                                size="2",
                                color_scheme="gray",
                            ),
                            rx.foreach(SharePageState.shared_messages, _message),
                            spacing="4",
                            width="100%",
                        ),
                    ),
                ),
                width="100%",
            ),
            spacing="5",
            width="100%",
        ),
        copied_confirmation(),
        size="3",
        padding_y="1.5rem",
    )
