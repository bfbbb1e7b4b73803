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
    return ConversationLibrary(get_engine(get_settings().database_url))


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
