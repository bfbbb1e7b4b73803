"""/s/<token>: a shared conversation, read-only, rendered with the chat's safe Markdown; not indexed."""

from __future__ import annotations

import reflex as rx

from chatbot_app.components.markdown import markdown
from chatbot_app.state.share import SharePageState

#: For app.add_page(..., meta=SHARE_META): search engines must not index shared conversations.
SHARE_META = [{"name": "robots", "content": "noindex, nofollow"}]


def _message(message: dict[str, str]) -> rx.Component:
    return rx.box(
        rx.text(rx.cond(message["role"] == "user", "You", "Assistant"), size="1", weight="bold", color_scheme="gray"),
        rx.cond(
            message["role"] == "user", rx.text(message["content"], white_space="pre-wrap"), markdown(message["content"])
        ),
        class_name="shared-message",
        width="100%",
    )


def share_page() -> rx.Component:
    return rx.container(
        rx.cond(
            SharePageState.missing,
            rx.callout("This link does not exist, or it was revoked.", icon="info", id="share-missing"),
            rx.vstack(
                rx.heading(SharePageState.title, size="6", id="shared-title"),
                rx.text(
                    "A read-only copy of a conversation, as it was when it was shared.", size="2", color_scheme="gray"
                ),
                rx.foreach(SharePageState.shared_messages, _message),
                spacing="4",
                width="100%",
            ),
        ),
        size="3",
        padding_y="2rem",
    )
