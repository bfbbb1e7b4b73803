"""The signed-in user's menu in the header (accounts on only): account, admin, sign out."""

from __future__ import annotations

import reflex as rx

from chatbot_app.components.auth_forms import sign_out_button
from chatbot_app.state.account import AccountState


def user_menu() -> rx.Component:
    """`#user-menu` with `#sign-out-button` in it; nothing at all with accounts off (AccountState.email empty)."""
    return rx.cond(
        AccountState.email != "",
        rx.popover.root(
            rx.popover.trigger(
                rx.icon_button(
                    rx.icon("circle-user"), variant="soft", size="2", id="user-menu", aria_label="Account menu"
                ),
            ),
            rx.popover.content(
                rx.vstack(
                    rx.text(AccountState.email, size="2", weight="medium", id="user-email"),
                    rx.link("Account, usage and API keys", href="/account", id="account-link", size="2"),
                    rx.cond(AccountState.is_admin, rx.link("Admin", href="/admin", id="admin-link", size="2")),
                    rx.separator(),
                    sign_out_button(),
                    sign_out_button(everywhere=True),
                    spacing="2",
                    align="start",
                ),
                align="end",
            ),
        ),
    )


def claim_dialog() -> rx.Component:
    """After signing in: offer to move this browser's anonymous conversations. Nothing moves without yes."""
    return rx.alert_dialog.root(
        rx.alert_dialog.content(
            rx.alert_dialog.title("Move this browser's conversations into your account?"),
            rx.alert_dialog.description(
                rx.text(
                    "This browser holds ",
                    rx.text.strong(AccountState.claimable),
                    " conversation(s) from before you signed in. Move them into your account to see them on any "
                    "device? If you say no, they stay with this browser, unchanged.",
                ),
            ),
            rx.flex(
                rx.alert_dialog.cancel(
                    rx.button(
                        "No, leave them",
                        variant="soft",
                        color_scheme="gray",
                        on_click=AccountState.decline_claim,
                        id="claim-no",
                    ),
                ),
                rx.alert_dialog.action(rx.button("Yes, move them", on_click=AccountState.claim, id="claim-yes")),
                gap="3",
                justify="end",
                margin_top="1em",
            ),
        ),
        open=AccountState.claimable > 0,
    )
