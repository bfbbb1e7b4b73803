"""The "not found" page: an address that is no page of the app, with the way back to it."""

from __future__ import annotations

import reflex as rx

from chatbot_app.config import get_settings

#: What the page says (also under the chat's own route, for one- and two-segment addresses).
NOT_FOUND_TEXT = "There is no page at that address."


def not_found_panel() -> rx.Component:
    """The message and the link back, for this page and for the chat route's unknown addresses."""
    return rx.center(
        rx.vstack(
            rx.text("404", size="2", color_scheme="gray", weight="medium"),
            rx.heading("Page not found", as_="h1", size="7"),
            rx.text(NOT_FOUND_TEXT, " It may have moved, or the link may be mistyped.", color_scheme="gray"),
            rx.link(rx.button("Start a new chat", size="3"), href="/", id="not-found-home"),
            align="center",
            spacing="3",
            text_align="center",
        ),
        id="not-found",
        min_height="60vh",
        padding="1.5em",
        width="100%",
    )


def not_found_page() -> rx.Component:
    return rx.box(
        rx.hstack(
            rx.icon("message-circle", size=20, aria_hidden="true"),
            rx.link(get_settings().app_name, href="/", weight="bold", high_contrast=True, underline="none"),
            align="center",
            padding="1em",
        ),
        rx.el.main(not_found_panel()),
    )
