"""The Reflex app: pages, theme and start-up work. Wiring only."""

from __future__ import annotations

import asyncio
import gc
import logging
import os

import reflex as rx
from sqlalchemy.exc import OperationalError

from chatbot_app.api import create_api
from chatbot_app.config import get_settings
from chatbot_app.logging_config import configure_logging
from chatbot_app.pages.account_page import account_page
from chatbot_app.pages.admin_page import admin_page
from chatbot_app.pages.auth_pages import login_page, signup_page
from chatbot_app.pages.chat_page import chat_page
from chatbot_app.pages.share_page import SHARE_META, share_page
from chatbot_app.security_headers import security_headers
from chatbot_app.services.default_service import get_accounts, get_chat_service, get_library, get_reply_jobs
from chatbot_app.state.account import AccountState
from chatbot_app.state.admin import AdminState
from chatbot_app.state.attachments import recording_message_bytes
from chatbot_app.state.auth import AuthPageState
from chatbot_app.state.conversation import CHAT_ROUTE, ConversationState
from chatbot_app.state.library import LibraryState
from chatbot_app.state.reply import ReplyState
from chatbot_app.state.session import reload_on_lost_session
from chatbot_app.state.settings import SettingsState
from chatbot_app.state.share import SHARE_ROUTE, SharePageState
from chatbot_app.upload_limit import limit_upload_size

log = logging.getLogger("chatbot_app")
configure_logging(get_settings().log_level)


async def _background_upkeep() -> None:
    """Warm the provider clients, then keep marking replies that a dead process left `streaming`.

    A sweep (not a one-off at start-up) because with several workers no single start-up knows
    which replies are orphaned; a reply counts as orphaned once its job's heartbeats stop. At
    shutdown, this process's running jobs store their text as `interrupted` at once.
    """
    # What exists once the app is loaded (compiled pages, state classes, modules) lives as long as the
    # process: out of the collector's full passes, which otherwise paused streaming for up to ~140 ms.
    gc.collect()
    gc.freeze()
    service = get_chat_service()
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
    # Built on a thread now, not in the loop by the first message: it hashes a decoy password (~60 ms).
    await asyncio.to_thread(get_accounts)
    try:
        while True:
            try:
                if count := await service.interrupt_stale_replies():
                    log.info("marked %d unfinished replies as interrupted", count)
                await get_library().discard_abandoned_imports()
            except OperationalError as exc:  # the database is busy (e.g. a long import): next round
                log.warning("upkeep skipped a round: %s", type(exc).__name__)
            except Exception:
                log.exception("upkeep failed; trying again")
            await asyncio.sleep(max(1.0, service.settings.stale_reply_s / 2))
    finally:
        await get_reply_jobs().aclose()
        await service.providers.aclose()


# A microphone recording reaches the server as one websocket message (a base64 data: URL). Reflex's
# default limit, 1 MB, is about 8 s of the recorder's WAV; allow a recording as large as an attachment.
os.environ.setdefault(
    "REFLEX_SOCKET_MAX_HTTP_BUFFER_SIZE", str(recording_message_bytes(get_settings().max_attachment_bytes))
)
app = rx.App(
    stylesheets=["/chat.css"],
    head_components=[rx.el.meta(name="color-scheme", content="light dark")],
    # The REST API (/api, /v1, /docs) in the same backend, then security headers on every response.
    # A tab whose server-side state was lost reloads, so the browser's identity is never replaced.
    backend_exception_handler=reload_on_lost_session,
    api_transformer=[create_api(), security_headers, limit_upload_size(get_settings().max_import_bytes)],
)
# open_page first: with accounts on it turns a signed-out tab away before anything else runs;
# resume follows a reply that open_page found still being written.
ON_LOAD = [
    ConversationState.open_page,
    ReplyState.resume,
    SettingsState.sync,
    LibraryState.refresh,
    AccountState.load_user,
]
app.add_page(chat_page, route=CHAT_ROUTE, title="chatbot_app", on_load=ON_LOAD)
# Open without a session: signing in and up, and share links.
app.add_page(login_page, route="/login", title="Sign in", on_load=AuthPageState.load)
app.add_page(signup_page, route="/signup", title="Create an account", on_load=AuthPageState.load)
app.add_page(share_page, route=SHARE_ROUTE, title="Shared conversation", meta=SHARE_META, on_load=SharePageState.load)
# Signed-in pages (each on_load checks the session, and /admin the role).
app.add_page(account_page, route="/account", title="Your account", on_load=AccountState.load_account)
app.add_page(admin_page, route="/admin", title="Admin", on_load=AdminState.load)
app.register_lifespan_task(_background_upkeep)
