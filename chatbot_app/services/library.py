"""A user's conversations as a library: list, rename, pin, delete, search, export and import.

Every operation takes the caller's owner id; a conversation that is unknown or belongs to
someone else raises the same ConversationNotFound, so ids reveal nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TypeVar

from sqlalchemy import Engine
from sqlmodel import Session

from chatbot_app.providers import ModelGroup
from chatbot_app.services.attachments import AttachmentLimits, checking_in, prepare_attachment
from chatbot_app.services.chat_service import ConversationNotFound
from chatbot_app.services.chat_settings import check_max_tokens, check_system_prompt, check_temperature, check_top_p
from chatbot_app.services.export_links import ExportLinks, ExportTicket, LinksUnavailable, export_url
from chatbot_app.services.file_checks import FileCheckPool
from chatbot_app.services.validation import _UNSTORABLE, InvalidInput, one_line_name
from chatbot_app.storage import conversations as store
from chatbot_app.storage import search as search_store
from chatbot_app.storage import transfer
from chatbot_app.storage.database import Database
from chatbot_app.storage.models import Conversation, Message

R = TypeVar("R")
log = logging.getLogger(__name__)

PAGE_SIZE = 30
MAX_PAGE = 10_000
MAX_TITLE_CHARS = 200
MAX_QUERY_CHARS = 500
#: Rows (conversations and messages) stored per transaction of an import: each holds SQLite's write lock briefly.
IMPORT_BATCH_ROWS = 2_000
EXPORT_FORMATS = ("json", "md")

ModelMenu = Callable[[], Awaitable[tuple[list[ModelGroup], str]]]


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """What an import stored (new ids, in file order) and what it had to change, in words for the user."""

    ids: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        count = len(self.ids)
        return " ".join([f"Imported {count} conversation{'s' if count != 1 else ''}.", *self.notes])


@dataclass(frozen=True, slots=True)
class ImportCounts:
    """How far an import has got: conversations and messages stored so far, of how many in the file."""

    conversations: int
    messages: int
    total_conversations: int
    total_messages: int


#: Told how far an import has got: once the file is read, then after each batch is stored.
ImportProgressReport = Callable[[ImportCounts], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ExportStream:
    """An export to send as a download: its file name, its media type, and its bytes as they are read."""

    filename: str
    media_type: str
    chunks: AsyncIterator[bytes]


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
    return one_line_name(
        raw,
        MAX_TITLE_CHARS,
        missing="A title cannot be empty.",
        too_long=f"Titles are limited to {MAX_TITLE_CHARS} characters.",
        unstorable="That title contains characters that cannot be saved.",
    )


def check_search_query(raw: object) -> str:
    """The search text as typed, cut to MAX_QUERY_CHARS; raises InvalidInput.

    It is shown back in the search box, so it must be sendable: a lone surrogate would make the
    tab's next update unencodable, and the server would drop the tab's connection.
    """
    if not isinstance(raw, str):
        raise InvalidInput("Search text must be text.")
    if _UNSTORABLE.search(raw):
        raise InvalidInput("Search text contains characters that cannot be searched for.")
    return raw[:MAX_QUERY_CHARS]


class ConversationLibrary:
    def __init__(
        self,
        engine: Engine,
        *,
        model_menu: ModelMenu | None = None,
        max_import_bytes: int = transfer.MAX_IMPORT_BYTES,
        attachment_limits: AttachmentLimits | None = None,
        file_checks: FileCheckPool | None = None,
        export_links: ExportLinks | None = None,
    ) -> None:
        self._db = Database(engine).run
        self._model_menu = model_menu
        self.max_import_bytes = max_import_bytes
        # Imported attachments are checked as uploads are, within the same limits, in the same worker pool
        # (without one, as in some tests, in the import's own thread).
        self.attachment_limits = attachment_limits or AttachmentLimits()
        self._file_checks = file_checks
        self._export_links = export_links

    async def _owned(
        self,
        owner_id: str,
        conversation_id: str,
        work: Callable[[Session, Conversation], R],
        *,
        to_change: bool = False,
    ) -> R:
        """Run `work` on the owner's conversation in one transaction (`to_change`: see store.get_conversation);
        raises ConversationNotFound."""

        def run(session: Session) -> R:
            conversation = store.get_conversation(session, conversation_id, owner_id, to_change=to_change)
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
        await self._owned(
            owner_id, conversation_id, lambda s, c: store.rename_conversation(s, c, title), to_change=True
        )

    async def set_pinned(self, owner_id: str, conversation_id: str, pinned: bool) -> None:
        await self._owned(owner_id, conversation_id, lambda s, c: store.set_pinned(s, c, pinned), to_change=True)

    async def delete(self, owner_id: str, conversation_id: str) -> None:
        await self._owned(owner_id, conversation_id, store.delete_conversation, to_change=True)

    async def clear(self, owner_id: str, conversation_id: str) -> None:
        await self._owned(owner_id, conversation_id, store.clear_messages, to_change=True)

    async def older_messages(self, owner_id: str, conversation_id: str, before_id: int, limit: int) -> list[Message]:
        return await self._owned(
            owner_id, conversation_id, lambda s, c: store.messages_before(s, c.id, before_id, limit)
        )

    async def stats(self, owner_id: str, conversation_id: str) -> store.ConversationStats:
        return await self._owned(owner_id, conversation_id, lambda s, c: store.conversation_stats(s, c.id))

    async def search(self, owner_id: str, query: str) -> list[search_store.SearchHit]:
        query = query[:MAX_QUERY_CHARS]
        return await self._db(lambda s: search_store.search(s, owner_id, query))

    async def export(self, owner_id: str, conversation_id: str | None, export_format: str = "json") -> ExportStream:
        """The owner's conversations (all, or the one named) as a stream of bytes; raises ConversationNotFound.

        Ownership is checked now; the content is read as the stream is consumed, in bounded pieces
        (storage.transfer.stream_json), so an export of any size holds little memory.
        """
        ids = await self._exported_ids(owner_id, conversation_id, export_format)
        if conversation_id is None:
            return ExportStream("conversations.json", "application/json", transfer.stream_json(self._db, ids))
        name = f"conversation-{conversation_id[:8]}.{export_format}"
        if export_format == "md":
            return ExportStream(name, "text/markdown; charset=utf-8", transfer.stream_markdown(self._db, ids[0]))
        return ExportStream(name, "application/json", transfer.stream_json(self._db, ids))

    async def export_link(self, owner_id: str, conversation_id: str | None, export_format: str = "json") -> str:
        """The backend path of a short-lived link to `export`'s file, for the page to download from.

        Raises ConversationNotFound, InvalidInput, and LinksUnavailable (the links' secret is out of reach).
        """
        if self._export_links is None:
            raise LinksUnavailable("this library makes no export links")
        await self._exported_ids(owner_id, conversation_id, export_format)
        token = await self._export_links.token(ExportTicket(owner_id, conversation_id, export_format))
        return export_url(token)

    async def export_by_link(self, token: str) -> ExportStream | None:
        """The export a link's token names: None if the token is forged, altered or expired.

        Raises ConversationNotFound (deleted since), InvalidInput and LinksUnavailable.
        """
        if self._export_links is None:
            raise LinksUnavailable("this library makes no export links")
        ticket = await self._export_links.open(token)
        if ticket is None:
            return None
        return await self.export(ticket.owner_id, ticket.conversation_id, ticket.export_format)

    async def _exported_ids(self, owner_id: str, conversation_id: str | None, export_format: str) -> list[str]:
        if export_format not in EXPORT_FORMATS or (conversation_id is None and export_format != "json"):
            raise InvalidInput("Exports are JSON (everything, or one conversation) or Markdown (one conversation).")
        ids = await self._db(lambda s: transfer.exported_ids(s, owner_id, conversation_id))
        if conversation_id is not None and not ids:
            raise ConversationNotFound(conversation_id)
        return ids

    async def import_file(
        self, owner_id: str, data: bytes, report: ImportProgressReport | None = None
    ) -> ImportSummary:
        """Import our JSON or ChatGPT's conversations.json, all or nothing; raises ImportRejected.

        Parsing runs in a worker thread; rows are stored in short batches under a staging owner and
        handed to `owner_id` in one statement at the end, so other users' writes never wait long and
        no one ever sees half an import. `report` hears how far it has got. (Its limits are the door's:
        services.actions.)
        """
        limits = self.attachment_limits
        if self._file_checks is not None:
            check_file = checking_in(self._file_checks, limits)
        else:
            check_file = lambda name, content: prepare_attachment(name, content, limits)  # noqa: E731
        parsed = await asyncio.to_thread(
            transfer.parse_import, data, self.max_import_bytes, check_file, limits.max_count
        )
        offered = await self._offered_models()
        checked, fell_back = [], 0
        for number, conversation in enumerate(parsed, 1):
            conversation, changed = checked_settings(conversation, f"Conversation {number}", offered)
            checked.append(conversation)
            fell_back += changed
        ids = await self._store_staged(owner_id, checked, report)
        notes = []
        if fell_back:
            notes.append(
                f"{fell_back} conversation{'s' if fell_back != 1 else ''} asked for a model this server does not "
                "offer and will use the default model."
            )
        return ImportSummary(ids, notes)

    async def _offered_models(self) -> dict[str, set[str] | None] | None:
        """Provider -> its models (None: its list is unavailable right now); None if nothing is known."""
        if self._model_menu is None:
            return None
        groups, _ = await self._model_menu()
        return {g.provider: (set(g.models) if g.error is None else None) for g in groups}

    async def _store_staged(
        self,
        owner_id: str,
        conversations: list[transfer.ImportedConversation],
        report: ImportProgressReport | None = None,
    ) -> list[str]:
        staging = transfer.staging_owner()
        counts = ImportCounts(0, 0, len(conversations), sum(len(c.messages) for c in conversations))
        if report is not None:  # the file is read: how much there is to store
            await report(counts)
        await self._db(transfer.discard_abandoned_imports)
        ids: list[str] = []
        try:
            for batch in _batches(conversations, IMPORT_BATCH_ROWS):
                ids += await self._db(lambda s, batch=batch: transfer.import_conversations(s, staging, batch))
                if report is not None:
                    messages = counts.messages + sum(len(c.messages) for c in batch)
                    counts = replace(counts, conversations=len(ids), messages=messages)
                    await report(counts)
            await self._db(lambda s: transfer.publish_import(s, staging, owner_id))
        except BaseException:
            try:
                await self._db(lambda s: transfer.discard_import(s, staging))
            except Exception:  # the sweep in discard_abandoned_imports removes them later
                log.exception("could not discard a failed import")
            raise
        return ids

    async def discard_abandoned_imports(self) -> None:
        """Delete what imports that died part-way left staged (run now and then, e.g. in the upkeep loop)."""
        await self._db(transfer.discard_abandoned_imports)


def checked_settings(
    conversation: transfer.ImportedConversation, where: str, offered: dict[str, set[str] | None] | None
) -> tuple[transfer.ImportedConversation, bool]:
    """The conversation with its settings checked as the settings panel checks them; raises ImportRejected.

    A provider or model this server does not offer becomes the default (True in the result).
    """
    try:
        settings = {
            "temperature": None if conversation.temperature is None else check_temperature(conversation.temperature),
            "top_p": None if conversation.top_p is None else check_top_p(conversation.top_p),
            "max_tokens": None if conversation.max_tokens is None else check_max_tokens(conversation.max_tokens),
            "system_prompt": None
            if conversation.system_prompt is None
            else (check_system_prompt(conversation.system_prompt) or None),
        }
    except (InvalidInput, OverflowError) as exc:
        raise transfer.ImportRejected(f"{where}, settings: {exc}") from None
    provider, model = conversation.provider, conversation.model
    fell_back = False
    if offered is not None and (provider is not None or model is not None):
        if provider not in offered:
            provider, model, fell_back = None, None, True
        elif model is not None and (models := offered[provider]) is not None and model not in models:
            model, fell_back = None, True
    return replace(conversation, provider=provider, model=model, **settings), fell_back


def _batches(
    conversations: list[transfer.ImportedConversation], max_rows: int
) -> Iterator[list[transfer.ImportedConversation]]:
    """Consecutive groups of about `max_rows` rows; a larger conversation goes alone."""
    batch: list[transfer.ImportedConversation] = []
    rows = 0
    for conversation in conversations:
        size = 1 + len(conversation.messages)
        if batch and rows + size > max_rows:
            yield batch
            batch, rows = [], 0
        batch.append(conversation)
        rows += size
    if batch:
        yield batch
