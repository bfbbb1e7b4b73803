"""The sign-in and sign-up pages' own small state: which refusal to show, and which ways to sign in are on.

Signing in itself is not an event handler: the forms post to the backend's /auth endpoints, because
only an HTTP answer can set the HttpOnly session cookie (see chatbot_app/api/auth_routes.py).
"""

from __future__ import annotations

import reflex as rx

from chatbot_app.config import get_settings
from chatbot_app.services.accounts import AUTH_MESSAGES


class AuthPageState(rx.State):
    # The message for the ?error=<code> a refused form post was redirected with ("" for none).
    error: str = ""
    local_enabled: bool = True
    oidc_enabled: bool = False
    signup_open: bool = True

    @rx.event
    def load(self) -> None:
        """on_load of /login and /signup: unknown codes show nothing (the code comes from the URL)."""
        settings = get_settings()
        self.error = AUTH_MESSAGES.get(self.router.url.query_parameters.get("error", ""), "")
        self.local_enabled = "local" in settings.auth_methods
        self.oidc_enabled = "oidc" in settings.auth_methods
        self.signup_open = self.local_enabled and settings.allow_signup
