"""/login and /signup: the only pages open without a session when accounts are on."""

from __future__ import annotations

import reflex as rx

from chatbot_app.components.auth_forms import auth_error, credentials_form, single_sign_on_link
from chatbot_app.config import get_settings
from chatbot_app.state.auth import AuthPageState


def _card(title: str, *children: rx.Component) -> rx.Component:
    return rx.center(
        rx.el.main(
            rx.vstack(
                rx.hstack(
                    rx.icon("message-circle", size=22, aria_hidden="true"),
                    rx.text(get_settings().app_name, weight="bold", size="4"),
                    align="center",
                    justify="center",
                    width="100%",
                ),
                rx.card(
                    rx.vstack(
                        rx.heading(title, as_="h1", size="6"), auth_error(), *children, spacing="4", width="100%"
                    ),
                    width="100%",
                    size="3",
                ),
                spacing="4",
                width="100%",
            ),
            width="100%",
            max_width="24rem",
        ),
        min_height="100dvh",
        padding="1rem",
    )


def login_page() -> rx.Component:
    return _card(
        "Sign in",
        rx.cond(AuthPageState.local_enabled, credentials_form("/auth/sign-in", "sign-in-button", "Sign in", False)),
        single_sign_on_link(),
        rx.cond(
            AuthPageState.signup_open,
            rx.text(
                "No account yet? ", rx.link("Sign up", href="/signup", id="signup-link", underline="always"), size="2"
            ),
        ),
    )


def signup_page() -> rx.Component:
    return _card(
        "Create an account",
        rx.cond(
            AuthPageState.signup_open,
            credentials_form("/auth/sign-up", "sign-up-button", "Sign up", True),
            rx.text("Sign-up is closed on this server. Ask an admin for an account.", size="2"),
        ),
        rx.text(
            "Already have an account? ",
            rx.link("Sign in", href="/login", id="login-link", underline="always"),
            size="2",
        ),
    )
