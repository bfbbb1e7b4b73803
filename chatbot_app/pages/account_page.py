"""/account: the signed-in user's own usage, their personal API keys (a new key is shown once), their
share links (to copy again or revoke), and changing their password (first of all when an admin gave
them a temporary one)."""

from __future__ import annotations

import reflex as rx

from chatbot_app.components.feedback import copied_confirmation
from chatbot_app.components.revoke_button import revoke_button
from chatbot_app.components.usage_chart import usage_chart
from chatbot_app.config import get_settings
from chatbot_app.services.accounts import MIN_PASSWORD_CHARS
from chatbot_app.state.account import NEW_KEY_INPUT_ID, AccountState
from chatbot_app.state.feedback import CopyFeedbackState
from chatbot_app.state.share import ShareListState


def page_header(title: str) -> rx.Component:
    """The product's name (a link home), the page's title and the way back to the chat; shared with /admin."""
    return rx.vstack(
        rx.hstack(
            rx.link(
                rx.hstack(
                    rx.icon("message-circle", size=20, aria_hidden="true"),
                    rx.text(get_settings().app_name, weight="bold"),
                    align="center",
                ),
                href="/",
                underline="none",
                high_contrast=True,
            ),
            rx.link("Back to the chat", href="/", id="back-to-chat"),
            justify="between",
            align="center",
            width="100%",
        ),
        rx.heading(title, as_="h1", size="6"),
        spacing="3",
        width="100%",
    )


def _usage_row(row: rx.Var[dict[str, str]], keys: list[str]) -> rx.Component:
    return rx.table.row(*[rx.table.cell(row[key]) for key in keys], class_name="usage-row")


def usage_table(rows: rx.Var[list[dict[str, str]]], with_user: bool) -> rx.Component:
    """Usage per day and model (and user, for admins); shared with /admin."""
    columns = (["User"] if with_user else []) + ["Day", "Model", "Messages", "Prompt tokens", "Completion tokens"]
    keys = (["email"] if with_user else []) + ["day", "model", "messages", "prompt_tokens", "completion_tokens"]
    return rx.cond(
        rows.length() > 0,  # type: ignore[attr-defined]
        rx.box(
            rx.table.root(
                rx.table.header(rx.table.row(*[rx.table.column_header_cell(c) for c in columns])),
                rx.table.body(rx.foreach(rows, lambda row: _usage_row(row, keys))),
                size="1",
                width="100%",
            ),
            class_name="table-scroll",
        ),
        rx.text("No usage in the last 30 days.", size="2", color_scheme="gray"),
    )


