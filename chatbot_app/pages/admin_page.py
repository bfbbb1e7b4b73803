"""/admin: users and their usage (a chart, a table, the top users), for admins only (AdminState.load
sends anyone else back).

Every action asks first; the only enabled admin's "Disable" and "Remove admin" are disabled, with the
reason beside them (Accounts refuses them too). On a phone each user is a card (CSS).
"""

from __future__ import annotations

import reflex as rx

from chatbot_app.components.mcp_admin import mcp_servers_section, tool_usage_section
from chatbot_app.pages.account_page import page_header, usage_section
from chatbot_app.state.admin import LAST_ADMIN, TEMPORARY_PASSWORD_INPUT_ID, AdminState


def _user_row(user: dict[str, str]) -> rx.Component:
    disabled, admin, last_admin = user["status"] == "disabled", user["role"] == "admin", user["last_admin"] != ""
    return rx.table.row(
        rx.table.cell(user["email"], class_name="user-email"),
        rx.table.cell(user["role"]),
        rx.table.cell(user["status"], class_name="user-status"),
        rx.table.cell(
            rx.form(
                rx.hstack(
                    rx.el.input(type="hidden", name="user_id", value=user["id"]),
                    rx.input(
                        name="daily_tokens",
                        placeholder=user["quota"],
                        size="2",
                        width="8em",
                        aria_label="Daily tokens for " + user["email"],
                    ),
                    rx.button(
                        "Save", size="2", variant="soft", type="submit", aria_label="Save quota of " + user["email"]
                    ),
                    align="center",
                ),
                on_submit=AdminState.set_quota,
                reset_on_submit=True,
            )
        ),
        rx.table.cell(
            rx.flex(
                rx.button(
                    rx.cond(disabled, "Enable", "Disable"),
                    size="2",
                    variant="soft",
                    color_scheme=rx.cond(disabled, "green", "red"),
                    on_click=AdminState.ask(rx.cond(disabled, "enable", "disable"), user["id"]),
                    disabled=last_admin,
                    aria_label=rx.cond(disabled, "Enable ", "Disable ") + user["email"],
                    class_name="toggle-disabled-button",
                ),
                rx.button(
                    rx.cond(admin, "Remove admin", "Make admin"),
                    size="2",
                    variant="soft",
                    on_click=AdminState.ask(rx.cond(admin, "unmake_admin", "make_admin"), user["id"]),
                    disabled=last_admin,
                    aria_label=rx.cond(admin, "Remove admin role of ", "Make admin: ") + user["email"],
                    class_name="toggle-admin-button",
                ),
                rx.button(
                    "Reset password",
                    size="2",
                    variant="soft",
                    on_click=AdminState.ask("reset_password", user["id"]),
                    aria_label="Reset password of " + user["email"],
                    class_name="reset-password-button",
                ),
                rx.cond(last_admin, rx.text(LAST_ADMIN, size="1", color_scheme="gray", class_name="last-admin-note")),
                gap="2",
                wrap="wrap",
                align="center",
            )
        ),
        custom_attrs={"data-email": user["email"]},
        class_name="user-row",
    )


def _top_users() -> rx.Component:
    return rx.cond(
        AdminState.top_users.length() > 0,  # type: ignore[attr-defined]
        rx.box(
            rx.table.root(
                rx.table.header(
                    rx.table.row(*[rx.table.column_header_cell(c) for c in ("User", "Tokens", "Messages")])
                ),
                rx.table.body(
                    rx.foreach(
                        AdminState.top_users,
                        lambda top: rx.table.row(
                            rx.table.cell(top["email"]),
                            rx.table.cell(top["tokens"]),
                            rx.table.cell(top["messages"]),
                            class_name="top-user-row",
                        ),
                    )
                ),
                size="1",
                width="100%",
                id="top-users-table",
            ),
            class_name="table-scroll",
        ),
        rx.text("No one has used any tokens in the last 30 days.", size="2", color_scheme="gray"),
    )


def _confirmation() -> rx.Component:
    return rx.alert_dialog.root(
        rx.alert_dialog.content(
            rx.alert_dialog.title(AdminState.pending_action["title"]),
            rx.alert_dialog.description(AdminState.pending_action["description"]),
            rx.flex(
                rx.alert_dialog.cancel(
                    rx.button(
                        "Cancel",
                        variant="soft",
                        color_scheme="gray",
                        on_click=AdminState.cancel_action,
                        id="cancel-admin-action",
                    )
                ),
                rx.alert_dialog.action(
                    rx.button("Confirm", on_click=AdminState.confirm_action, id="confirm-admin-action")
                ),
                gap="2",
                justify="end",
                margin_top="1em",
            ),
        ),
        open=AdminState.pending_action.length() > 0,  # type: ignore[attr-defined]
    )


def _accounts_controls() -> rx.Component:
    """Make an account (its one-time password is shown once, above), and open or close sign-up."""
    return rx.vstack(
        rx.form(
            rx.hstack(
                rx.input(
                    name="email",
                    id="new-user-email-input",
                    type="email",
                    required=True,
                    placeholder="Email of the new account",
                    aria_label="Email of the new account",
                    max_width="20em",
                    width="100%",
                ),
                rx.button("Create account", type="submit", id="create-user-button"),
            ),
            on_submit=AdminState.create_user,
            reset_on_submit=True,
        ),
        rx.cond(
            AdminState.signup_always_open,
            rx.text("Anyone can create an account (CHATBOT_ALLOW_SIGNUP is on).", size="2", id="signup-status"),
            rx.hstack(
                rx.text(
                    rx.cond(AdminState.signup_open, "Anyone can create an account.", "Only admins create accounts."),
                    size="2",
                    id="signup-status",
                ),
                rx.button(
                    rx.cond(AdminState.signup_open, "Close sign-up", "Open sign-up to anyone"),
                    size="2",
                    variant="soft",
                    on_click=AdminState.set_signup_open(~AdminState.signup_open),
                    id="toggle-signup-button",
                ),
                align="center",
            ),
        ),
        spacing="2",
        width="100%",
    )


def admin_page() -> rx.Component:
    return rx.container(
        rx.vstack(
            page_header("Admin"),
            rx.cond(
                AdminState.admin_notice != "",
                rx.callout(AdminState.admin_notice, icon="info", size="1", id="admin-notice", role="status"),
            ),
            rx.box(  # always in the page: rx.set_value writes the temporary password into it, once
                rx.text("One-time password for ", rx.text.strong(AdminState.reset_email), size="2"),
                rx.input(id=TEMPORARY_PASSWORD_INPUT_ID, read_only=True, width="100%", aria_label="Temporary password"),
                display=rx.cond(AdminState.reset_email != "", "block", "none"),
                width="100%",
            ),
            rx.heading("Users", as_="h2", size="4"),
            _accounts_controls(),
            rx.table.root(
                rx.table.header(
                    rx.table.row(
                        *[
                            rx.table.column_header_cell(c)
                            for c in ("Email", "Role", "Status", "Daily tokens (empty: default)", "Actions")
                        ]
                    )
                ),
                rx.table.body(rx.foreach(AdminState.users, _user_row)),
                size="1",
                width="100%",
                id="users-table",
            ),
            rx.heading("Usage per user, model and day", as_="h2", size="4"),
            usage_section(AdminState.usage_points, AdminState.usage_series, AdminState.usage, with_user=True),
            rx.heading("Top users, last 30 days", as_="h2", size="4"),
            _top_users(),
            tool_usage_section(),
            mcp_servers_section(),
            _confirmation(),
            spacing="4",
            width="100%",
        ),
        size="3",
        padding_y="1.5rem",
    )
