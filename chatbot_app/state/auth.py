"""The sign-in and sign-up pages' own small state: which refusal to show, and which ways to sign in are on.

Signing in itself is not an event handler: the forms post to the backend's /auth endpoints, because
only an HTTP answer can set the HttpOnly session cookie (see chatbot_app/api/auth_routes.py).
"""

from __future__ import annotations

from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import unquote

import reflex as rx

from chatbot_app.config import get_settings
from chatbot_app.services.accounts import AUTH_MESSAGES, SIGN_IN_EMAIL_COOKIE
from chatbot_app.services.wiring import services

#: The sign-in form's fields.
EMAIL_INPUT_ID, PASSWORD_INPUT_ID = "email-input", "password-input"


def refused_email(cookie_header: str) -> str:
    """The email of the last refused sign-in, from its short-lived cookie ("" if none)."""
    cookies: SimpleCookie = SimpleCookie()
    try:
        cookies.load(cookie_header or "")
    except CookieError:
        return ""
    morsel = cookies.get(SIGN_IN_EMAIL_COOKIE)
    return unquote(morsel.value)[:320] if morsel is not None else ""


class AuthPageState(rx.State):
    # The message for the ?error=<code> a refused form post was redirected with ("" for none).
    error: str = ""
    local_enabled: bool = True
    oidc_enabled: bool = False
    signup_open: bool = True

    @rx.event
    async def load(self) -> Any:
        """on_load of /login and /signup: unknown codes show nothing (the code comes from the URL).

        Sign-up shows its form while anyone may sign up: CHATBOT_ALLOW_SIGNUP, an admin opened it, or
        the server has no account yet (its first becomes the admin). After a refused sign-in the form
        shows the email again (from the backend's short-lived cookie, written straight into the field,
        never into a state var) and puts the cursor in the password.
        """
        settings = get_settings()
        self.error = AUTH_MESSAGES.get(self.router.url.query_parameters.get("error", ""), "")
        self.local_enabled = "local" in settings.auth_methods
        self.oidc_enabled = "oidc" in settings.auth_methods
        self.signup_open = self.local_enabled and settings.accounts_enabled and await services().accounts.signup_open()
        on_sign_in_page = self.router.url.path.rstrip("/").endswith("/login")
        if self.error and on_sign_in_page and (email := refused_email(self.router.headers.cookie)):
            return [rx.set_value(EMAIL_INPUT_ID, email), rx.set_focus(PASSWORD_INPUT_ID)]
        return None
