"""Reflex configuration.

Reflex-level settings only; the app's own settings live in chatbot_app/config.py.
Any field here can be overridden from the environment as REFLEX_<FIELD>, for example
REFLEX_REDIS_URL=redis://127.0.0.1:6379 to share state between several backend workers.
"""

import sys

import reflex as rx

from chatbot_app.config import SettingsError, get_settings

# Every reflex command (run, export) loads this file first: a wrong setting stops it here, in one line.
try:
    get_settings()
except SettingsError as exc:
    sys.exit(f"chatbot_app: {exc}")

config = rx.Config(
    app_name="chatbot_app",
    telemetry_enabled=False,
    # The app owns its database (SQLModel + Alembic under alembic/); Reflex's DB layer stays off.
    db_url=None,
    show_built_with_reflex=False,
    disable_plugins=[rx.plugins.SitemapPlugin],
    plugins=[
        rx.plugins.RadixThemesPlugin(
            theme=rx.theme(accent_color="indigo", gray_color="slate", radius="large"),
        ),
    ],
)
