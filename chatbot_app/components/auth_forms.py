"""The sign-in and sign-up forms: plain HTML forms the browser posts to the backend itself.

Reflex's own form always prevents the browser's submission (it sends the fields over the
websocket instead), and a websocket event cannot set an HttpOnly cookie. So these use a bare
<form action=... method="post">; the backend answers with the cookie and a redirect.
"""

from __future__ import annotations

import reflex as rx
from reflex.components.el.elements.base import BaseHTML

from chatbot_app.state.auth import AuthPageState


class NativeForm(BaseHTML):
    """<form> submitted by the browser (no Reflex submit handler)."""

    tag = "form"
    action: rx.Var[str]
    method: rx.Var[str]


def backend_url(path: str) -> str:
    """An absolute URL on the backend (Reflex's api_url, which `reflex export` bakes into the page)."""
    return rx.config.get_config().api_url.rstrip("/") + path


def auth_error() -> rx.Component:
    return rx.cond(
        AuthPageState.error != "",
        rx.callout(
            AuthPageState.error, icon="triangle_alert", color_scheme="red", data_testid="auth-error", role="alert"
        ),
    )


def _field(label: str, **props: object) -> rx.Component:
    return rx.vstack(
        rx.el.label(label, html_for=props["id"], class_name="field-label"),
        rx.input(**props),
        spacing="1",
        width="100%",
    )


def credentials_form(action_path: str, button_id: str, button_text: str, new_password: bool) -> rx.Component:
    return NativeForm.create(
        rx.vstack(
            _field(
                "Email",
                id="email-input",
                name="email",
                type="email",
                required=True,
                auto_complete="email",
                width="100%",
            ),
            _field(
                "Password",
                id="password-input",
                name="password",
                type="password",
                required=True,
                min_length=8 if new_password else None,
                auto_complete="new-password" if new_password else "current-password",
                width="100%",
            ),
            rx.button(button_text, id=button_id, type="submit", width="100%", size="3"),
            spacing="4",
            width="100%",
        ),
        action=backend_url(action_path),
        method="post",
        width="100%",
    )


def single_sign_on_link() -> rx.Component:
    # A document navigation: otherwise React Router takes a link to the page's own origin (make prod, where
    # nginx serves the UI and /auth at one address) for a page of the app, and never asks the backend.
    return rx.cond(
        AuthPageState.oidc_enabled,
        rx.link(
            rx.button("Sign in with single sign-on", variant="outline", width="100%", size="3"),
            href=backend_url("/auth/oidc/login"),
            reload_document=True,
            id="sso-button",
            width="100%",
        ),
    )


def sign_out_button(everywhere: bool = False) -> rx.Component:
    """ "Sign out" (or "Sign out everywhere") for the user menu: a form post, so the cookie is cleared."""
    return NativeForm.create(
        rx.button(
            "Sign out everywhere" if everywhere else "Sign out",
            id="sign-out-everywhere-button" if everywhere else "sign-out-button",
            type="submit",
            variant="ghost",
        ),
        action=backend_url("/auth/sign-out-everywhere" if everywhere else "/auth/sign-out"),
        method="post",
    )
