"""A user's conversations as a library: list, rename, pin, delete, search, export and import.

Every operation takes the caller's owner id; a conversation that is unknown or belongs to
someone else raises the same ConversationNotFound, so ids reveal nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import Engine
from sqlmodel import Session

from chatbot_app.services.attachments import AttachmentLimits, prepare_attachment
from chatbot_app.services.chat_service import ConversationNotFound
from chatbot_app.storage.database import Database
from chatbot_app.services.validation import InvalidInput
from chatbot_app.storage import conversations as store
from chatbot_app.storage import search as search_store
from chatbot_app.storage import transfer
from chatbot_app.storage.models import Conversation, Message

R = TypeVar("R")

PAGE_SIZE = 30
MAX_PAGE = 10_000
MAX_TITLE_CHARS = 200
MAX_QUERY_CHARS = 500


@dataclass(frozen=True, slots=True)
class ConversationPage:
    conversations: list[Conversation]
    has_more: bool


def check_page(raw: object) -> int:
    """A page number from a client: a whole number from 0 to MAX_PAGE."""
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= MAX_PAGE:
        raise InvalidInput(f"Page must be a whole number from 0 to {MAX_PAGE:,}.")
    return raw


def check_title(raw: object) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidInput("A title cannot be empty.")
    title = " ".join(raw.split())
    if len(title) > MAX_TITLE_CHARS:
        raise InvalidInput(f"Titles are limited to {MAX_TITLE_CHARS} characters.")
    return title


class ConversationLibrary:
    def __init__(self, engine: Engine, attachment_limits: AttachmentLimits | None = None) -> None:
        self._db = Database(engine).run
        # Imported attachments are checked as uploads are, within the same limits.
        self.attachment_limits = attachment_limits or AttachmentLimits()

    async def _owned(self, owner_id: str, conversation_id: str, work: Callable[[Session, Conversation], R]) -> R:
        """Run `work` on the owner's conversation in one transaction; raises ConversationNotFound."""

        def run(session: Session) -> R:
            conversation = store.get_conversation(session, conversation_id, owner_id)
            if conversation is None:
                raise ConversationNotFound(conversation_id)
            return work(session, conversation)

        return await self._db(run)

    async def page(self, owner_id: str, page: int, page_size: int = PAGE_SIZE) -> ConversationPage:
        """One page of the sidebar: pinned first, then newest first."""

        def work(session: Session) -> ConversationPage:
            rows = store.list_conversations(session, owner_id, limit=page_size + 1, offset=page * page_size)
            return ConversationPage(rows[:page_size], has_more=len(rows) > page_size)

        return await self._db(work)

    async def rename(self, owner_id: str, conversation_id: str, title: str) -> None:
        await self._owned(owner_id, conversation_id, lambda s, c: store.rename_conversation(s, c, title))

    async def set_pinned(self, owner_id: str, conversation_id: str, pinned: bool) -> None:
        await self._owned(owner_id, conversation_id, lambda s, c: store.set_pinned(s, c, pinned))

    async def delete(self, owner_id: str, conversation_id: str) -> None:
        await self._owned(owner_id, conversation_id, store.delete_conversation)

    async def clear(self, owner_id: str, conversation_id: str) -> None:
        await self._owned(owner_id, conversation_id, store.clear_messages)

    async def older_messages(self, owner_id: str, conversation_id: str, before_id: int, limit: int) -> list[Message]:
        return await self._owned(
            owner_id, conversation_id, lambda s, c: store.messages_before(s, c.id, before_id, limit)
        )

    async def stats(self, owner_id: str, conversation_id: str) -> store.ConversationStats:
        return await self._owned(owner_id, conversation_id, lambda s, c: store.conversation_stats(s, c.id))

    async def search(self, owner_id: str, query: str) -> list[search_store.SearchHit]:
        query = query[:MAX_QUERY_CHARS]
        return await self._db(lambda s: search_store.search(s, owner_id, query))

    async def export_json(self, owner_id: str, conversation_id: str) -> str:
        data = await self._owned(owner_id, conversation_id, transfer.export_conversation)
        return json.dumps(data, ensure_ascii=False, indent=2)

    async def export_markdown(self, owner_id: str, conversation_id: str) -> str:
        return await self._owned(owner_id, conversation_id, transfer.export_markdown)

    async def export_all(self, owner_id: str) -> str:
        data = await self._db(lambda s: transfer.export_all(s, owner_id))
        return json.dumps(data, ensure_ascii=False, indent=2)

    async def import_file(self, owner_id: str, data: bytes) -> list[str]:
        """Import our JSON or ChatGPT's conversations.json in one transaction; raises ImportRejected."""
        limits = self.attachment_limits
        parsed = transfer.parse_import(
            data, lambda name, content: prepare_attachment(name, content, limits), limits.max_count
        )
        return await self._db(lambda s: transfer.import_conversations(s, owner_id, parsed))
