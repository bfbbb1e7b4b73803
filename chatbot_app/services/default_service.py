"""The process-wide services, built from Settings on first use."""

from __future__ import annotations

from functools import lru_cache

from chatbot_app.config import get_settings
from chatbot_app.providers import ProviderRegistry
from chatbot_app.services.attachments import AttachmentLimits, AttachmentStore
from chatbot_app.services.chat_service import ChatService
from chatbot_app.services.library import ConversationLibrary
from chatbot_app.services.transcription import Transcriber, transcriber_from_settings
from chatbot_app.storage.database import get_engine


@lru_cache(maxsize=1)
def get_chat_service() -> ChatService:
    settings = get_settings()
    return ChatService(settings, get_engine(settings.database_url), ProviderRegistry.from_settings(settings))


@lru_cache(maxsize=1)
def get_library() -> ConversationLibrary:
    settings = get_settings()
    return ConversationLibrary(get_engine(settings.database_url), AttachmentLimits.from_settings(settings))


@lru_cache(maxsize=1)
def get_attachment_store() -> AttachmentStore:
    return AttachmentStore(get_engine(get_settings().database_url))


@lru_cache(maxsize=1)
def get_transcriber() -> Transcriber | None:
    """Speech to text, or None when no service is configured (then the microphone is not offered)."""
    return transcriber_from_settings(get_settings())
