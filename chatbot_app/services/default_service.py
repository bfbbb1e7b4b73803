"""The process-wide services, built from Settings on first use."""

from __future__ import annotations

from functools import lru_cache

from chatbot_app.config import get_settings
from chatbot_app.providers import ProviderRegistry
from chatbot_app.services.chat_service import ChatService
from chatbot_app.services.library import ConversationLibrary
from chatbot_app.storage.database import get_engine


@lru_cache(maxsize=1)
def get_chat_service() -> ChatService:
    settings = get_settings()
    return ChatService(settings, get_engine(settings.database_url), ProviderRegistry.from_settings(settings))


@lru_cache(maxsize=1)
def get_library() -> ConversationLibrary:
    service = get_chat_service()
    return ConversationLibrary(
        get_engine(service.settings.database_url),
        limits=service.limits,
        model_menu=service.model_menu,
        max_import_bytes=service.settings.max_import_bytes,
    )
