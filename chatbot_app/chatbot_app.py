"""The Reflex app: pages, theme and start-up work. Wiring only."""

from __future__ import annotations

import logging

import reflex as rx

from chatbot_app.pages.chat import chat_page
from chatbot_app.services.default_service import get_chat_service
from chatbot_app.state.chat import CONVERSATION_ROUTE, ChatState
from chatbot_app.state.library import LibraryState
from chatbot_app.state.settings import SettingsState

log = logging.getLogger("chatbot_app")


async def _recover_interrupted_replies() -> None:
    """Replies a dead process left `streaming` become `interrupted`, keeping their text."""
    count = await get_chat_service().interrupt_stale_replies()
    if count:
        log.info("marked %d unfinished replies as interrupted", count)


app = rx.App(
    stylesheets=["/chat.css"],
    head_components=[rx.el.meta(name="color-scheme", content="light dark")],
)
ON_LOAD = [ChatState.open_page, SettingsState.sync, LibraryState.refresh]
app.add_page(chat_page, route="/", title="chatbot_app", on_load=ON_LOAD)
app.add_page(
    chat_page, route=CONVERSATION_ROUTE, title="chatbot_app", on_load=[ChatState.open_page, SettingsState.sync]
)
app.register_lifespan_task(_recover_interrupted_replies)
