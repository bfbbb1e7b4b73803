"""The Reflex app: pages, theme and start-up work. Wiring only."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import os
from collections.abc import AsyncIterator

import reflex as rx
from sqlalchemy.exc import OperationalError

from chatbot_app.api import create_api
from chatbot_app.config import get_settings
from chatbot_app.logging_config import configure_logging
from chatbot_app.origin_guard import app_origins, origin_guard, reflex_cors_origins
from chatbot_app.pages.account_page import account_page
from chatbot_app.pages.admin_page import admin_page
from chatbot_app.pages.auth_pages import login_page, signup_page
from chatbot_app.pages.chat_page import chat_page
from chatbot_app.pages.not_found_page import not_found_page
from chatbot_app.pages.share_page import SHARE_META, share_page
from chatbot_app.security_headers import security_headers
from chatbot_app.services.wiring import Services, build_services, install
from chatbot_app.state.account import AccountState
from chatbot_app.state.admin import AdminState
from chatbot_app.state.attachments import recording_message_bytes
from chatbot_app.state.auth import AuthPageState
from chatbot_app.state.conversation import CHAT_ROUTE, ConversationState
from chatbot_app.state.library import LibraryState
from chatbot_app.state.reply import ReplyState
from chatbot_app.state.session import StartCleanOnNewSignIn, reload_on_lost_session
from chatbot_app.state.settings import SettingsState
from chatbot_app.state.share import SHARE_ROUTE, ShareListState, SharePageState
from chatbot_app.upload_limit import limit_upload_rate, limit_upload_size

log = logging.getLogger("chatbot_app")
configure_logging(get_settings().log_level)


#: How often the upkeep ends replies whose process died (ReplyJobs.sweep), and how many of its rounds
#: go by between two releases of unsettled quota reservations and abandoned imports.
SWEEP_S = 2.0
OTHER_UPKEEP_EVERY_ROUNDS = 8


@contextlib.asynccontextmanager
async def app_services() -> AsyncIterator[None]:
    """Build the services once as the backend starts (before it serves anything), keep up the upkeep
    while it runs, and shut them down with it."""
    built = build_services(get_settings())
    install(built)
    upkeep = asyncio.get_running_loop().create_task(_upkeep(built), name="upkeep")
    try:
        yield
    finally:
        upkeep.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await upkeep
        await built.aclose()  # this process's running replies store their text as `interrupted`


async def _upkeep(built: Services) -> None:
    """Warm the provider clients, then keep ending replies that a dead process left `streaming`.

    A sweep (not a one-off at start-up) because with several workers no single start-up knows
    which replies are orphaned; a reply counts as orphaned once its process is known dead (Redis),
    or its job's database heartbeats stop. Every few rounds, the same upkeep releases quota
    reservations whose calls never settled, and abandoned imports.
    """
    # What exists once the app is loaded (compiled pages, state classes, modules) lives as long as the
    # process: out of the collector's full passes, which otherwise paused streaming for up to ~140 ms.
    gc.collect()
    gc.freeze()
    # The file checkers' forkserver imports Pillow and pypdf once (about a second), on a thread, at once:
    # an upload that came first would wait for it on the event loop.
    checkers_started = asyncio.create_task(asyncio.to_thread(built.file_checks.start))
    checkers_started.add_done_callback(_report_file_checkers)
    service = built.chat
    log.info(
        "startup",
        extra={
            "providers": [p.name for p in service.providers.providers],
            "default_provider": service.providers.default_name,
            "database": service.settings.database_url.split(":", 1)[0],  # the dialect only: URLs hold passwords
        },
    )
    try:
        await service.model_menu()  # the first chat then skips client set-up and the model list call
    except Exception:
        log.exception("could not list models at start-up")
    for round_number in itertools.count():
        try:
            if count := await built.replies.sweep():
                log.info("marked %d unfinished replies as interrupted", count)
            if round_number % OTHER_UPKEEP_EVERY_ROUNDS == 0:
                await built.quota.release_expired()
                await built.library.discard_abandoned_imports()
        except OperationalError as exc:  # the database is busy (e.g. a long import): next round
            log.warning("upkeep skipped a round: %s", type(exc).__name__)
        except Exception:
            log.exception("upkeep failed; trying again")
        await asyncio.sleep(SWEEP_S)


def _report_file_checkers(started: asyncio.Task[None]) -> None:
    # One line, no traceback: it happens when the backend is stopped while it starts (the forkserver goes first).
    if not started.cancelled() and (error := started.exception()) is not None:
        log.warning("the file checkers did not start (%r); the first upload tries again", error)


# A microphone recording reaches the server as one websocket message (a base64 data: URL). Reflex's
# default limit, 1 MB, is about 8 s of the recorder's WAV; allow a recording as large as an attachment.
os.environ.setdefault(
    "REFLEX_SOCKET_MAX_HTTP_BUFFER_SIZE", str(recording_message_bytes(get_settings().max_attachment_bytes))
)
# With accounts on, only the app's own origins may use the session cookie (websocket, uploads, /auth):
# Reflex's CORS layer and Socket.IO origin check are narrowed to them (and the API's browser clients),
# unless REFLEX_CORS_ALLOWED_ORIGINS says otherwise; origin_guard keeps the API's clients off the cookie.
settings = get_settings()
api_url = rx.config.get_config().api_url
guarded_origins = app_origins(settings.app_url, api_url) if settings.accounts_enabled else None
if guarded_origins is not None:
    os.environ.setdefault(
        "REFLEX_CORS_ALLOWED_ORIGINS", ",".join(reflex_cors_origins(settings.app_url, api_url, settings.cors_origins))
    )
app = rx.App(
    stylesheets=["/chat.css"],
    head_components=[rx.el.meta(name="color-scheme", content="light dark")],
    # The REST API (/api, /v1, /docs) in the same backend, then security headers on every response.
    # A tab whose server-side state was lost reloads, so the browser's identity is never replaced.
    backend_exception_handler=reload_on_lost_session,
    api_transformer=[
        create_api(),
        security_headers,
        limit_upload_size(get_settings().max_import_bytes),
        limit_upload_rate(get_settings().uploads_per_minute, get_settings().trusted_proxies),
        *([origin_guard(guarded_origins)] if guarded_origins is not None else []),
    ],
)
# With accounts on, a tab whose sign-in changed (signed out, or someone else signed in) starts clean.
app.add_middleware(StartCleanOnNewSignIn())
# open_page first: with accounts on it turns a signed-out tab away before anything else runs;
# resume follows a reply that open_page found still being written.
ON_LOAD = [
    ConversationState.open_page,
    ReplyState.resume,
    SettingsState.sync,
    LibraryState.refresh,
    AccountState.load_user,
]
APP_NAME = get_settings().app_name
app.add_page(chat_page, route=CHAT_ROUTE, title=APP_NAME, on_load=ON_LOAD)
# Open without a session: signing in and up, and share links.
app.add_page(login_page, route="/login", title=f"Sign in · {APP_NAME}", on_load=AuthPageState.load)
app.add_page(signup_page, route="/signup", title=f"Create an account · {APP_NAME}", on_load=AuthPageState.load)
app.add_page(
    share_page,
    route=SHARE_ROUTE,
    title=f"Shared conversation · {APP_NAME}",
    meta=SHARE_META,
    on_load=SharePageState.load,
)
# Signed-in pages (each on_load checks the session, and /admin the role).
app.add_page(
    account_page,
    route="/account",
    title=f"Your account · {APP_NAME}",
    on_load=[AccountState.load_account, ShareListState.load],
)
app.add_page(admin_page, route="/admin", title=f"Admin · {APP_NAME}", on_load=AdminState.load)
# Any other address (the chat's own route answers one- and two-segment ones the same way).
app.add_page(not_found_page, route="404", title=f"Page not found · {APP_NAME}")
app.register_lifespan_task(app_services)
