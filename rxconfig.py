"""Reflex configuration.

Reflex-level settings only; the app's own settings live in chatbot_app/config.py.
Any field here can be overridden from the environment as REFLEX_<FIELD>, for example
REFLEX_REDIS_URL=redis://127.0.0.1:6379 to share state between several backend workers.
"""

import reflex as rx

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
