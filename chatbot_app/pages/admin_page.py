"""/admin: users and their usage, for admins only (AdminState.load sends anyone else back)."""

from __future__ import annotations

import reflex as rx

from chatbot_app.pages.account_page import usage_table
from chatbot_app.state.admin import TEMPORARY_PASSWORD_INPUT_ID, AdminState


def _user_row(user: dict[str, str]) -> rx.Component:
    disabled, admin = user["status"] == "disabled", user["role"] == "admin"
    return rx.table.row(
        rx.table.cell(user["email"], class_name="user-email"),
        rx.table.cell(user["role"]),
        rx.table.cell(user["status"], class_name="user-status"),
        rx.table.cell(
            rx.form(
                rx.hstack(
                    rx.el.input(type="hidden", name="user_id", value=user["id"]),
                    rx.input(name="daily_tokens", placeholder=user["quota"], size="1", width="8em"),
                    rx.button("Save", size="1", variant="soft", type="submit"),
                ),
                on_submit=AdminState.set_quota,
                reset_on_submit=True,
            )
        ),
        rx.table.cell(
            rx.hstack(
                rx.button(
                    rx.cond(disabled, "Enable", "Disable"),
                    size="1",
                    variant="soft",
                    color_scheme=rx.cond(disabled, "green", "red"),
                    on_click=AdminState.set_disabled(user["id"], ~disabled),
                    class_name="toggle-disabled-button",
                ),
                rx.button(
                    rx.cond(admin, "Unmake admin", "Make admin"),
                    size="1",
                    variant="soft",
                    on_click=AdminState.set_admin(user["id"], ~admin),
                    class_name="toggle-admin-button",
                ),
                rx.button(
                    "Reset password",
                    size="1",
                    variant="soft",
                    on_click=AdminState.reset_password(user["id"]),
                    class_name="reset-password-button",
                ),
            )
        ),
        custom_attrs={"data-email": user["email"]},
        class_name="user-row",
    )


def admin_page() -> rx.Component:
    return rx.container(
        rx.vstack(
            rx.hstack(
                rx.heading("Admin", size="6"),
                rx.link("Back to the chat", href="/", id="back-to-chat"),
                justify="between",
                width="100%",
            ),
            rx.cond(
                AdminState.admin_notice != "",
                rx.callout(AdminState.admin_notice, icon="info", size="1", id="admin-notice"),
            ),
            rx.box(  # always in the page: rx.set_value writes the temporary password into it, once
                rx.text("Temporary password for ", rx.text.strong(AdminState.reset_email), size="2"),
                rx.input(id=TEMPORARY_PASSWORD_INPUT_ID, read_only=True, width="100%", aria_label="Temporary password"),
                display=rx.cond(AdminState.reset_email != "", "block", "none"),
                width="100%",
            ),
            rx.heading("Users", size="4"),
            rx.table.root(
                rx.table.header(
                    rx.table.row(
                        *[
                            rx.table.column_header_cell(c)
                            for c in ("Email", "Role", "Status", "Daily tokens (empty: default)", "")
                        ]
                    )
                ),
                rx.table.body(rx.foreach(AdminState.users, _user_row)),
                size="1",
                width="100%",
                id="users-table",
            ),
            rx.heading("Usage per user, model and day", size="4"),
            usage_table(AdminState.usage, with_user=True),
            spacing="4",
            width="100%",
        ),
        size="3",
        padding_y="2rem",
    )
