"""The process-wide services, built from Settings on first use."""

from __future__ import annotations

from functools import lru_cache

from chatbot_app.config import get_settings
from chatbot_app.providers import ProviderRegistry
from chatbot_app.services.accounts import Accounts
from chatbot_app.services.attachments import AttachmentLimits, AttachmentStore
from chatbot_app.services.chat_service import ChatService
from chatbot_app.services.library import ConversationLibrary
from chatbot_app.services.reply_jobs import ReplyJobs
from chatbot_app.services.reply_log import MemoryReplyLog, RedisReplyLog, ReplyLog
from chatbot_app.services.transcription import Transcriber, transcriber_from_settings
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
        attachment_limits=AttachmentLimits.from_settings(service.settings),
    )


def make_reply_log(redis_url: str | None, retention_s: float) -> ReplyLog:
    """Redis Streams when Redis is configured (processes share it), else this process's memory."""
    return RedisReplyLog(redis_url, retention_s) if redis_url else MemoryReplyLog(retention_s)


@lru_cache(maxsize=1)
def get_reply_jobs() -> ReplyJobs:
    settings = get_settings()
    return ReplyJobs(
        get_chat_service(),
        make_reply_log(settings.redis_url, settings.reply_log_ttl_s),
        usage_hook=get_accounts().record_usage_for_owner if settings.accounts_enabled else None,
    )


@lru_cache(maxsize=1)
def get_accounts() -> Accounts:
    settings = get_settings()
    return Accounts(settings, get_engine(settings.database_url))


def forget_services() -> None:
    """Build every service anew on next use (after the settings changed, as in tests)."""
    get_settings.cache_clear()
    for build in (get_chat_service, get_library, get_reply_jobs, get_accounts, get_attachment_store, get_transcriber):
        build.cache_clear()


@lru_cache(maxsize=1)
def get_attachment_store() -> AttachmentStore:
    return AttachmentStore(get_engine(get_settings().database_url))


@lru_cache(maxsize=1)
def get_transcriber() -> Transcriber | None:
    """Speech to text, or None when no service is configured (then the microphone is not offered)."""
    return transcriber_from_settings(get_settings())
