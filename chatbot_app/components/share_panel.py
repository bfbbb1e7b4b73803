"""A conversation's share links, under the header: the new link (shown once) and the live ones to revoke.

Always in the page, only hidden: the new link is written into `#share-link` by rx.set_value, which
needs the input to exist already (the token is never kept in a state var).
"""

from __future__ import annotations

import reflex as rx

from chatbot_app.state.share import SHARE_LINK_INPUT_ID, ShareLinksState


def _live_link(link: dict[str, str]) -> rx.Component:
    return rx.hstack(
        rx.text("Link created ", link["created"], size="2"),
        rx.button(
            "Revoke",
            size="1",
            color_scheme="red",
            variant="soft",
            on_click=ShareLinksState.revoke(link["id"]),
            class_name="revoke-share-button",
        ),
        align="center",
    )


def share_panel() -> rx.Component:
    return rx.box(
        rx.card(
            rx.vstack(
                rx.hstack(
                    rx.heading("Share", size="3"),
                    rx.icon_button(
                        rx.icon("x"), variant="ghost", size="1", on_click=ShareLinksState.close, aria_label="Close"
                    ),
                    justify="between",
                    width="100%",
                ),
                rx.text(ShareLinksState.share_notice, size="2", id="share-notice"),
                rx.input(id=SHARE_LINK_INPUT_ID, read_only=True, width="100%", aria_label="Share link"),
                rx.foreach(ShareLinksState.share_links, _live_link),
                spacing="2",
                width="100%",
            ),
            width="100%",
        ),
        display=rx.cond(ShareLinksState.share_open, "block", "none"),
        max_width="48em",
        margin_x="auto",
        width="100%",
        padding_x="1em",
        padding_top="0.5em",
    )
