"""/account: the signed-in user's own usage, and their personal API keys (a new key is shown once)."""

from __future__ import annotations

import reflex as rx

from chatbot_app.state.account import NEW_KEY_INPUT_ID, AccountState


def _usage_row(row: rx.Var[dict[str, str]], keys: list[str]) -> rx.Component:
    return rx.table.row(*[rx.table.cell(row[key]) for key in keys], class_name="usage-row")


def usage_table(rows: rx.Var[list[dict[str, str]]], with_user: bool) -> rx.Component:
    """Usage per day and model (and user, for admins); shared with /admin."""
    columns = (["User"] if with_user else []) + ["Day", "Model", "Messages", "Prompt tokens", "Completion tokens"]
    keys = (["email"] if with_user else []) + ["day", "model", "messages", "prompt_tokens", "completion_tokens"]
    return rx.cond(
        rows.length() > 0,  # type: ignore[attr-defined]
        rx.table.root(
            rx.table.header(rx.table.row(*[rx.table.column_header_cell(c) for c in columns])),
            rx.table.body(rx.foreach(rows, lambda row: _usage_row(row, keys))),
            size="1",
            width="100%",
        ),
        rx.text("No usage in the last 30 days.", size="2", color_scheme="gray"),
    )


def _key_row(key: dict[str, str]) -> rx.Component:
    return rx.table.row(
        rx.table.cell(key["name"]),
        rx.table.cell(rx.code(key["prefix"])),
        rx.table.cell(key["created"]),
        rx.table.cell(
            rx.cond(
                key["revoked"] != "",
                rx.badge("revoked", color_scheme="gray"),
                rx.button(
                    "Revoke",
                    size="1",
                    color_scheme="red",
                    variant="soft",
                    on_click=AccountState.revoke_api_key(key["id"]),
                    class_name="revoke-key-button",
                ),
            )
        ),
        class_name="api-key-row",
    )


def _new_key() -> rx.Component:
    # Always in the page (hidden until a key is made): rx.set_value writes the key into it.
    return rx.box(
        rx.callout("Copy this key now: it is not shown again.", icon="key-round", size="1", margin_bottom="0.5em"),
        rx.input(id=NEW_KEY_INPUT_ID, read_only=True, width="100%", aria_label="New API key"),
        display=rx.cond(AccountState.key_created, "block", "none"),
        width="100%",
    )


def account_page() -> rx.Component:
    return rx.container(
        rx.vstack(
            rx.hstack(
                rx.heading("Your account", size="6"),
                rx.link("Back to the chat", href="/", id="back-to-chat"),
                justify="between",
                width="100%",
            ),
            rx.text("Signed in as ", rx.text.strong(AccountState.email), size="2"),
            rx.cond(
                AccountState.account_notice != "",
                rx.callout(AccountState.account_notice, icon="info", size="1", id="account-notice"),
            ),
            rx.heading("Usage", size="4"),
            usage_table(AccountState.usage, with_user=False),
            rx.heading("Personal API keys", size="4"),
            rx.text(
                "A key acts as you in the REST API and /v1 (send it as a Bearer token); "
                "conversations made with it appear here too.",
                size="2",
                color_scheme="gray",
            ),
            rx.form(
                rx.hstack(
                    rx.input(name="key_name", id="api-key-name", placeholder="Name (optional)", max_length=80),
                    rx.button("Create key", type="submit", id="create-api-key-button"),
                ),
                on_submit=AccountState.create_api_key,
                reset_on_submit=True,
            ),
            _new_key(),
            rx.table.root(
                rx.table.header(
                    rx.table.row(*[rx.table.column_header_cell(c) for c in ("Name", "Starts with", "Created", "")])
                ),
                rx.table.body(rx.foreach(AccountState.api_keys, _key_row)),
                size="1",
                width="100%",
            ),
            spacing="4",
            width="100%",
        ),
        size="3",
        padding_y="2rem",
    )
