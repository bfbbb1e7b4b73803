"""A conversation's share links, under the header: the new link (shown once) and the live ones to revoke.

Always in the page, only hidden: the new link is written into `#share-link` by rx.set_value, which
needs the input to exist already (the token is never kept in a state var).
"""

from __future__ import annotations

import reflex as rx
from reflex.vars import Var

from chatbot_app.components.revoke_button import revoke_button
from chatbot_app.state.feedback import CopyFeedbackState
from chatbot_app.state.share import SHARE_LINK_INPUT_ID, ShareLinksState

#: The link as the input shows it (it is never in a state var, so it is read from the page).
_SHARE_LINK = Var(_js_expr=f"(document.getElementById('{SHARE_LINK_INPUT_ID}')?.value ?? '')", _var_type=str)


def _live_link(link: dict[str, str]) -> rx.Component:
    return rx.hstack(
        rx.text("Link created ", link["created"], size="2"),
        revoke_button(
            ShareLinksState.revoke(link["id"]), "Revoke the link created " + link["created"], "revoke-share-button"
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
                        rx.icon("x"),
                        variant="ghost",
                        size="2",
                        on_click=ShareLinksState.close,
                        aria_label="Close the share panel",
                    ),
                    justify="between",
                    width="100%",
                ),
                rx.text(ShareLinksState.share_notice, size="2", id="share-notice"),
                rx.hstack(
                    rx.input(id=SHARE_LINK_INPUT_ID, read_only=True, flex="1", aria_label="Share link"),
                    rx.button(
                        rx.icon("copy", size=14),
                        "Copy link",
                        id="copy-share-link",
                        type="button",
                        on_click=[rx.set_clipboard(_SHARE_LINK), CopyFeedbackState.copied("Link")],
                    ),
                    width="100%",
                    align="center",
                ),
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
