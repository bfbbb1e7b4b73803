"""The sidebar: the conversation list, search, rename, pin, delete, export of everything, import."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import reflex as rx

from chatbot_app.services.chat_service import ConversationNotFound
from chatbot_app.services.default_service import get_library
from chatbot_app.services.library import check_page, check_search_query, check_title
from chatbot_app.services.validation import InvalidInput, is_conversation_id
from chatbot_app.state.conversation import (
    NOT_FOUND,
    STOPPED_FIRST,
    ConversationState,
    conversation_url,
    stop_running_replies,
)
from chatbot_app.state.session import SessionState, state_helper
from chatbot_app.storage.transfer import ImportRejected


@dataclasses.dataclass
class ConversationItem:
    id: str
    title: str
    pinned: bool


@dataclasses.dataclass
class Segment:
    text: str
    marked: bool


@dataclasses.dataclass
class SearchHitView:
    conversation_id: str
    title: str
    message_id: int
    segments: list[Segment]


def snippet_segments(snippet: str) -> list[Segment]:
    """Split a snippet marked with \\x02...\\x03 into plain and highlighted parts (no HTML involved)."""
    segments = []
    for part in re.split(r"(\x02[^\x03]*\x03)", snippet):
        if part.startswith("\x02"):
            segments.append(Segment(part.strip("\x02\x03"), True))
        elif part:
            segments.append(Segment(part, False))
    return segments


class LibraryState(SessionState):
    conversations: list[ConversationItem] = []
    has_more: bool = False
    page: int = 0
    search_query: str = ""
    search_hits: list[SearchHitView] = []
    sidebar_open: bool = False
    library_notice: str = ""
    pending_delete_id: str = ""
    renaming_id: str = ""
    _stopped_first: bool = False

    # -- sidebar ------------------------------------------------------------------------------

    @state_helper
    def show_title(self, conversation_id: str, title: str) -> None:
        """A conversation got its title (from the model): rename its item, without reloading the list."""
        self.conversations = [
            dataclasses.replace(c, title=title) if c.id == conversation_id else c for c in self.conversations
        ]

    @rx.event(background=True)
    async def refresh(self) -> None:
        """Reload the sidebar's pages shown so far (after a change, or on page load)."""
        async with self:
            owner, pages = await self.page_owner_id(), self.page + 1
        page = await get_library().page(owner, 0, page_size=30 * pages)
        async with self:
            self.conversations = [ConversationItem(c.id, c.title, c.pinned) for c in page.conversations]
            self.has_more = page.has_more

    @rx.event
    async def load_more(self) -> None:
        page = self.page + 1
        try:
            check_page(page)
        except InvalidInput as exc:
            self.library_notice = str(exc)
            return
        result = await get_library().page(await self.owner_id(), page)
        self.page = page
        self.conversations += [ConversationItem(c.id, c.title, c.pinned) for c in result.conversations]
        self.has_more = result.has_more

    @rx.event
    def toggle_sidebar(self) -> None:
        self.sidebar_open = not self.sidebar_open

    @rx.event
    async def search(self, query: Any) -> None:
        try:
            query = check_search_query(query)
        except InvalidInput as exc:
            self.library_notice = str(exc)
            return
        self.search_query = query
        if not query.strip():
            self.search_hits = []
            return
        hits = await get_library().search(await self.owner_id(), query)
        self.search_hits = [
            SearchHitView(h.conversation_id, h.title, h.message_id or 0, snippet_segments(h.snippet)) for h in hits
        ]

    @rx.event
    def open_hit(self, conversation_id: Any, message_id: Any) -> Any:
        if not is_conversation_id(conversation_id) or not isinstance(message_id, int):
            self.library_notice = NOT_FOUND
            return None
        self.search_query, self.search_hits, self.sidebar_open = "", [], False
        target = conversation_url(conversation_id)
        return rx.redirect(f"{target}?m={message_id}" if message_id else target)

    # -- one conversation ---------------------------------------------------------------------

    async def _change(self, conversation_id: Any, change: Any) -> bool:
        """Apply an owned-conversation change; say so plainly if the id is not the caller's."""
        if not is_conversation_id(conversation_id):
            self.library_notice = NOT_FOUND
            return False
        try:
            await change(await self.owner_id(), conversation_id)
        except ConversationNotFound:
            self.library_notice = NOT_FOUND
            return False
        self.library_notice = ""
        return True

    @rx.event
    def start_rename(self, conversation_id: Any) -> None:
        self.renaming_id = conversation_id if is_conversation_id(conversation_id) else ""

    @rx.event
    async def rename(self, form_data: Any) -> Any:
        conversation_id = self.renaming_id
        self.renaming_id = ""
        try:
            title = check_title(form_data.get("title") if isinstance(form_data, dict) else None)
        except InvalidInput as exc:
            self.library_notice = str(exc)
            return None
        if await self._change(conversation_id, lambda owner, cid: get_library().rename(owner, cid, title)):
            if conversation_id == self.conversation_id:
                conversation = await self.get_state(ConversationState)
                conversation.title = title
            return LibraryState.refresh
        return None

    @rx.event
    async def toggle_pin(self, conversation_id: Any) -> Any:
        item = next((c for c in self.conversations if c.id == conversation_id), None)
        pinned = not item.pinned if item else True
        if await self._change(conversation_id, lambda owner, cid: get_library().set_pinned(owner, cid, pinned)):
            return LibraryState.refresh
        return None

    @rx.event
    def ask_delete(self, conversation_id: Any) -> None:
        self.pending_delete_id = conversation_id if is_conversation_id(conversation_id) else ""

    @rx.event
    def cancel_delete(self) -> None:
        self.pending_delete_id = ""

    @rx.event
    async def confirm_delete(self) -> Any:
        """Delete; a reply still being written there is stopped first (and the notice says so)."""
        conversation_id, self.pending_delete_id = self.pending_delete_id, ""

        async def delete(owner: str, cid: str) -> None:
            self._stopped_first = await stop_running_replies(owner, cid)
            await get_library().delete(owner, cid)

        self._stopped_first = False
        if not await self._change(conversation_id, delete):
            return None
        if self._stopped_first:
            self.library_notice = STOPPED_FIRST
        if conversation_id == self.conversation_id:
            conversation = await self.get_state(ConversationState)
            conversation.show_new_chat()
            return [LibraryState.refresh, rx.redirect("/")]
        return LibraryState.refresh

    # -- export and import ---------------------------------------------------------------------

    @rx.event
    async def export_everything(self) -> Any:
        data = await get_library().export_all(await self.owner_id())
        return rx.download(data=data, filename="conversations.json")

    @rx.event
    def reject_import(self, rejected: Any) -> None:
        self.library_notice = (
            f"Nothing was imported: choose one .json file of at most {get_library().max_import_bytes // 2**20} MB."
        )

    @rx.event
    async def import_file(self, files: list[rx.UploadFile]) -> Any:
        if not isinstance(files, list) or len(files) != 1 or not isinstance(files[0], rx.UploadFile):
            self.library_notice = "Choose one JSON file to import."
            return None
        library = get_library()
        data = await files[0].read(library.max_import_bytes + 1)
        try:
            summary = await library.import_file(await self.owner_id(), data)
        except ImportRejected as exc:
            self.library_notice = f"Nothing was imported: {exc}"
            return None
        self.library_notice = summary.message
        return LibraryState.refresh