def usage_section(
    points: rx.Var[list[dict[str, str | int]]],
    series: rx.Var[list[dict[str, str]]],
    rows: rx.Var[list[dict[str, str]]],
    with_user: bool,
) -> rx.Component:
    """The chart, with the table of the same days beside it (below it on a phone, and for admins); without
    any use, the chart's empty state alone. Shared with /admin."""
    return rx.cond(
        series.length() > 0,  # type: ignore[attr-defined]
        rx.flex(
            rx.box(usage_chart(points, series), flex="3 1 22rem", min_width="0"),
            rx.box(
                usage_table(rows, with_user),
                # Beside the chart; everyone's table (a column more, with emails) below it.
                flex="1 1 100%" if with_user else "2 1 18rem",
                min_width="0",
                class_name="usage-table-box",
                # It scrolls when long: reachable and scrollable by keyboard too.
                tab_index=0,
                role="region",
                aria_label="Usage per day and model",
            ),
            gap="4",
            wrap="wrap",
            align="start",
            width="100%",
        ),
        usage_chart(points, series),
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
                revoke_button(
                    AccountState.revoke_api_key(key["id"]), "Revoke the key " + key["name"], "revoke-key-button"
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


def _share_link_row(link: rx.Var[dict[str, str]]) -> rx.Component:
    return rx.table.row(
        rx.table.cell(link["title"], class_name="share-link-title"),
        rx.table.cell(
            rx.moment(link["created"], format="YYYY-MM-DD HH:mm", local=True, element="time", interval=0),
            white_space="nowrap",
        ),
        rx.table.cell(
            rx.cond(
                link["url"] != "",
                rx.hstack(
                    rx.input(
                        value=link["url"],
                        read_only=True,
                        min_width="14rem",
                        flex="1",
                        aria_label="The link to " + link["title"],
                        class_name="share-link-url",
                    ),
                    rx.button(
                        rx.icon("copy", size=14, aria_hidden="true"),
                        "Copy",
                        type="button",
                        variant="soft",
                        size="2",
                        on_click=[rx.set_clipboard(link["url"]), CopyFeedbackState.copied("Link")],
                        aria_label="Copy the link to " + link["title"],
                        class_name="copy-share-link-button",
                    ),
                    align="center",
                    width="100%",
                ),
                rx.text("Shown once, when it was made", size="2", color_scheme="gray"),
            )
        ),
        rx.table.cell(
            revoke_button(
                ShareListState.revoke(link["id"]), "Revoke the link to " + link["title"], "revoke-share-button"
            )
        ),
        align="center",
        custom_attrs={"data-testid": "share-link-row"},
    )


def share_links_section() -> rx.Component:
    """Every live share link of the user: its conversation, when it was made, the link to copy, Revoke."""
    return rx.vstack(
        rx.heading("Share links", as_="h2", size="4"),
        rx.text(
            "Anyone with one of these links can read a copy of the conversation as it was when it was shared. "
            "A revoked link answers like an unknown one, files included.",
            size="2",
            color_scheme="gray",
        ),
        rx.cond(
            ShareListState.links_notice != "",
            rx.callout(ShareListState.links_notice, icon="info", size="1", id="share-links-notice", role="status"),
        ),
        rx.cond(
            ShareListState.links.length() > 0,  # type: ignore[attr-defined]
            rx.box(
                rx.table.root(
                    rx.table.header(
                        rx.table.row(*[rx.table.column_header_cell(c) for c in ("Conversation", "Created", "Link", "")])
                    ),
                    rx.table.body(rx.foreach(ShareListState.links, _share_link_row)),
                    size="1",
                    width="100%",
                ),
                class_name="table-scroll",
                width="100%",
            ),
            rx.text("You have no share links.", size="2", color_scheme="gray", id="no-share-links"),
        ),
        spacing="3",
        width="100%",
    )


def _password_field(label: str, input_id: str, name: str, auto_complete: str, min_length: int | None) -> rx.Component:
    return rx.vstack(
        rx.el.label(label, html_for=input_id, class_name="field-label"),  # a real <label for>: rx.text drops it
        rx.input(
            id=input_id,
            name=name,
            type="password",
            required=True,
            min_length=min_length,
            auto_complete=auto_complete,
            width="100%",
        ),
        spacing="1",
        width="100%",
    )


def change_password_form() -> rx.Component:
    """The current password, then the new one; the other sessions end. Local accounts only."""
    return rx.cond(
        AccountState.has_password,
        rx.vstack(
            rx.heading("Password", as_="h2", size="4"),
            rx.cond(
                AccountState.must_change_password,
                rx.callout(
                    "Choose your own password to go on: the one you signed in with was given to you by an admin.",
                    icon="key-round",
                    color_scheme="amber",
                    size="1",
                    id="must-change-password",
                ),
            ),
            rx.form(
                rx.vstack(
                    _password_field(
                        "Current password", "current-password-input", "current_password", "current-password", None
                    ),
                    _password_field(
                        "New password", "new-password-input", "new_password", "new-password", MIN_PASSWORD_CHARS
                    ),
                    rx.button("Change password", type="submit", id="change-password-button"),
                    spacing="3",
                    width="100%",
                    max_width="24rem",
                ),
                on_submit=AccountState.change_password,
                reset_on_submit=True,
            ),
            rx.cond(
                AccountState.password_notice != "",
                rx.text(AccountState.password_notice, size="2", id="password-notice"),
            ),
            spacing="3",
            width="100%",
        ),
    )


def account_page() -> rx.Component:
    return rx.container(
        rx.vstack(
            page_header("Your account"),
            rx.text("Signed in as ", rx.text.strong(AccountState.email), size="2"),
            change_password_form(),
            rx.cond(
                AccountState.account_notice != "",
                rx.callout(AccountState.account_notice, icon="info", size="1", id="account-notice", role="status"),
            ),
            rx.heading("Usage", as_="h2", size="4"),
            usage_section(AccountState.usage_points, AccountState.usage_series, AccountState.usage, with_user=False),
            rx.heading("Personal API keys", as_="h2", size="4"),
            rx.text(
                "A key acts as you in the REST API and /v1 (send it as a Bearer token); "
                "conversations made with it appear here too.",
                size="2",
                color_scheme="gray",
            ),
            rx.form(
                rx.flex(
                    rx.input(
                        name="key_name",
                        id="api-key-name",
                        placeholder="Name (optional)",
                        max_length=80,
                        aria_label="Name of the new key (optional)",
                    ),
                    rx.button("Create key", type="submit", id="create-api-key-button"),
                    gap="2",
                    wrap="wrap",
                ),
                on_submit=AccountState.create_api_key,
                reset_on_submit=True,
            ),
            _new_key(),
            rx.box(
                rx.table.root(
                    rx.table.header(
                        rx.table.row(
                            *[rx.table.column_header_cell(c) for c in ("Name", "Starts with", "Created", "Status")]
                        )
                    ),
                    rx.table.body(rx.foreach(AccountState.api_keys, _key_row)),
                    size="1",
                    width="100%",
                ),
                class_name="table-scroll",
            ),
            share_links_section(),
            spacing="4",
            width="100%",
        ),
        copied_confirmation(),
        size="3",
        padding_y="1.5rem",
    )
