"""The app's services, built once at start-up from Settings, and the one place that hands them out.

`build_services` shows the whole wiring in one function: what each service is made of. The backend
builds them when it starts (chatbot_app.py's lifespan) and installs them; Reflex handlers and API
routes then reach them through `services()`. Tests build their own and install those.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from chatbot_app.config import Settings
from chatbot_app.providers import ProviderRegistry
from chatbot_app.services.accounts import Accounts
from chatbot_app.services.actions import Actions
from chatbot_app.services.attachments import AttachmentLimits, AttachmentStore
from chatbot_app.services.branch_changes import BranchChanges
from chatbot_app.services.chat_service import ChatService
from chatbot_app.services.export_links import ExportLinks
from chatbot_app.services.file_checks import FileCheckPool
from chatbot_app.services.import_jobs import ImportJobs, import_progress_store
from chatbot_app.services.library import ConversationLibrary
from chatbot_app.services.limits import AbuseLimits
from chatbot_app.services.quota import TokenQuota
from chatbot_app.services.reply_jobs import ReplyJobs
from chatbot_app.services.reply_liveness import liveness_for
from chatbot_app.services.reply_log import MemoryReplyLog, RedisReplyLog, ReplyLog
from chatbot_app.services.shares import ShareLinks
from chatbot_app.services.speech import Speaker, speaker_from_settings, speech_links
from chatbot_app.services.transcription import Transcriber, transcriber_from_settings
from chatbot_app.storage.database import get_engine

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    chat: ChatService
    replies: ReplyJobs
    accounts: Accounts
    library: ConversationLibrary
    attachments: AttachmentStore
    shares: ShareLinks
    quota: TokenQuota
    #: Speech to text; None when no service is configured (then the microphone is not offered).
    transcriber: Transcriber | None
    #: Text to speech (Read aloud); None when no service is configured (then the action is not offered).
    speaker: Speaker | None
    actions: Actions
    #: The worker processes that decode images and PDFs (uploads and imports share them).
    file_checks: FileCheckPool
    #: Imports running as jobs of their own, and their progress.
    imports: ImportJobs
    #: Word of switched branches, for the tabs open on a conversation (the actions announce them).
    branches: BranchChanges

    async def aclose(self) -> None:
        """Shut down: running replies store their text as `interrupted`, running imports are discarded
        (and say so), provider connections close, the file checkers stop."""
        await self.replies.aclose()
        await self.imports.aclose()
        await self.branches.aclose()
        await self.chat.providers.aclose()
        await asyncio.to_thread(self.file_checks.close)


def make_reply_log(redis_url: str | None, retention_s: float) -> ReplyLog:
    """Redis Streams when Redis is configured (processes share it), else this process's memory."""
    return RedisReplyLog(redis_url, retention_s) if redis_url else MemoryReplyLog(retention_s)


def build_services(settings: Settings) -> Services:
    """Every service, wired together once."""
    engine = get_engine(settings.database_url)
    limits = AbuseLimits.from_settings(settings)
    quota = TokenQuota(engine, settings.daily_tokens_per_user)
    chat = ChatService(settings, engine, ProviderRegistry.from_settings(settings), limits=limits, quota=quota)
    replies = ReplyJobs(
        chat, make_reply_log(settings.redis_url, settings.reply_log_ttl_s), liveness=liveness_for(settings.redis_url)
    )
    file_checks = FileCheckPool(
        settings.file_check_workers,
        settings.file_check_queue,
        settings.file_check_cpu_s,
        settings.file_check_memory_mib,
    )
    library = ConversationLibrary(
        engine,
        model_menu=chat.model_menu,
        max_import_bytes=settings.max_import_bytes,
        attachment_limits=AttachmentLimits.from_settings(settings),
        file_checks=file_checks,
        export_links=ExportLinks(settings),
    )
    shares = ShareLinks(engine, max_bytes=settings.max_share_bytes, max_links=settings.max_share_links)
    transcriber = transcriber_from_settings(settings)
    speaker = speaker_from_settings(settings)
    accounts = Accounts(settings, engine)
    imports = ImportJobs(library, import_progress_store(settings.redis_url))
    branches = BranchChanges(settings.redis_url)
    return Services(
        settings=settings,
        chat=chat,
        replies=replies,
        accounts=accounts,
        library=library,
        attachments=AttachmentStore(engine),
        shares=shares,
        quota=quota,
        transcriber=transcriber,
        speaker=speaker,
        actions=Actions(
            settings,
            chat,
            replies,
            library,
            shares,
            accounts,
            transcriber,
            imports,
            speaker,
            speech_links(settings),
            branches,
        ),
        file_checks=file_checks,
        imports=imports,
        branches=branches,
    )


_installed: Services | None = None


def install(built: Services | None) -> None:
    """Make `built` the services every handler and route uses (None: uninstall)."""
    global _installed
    _installed = built


def services() -> Services:
    """The installed services; the backend installs them as it starts, before it serves anything."""
    if _installed is None:
        raise RuntimeError("the app's services are not built yet: install(build_services(settings)) first")
    return _installed


@contextlib.contextmanager
def installed(built: Services) -> Iterator[Services]:
    """Install `built` for the duration of a block (tests), then put back what was there."""
    previous = _installed
    install(built)
    try:
        yield built
    finally:
        install(previous)
