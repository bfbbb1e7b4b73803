"""The process-wide services, built from Settings on first use."""

from __future__ import annotations

from functools import lru_cache

from chatbot_app.config import get_settings
from chatbot_app.providers import ProviderRegistry
from chatbot_app.services.accounts import Accounts
from chatbot_app.services.chat_service import ChatService
from chatbot_app.services.library import ConversationLibrary
from chatbot_app.services.reply_jobs import ReplyJobs
from chatbot_app.services.reply_log import MemoryReplyLog, RedisReplyLog, ReplyLog
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


def make_reply_log(redis_url: str | None, retention_s: float) -> ReplyLog:
    """Redis Streams when Redis is configured (processes share it), else this process's memory."""
    return RedisReplyLog(redis_url, retention_s) if redis_url else MemoryReplyLog(retention_s)


@lru_cache(maxsize=1)
def get_reply_jobs() -> ReplyJobs:
    settings = get_settings()
    return ReplyJobs(get_chat_service(), make_reply_log(settings.redis_url, settings.reply_log_ttl_s))


@lru_cache(maxsize=1)
def get_accounts() -> Accounts:
    settings = get_settings()
    return Accounts(settings, get_engine(settings.database_url))


def forget_services() -> None:
    """Build every service anew on next use (after the settings changed, as in tests)."""
    get_settings.cache_clear()
    for build in (get_chat_service, get_library, get_reply_jobs, get_accounts):
        build.cache_clear()
