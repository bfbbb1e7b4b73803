"""The sidebar: the conversation list, search, rename, pin, delete, export of everything, import (and its
progress)."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import reflex as rx
from redis.exceptions import RedisError

from chatbot_app.services.actions import Caller
from chatbot_app.services.chat_service import ConversationNotFound
from chatbot_app.services.import_jobs import READING, STOPPED, ImportProgress
from chatbot_app.services.library import check_page, check_search_query, check_title
from chatbot_app.services.refusals import Refused
from chatbot_app.services.validation import InvalidInput, is_conversation_id
from chatbot_app.services.wiring import services
from chatbot_app.state.conversation import (
    NOT_FOUND,
    STOPPED_FIRST,
    ConversationState,
    conversation_url,
)
from chatbot_app.state.session import SessionState, state_helper
from chatbot_app.state.views import backend_download
from chatbot_app.storage.models import Conversation
from chatbot_app.storage.search import SearchHit

#: The sidebar's groups, in order.
PINNED, TODAY, YESTERDAY, LAST_WEEK, OLDER = "Pinned", "Today", "Yesterday", "Previous 7 days", "Older"
#: The most a browser's clock may differ from UTC, in minutes (UTC-14 to UTC+14).
MAX_UTC_OFFSET_MIN = 14 * 60

#: The import's progress cannot be read (Redis is out of reach), while the import itself goes on.
PROGRESS_UNREACHABLE = "Your import goes on, but its progress cannot be shown just now: reload the page in a while."

log = logging.getLogger(__name__)
#: The (tab, identity) pairs this process follows an import for: one watcher each, however often a
#: client asks (each would poll the progress until the import ends).
_WATCHING: set[tuple[str, str]] = set()


@dataclasses.dataclass
class ConversationItem:
    id: str
    title: str
    pinned: bool
    #: Its last activity (ISO 8601, UTC), which places it in a group.
    updated: str = ""
    #: Which sidebar group it is in, and whether it is the first of that group (the group's heading shows).
    group: str = ""
    group_start: bool = False


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


def group_of(pinned: bool, updated: datetime, now: datetime, utc_offset_min: int) -> str:
    """The sidebar group of a conversation: pinned, or by its last activity's day in the browser's time zone.

    `utc_offset_min` is the browser's Date.getTimezoneOffset(): UTC minus local time, in minutes.
    """
    if pinned:
        return PINNED
    updated = updated if updated.tzinfo else updated.replace(tzinfo=UTC)
    shift = timedelta(minutes=utc_offset_min)
    days = ((now - shift).date() - (updated - shift).date()).days
    if days <= 0:
        return TODAY
    if days == 1:
        return YESTERDAY
    return LAST_WEEK if days <= 7 else OLDER


def item_of(conversation: Conversation, title: str | None = None) -> ConversationItem:
    """A listed conversation's row (with `title` in place of the stored one, if given)."""
    updated = conversation.updated_at
    updated = updated if updated.tzinfo else updated.replace(tzinfo=UTC)
    return ConversationItem(conversation.id, title or conversation.title, conversation.pinned, updated.isoformat())


def grouped(items: Sequence[ConversationItem], now: datetime, utc_offset_min: int) -> list[ConversationItem]:
    """The sidebar's rows (pinned first, then newest first, as listed), each marked with its group."""
    rows: list[ConversationItem] = []
    for item in items:
        group = group_of(item.pinned, datetime.fromisoformat(item.updated), now, utc_offset_min)
        rows.append(dataclasses.replace(item, group=group, group_start=not rows or rows[-1].group != group))
    return rows


def best_hit_per_conversation(hits: Sequence[SearchHit]) -> list[SearchHit]:
    """One search result per conversation, in the order the conversations first rank.

    Its snippet is the best-ranked matching message, or the title when only the title matches.
    """
    best: dict[str, SearchHit] = {}
    for hit in hits:
        kept = best.get(hit.conversation_id)
        if kept is None or (kept.message_id is None and hit.message_id is not None):
            best[hit.conversation_id] = hit
    return list(best.values())


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
    #: The title the rename field opens with.
    renaming_title: str = ""
    # An import of this identity is running (services.import_jobs): its progress bar shows.
    import_running: bool = False
    import_percent: int = 0
    import_status: str = ""
    # Each import watcher takes a new number; an older one that sees a newer number ends itself.
    _import_watch: int = 0
    # The import whose end this tab has shown (its job id), so a reload does not say it again.
    _import_shown: str = ""
    # The browser's offset from UTC (Date.getTimezoneOffset()), so "Today" is the user's today.
    _utc_offset_min: int = 0
    # Listings being read now, and the model's titles shown meanwhile (newer than what those listings read).
    _listings: int = 0
    _titles_meanwhile: dict[str, str] = {}

    # -- sidebar ------------------------------------------------------------------------------

    @state_helper
    def show_title(self, conversation_id: str, title: str) -> None:
        """A conversation got its title (from the model): rename its item, without reloading the list."""
        self.conversations = [
            dataclasses.replace(c, title=title) if c.id == conversation_id else c for c in self.conversations
        ]
        if self._listings:  # a listing read before this title must not put the old one back
            self._titles_meanwhile[conversation_id] = title

    def _list(self, items: Sequence[ConversationItem]) -> None:
        self.conversations = grouped(items, datetime.now(UTC), self._utc_offset_min)

    @rx.event(background=True)
    async def refresh(self) -> Any:
        """on_load: list the sidebar's pages shown so far (a page was opened, so the phone's drawer closes),
        and show an import of this identity that runs, or whose end this tab has not shown."""
        await self._relist(close_drawer=True)
        async with self:
            progress = await self._import_to_show()
            if progress is not None:
                self._show_import(progress)
        if progress is not None:
            yield LibraryState.watch_import

    @rx.event(background=True)
    async def relist(self) -> None:
        """List the sidebar again after a change made in it (the drawer stays as it is)."""
        await self._relist(close_drawer=False)

    async def _relist(self, close_drawer: bool) -> None:
        async with self:
            owner, pages = await self.page_owner_id(), self.page + 1
            self._listings += 1
        try:
            page = await services().library.page(owner, 0, page_size=30 * pages)
        finally:
            async with self:
                self._listings -= 1
        async with self:
            retitled = self._titles_meanwhile
            if not self._listings:
                self._titles_meanwhile = {}
            self._list([item_of(c, retitled.get(c.id)) for c in page.conversations])
            self.has_more = page.has_more
            if close_drawer:
                self.sidebar_open = False

    @rx.event
    async def load_more(self) -> None:
        page = self.page + 1
        try:
            check_page(page)
        except InvalidInput as exc:
            self.library_notice = str(exc)
            return
        result = await services().library.page(await self.owner_id(), page)
        self.page = page
        self._list(self.conversations + [item_of(c) for c in result.conversations])
        self.has_more = result.has_more

    @rx.event
    def set_clock(self, utc_offset_min: Any) -> None:
        """The browser's Date.getTimezoneOffset(), sent once the page is shown: regroup by the user's days."""
        valid = isinstance(utc_offset_min, int) and abs(utc_offset_min) <= MAX_UTC_OFFSET_MIN
        if valid and utc_offset_min != self._utc_offset_min:
            self._utc_offset_min = utc_offset_min
            self._list(self.conversations)

    @rx.event
    def toggle_sidebar(self) -> None:
        self.sidebar_open = not self.sidebar_open

    @rx.event
    def close_sidebar(self) -> None:
        """The drawer closes (phones): a conversation was chosen, the backdrop tapped, or Escape pressed."""
        if self.sidebar_open:
            self.sidebar_open = False

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
        hits = best_hit_per_conversation(await services().library.search(await self.owner_id(), query))
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
        """Open the rename field, filled with the conversation's current title ("" closes it)."""
        self.renaming_id = conversation_id if is_conversation_id(conversation_id) else ""
        self.renaming_title = next((c.title for c in self.conversations if c.id == self.renaming_id), "")

    @rx.event
    async def rename(self, form_data: Any) -> Any:
        conversation_id = self.renaming_id
        self.renaming_id = ""
        try:
            title = check_title(form_data.get("title") if isinstance(form_data, dict) else None)
        except InvalidInput as exc:
            self.library_notice = str(exc)
            return None
        if await self._change(conversation_id, lambda owner, cid: services().library.rename(owner, cid, title)):
            if conversation_id == self.conversation_id:
                conversation = await self.get_state(ConversationState)
                conversation.title = title
            return LibraryState.relist
        return None

    @rx.event
    async def toggle_pin(self, conversation_id: Any) -> Any:
        item = next((c for c in self.conversations if c.id == conversation_id), None)
        pinned = not item.pinned if item else True
        if await self._change(conversation_id, lambda owner, cid: services().library.set_pinned(owner, cid, pinned)):
            return LibraryState.relist
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
        caller = await self.caller()
        conversation_id, self.pending_delete_id = self.pending_delete_id, ""
        try:
            stopped = await services().actions.delete(caller, conversation_id)
        except Refused as refusal:
            self.library_notice = refusal.message
            return None
        self.library_notice = STOPPED_FIRST if stopped else ""
        if conversation_id == self.conversation_id:
            conversation = await self.get_state(ConversationState)
            conversation.show_new_chat()
            return [LibraryState.relist, rx.redirect("/")]
        return LibraryState.relist

    # -- export and import ---------------------------------------------------------------------

    @rx.event
    async def export_everything(self) -> Any:
        """Download every conversation as one JSON file, streamed from a short-lived link."""
        try:
            path = await services().actions.export_link(await self.caller(), None, "json")
        except Refused as refusal:
            self.library_notice = refusal.message
            return None
        return backend_download(path, "conversations.json")

    @rx.event
    def reject_import(self, rejected: Any) -> None:
        self.library_notice = (
            f"Nothing was imported: choose one .json file of at most {services().library.max_import_bytes // 2**20} MB."
        )

    @rx.event
    async def import_file(self, files: list[rx.UploadFile]) -> Any:
        """Start the import as a job of its own (services.import_jobs), and show its progress here."""
        caller = await self.caller()  # the session first: nothing is read for a caller who has none
        if not isinstance(files, list) or len(files) != 1 or not isinstance(files[0], rx.UploadFile):
            self.library_notice = "Choose one JSON file to import."
            return None
        data = await files[0].read(services().library.max_import_bytes + 1)
        try:
            progress = await services().actions.start_import(caller, data)
        except Refused as refusal:
            self.library_notice = refusal.message
            return None
        self.library_notice = ""
        self._show_import(progress)
        return LibraryState.watch_import

    def _show_import(self, progress: ImportProgress | None) -> None:
        self.import_running = progress is not None and not progress.ended
        if progress is None or progress.ended:
            return
        self.import_percent = progress.percent
        if progress.state == READING:
            self.import_status = "Reading the file…"
        else:
            self.import_status = (
                f"Stored {progress.conversations:,} of {progress.total_conversations:,} conversations "
                f"and {progress.messages:,} of {progress.total_messages:,} messages."
            )

    async def _import_to_show(self) -> ImportProgress | None:
        """This identity's import, if this tab has something to show of it: it runs, or its end is unseen."""
        caller = await self.caller()
        try:
            progress = await services().actions.import_progress(caller)
        except (RedisError, OSError) as exc:  # the progress is out of reach: the page loads without it
            log.warning("could not read an import's progress (%s)", type(exc).__name__)
            return None
        if progress is None or (progress.ended and progress.job_id == self._import_shown):
            return None
        return progress

    @rx.event(background=True)
    async def watch_import(self) -> None:
        """Show this identity's import as it goes; once it ends, say how, and list the sidebar again.

        The import is a job of the server: leaving or reloading the page only ends this watcher, and
        the page's next load starts another (`refresh`).
        """
        async with self:
            caller = await self.caller()
            watcher = (self.router.session.client_token, caller.owner_id)
            if watcher in _WATCHING:
                return
            self._import_watch += 1
            watch = self._import_watch
        _WATCHING.add(watcher)
        try:
            await self._follow_import(caller, watch)
        finally:
            _WATCHING.discard(watcher)

    async def _follow_import(self, caller: Caller, watch: int) -> None:
        last: ImportProgress | None = None
        unreachable = False
        try:
            async for progress in services().actions.watch_import(caller):
                async with self:
                    if self._import_watch != watch:
                        return
                    self._show_import(progress)
                last = progress
        except (RedisError, OSError) as exc:  # the progress is out of reach: the import goes on regardless
            log.warning("could not follow an import (%s)", type(exc).__name__)
            unreachable = True
        async with self:
            if self._import_watch != watch:
                return
            self.import_running = False
            if unreachable:
                self.library_notice = PROGRESS_UNREACHABLE
            elif last is not None and last.ended and last.job_id != self._import_shown:
                self._import_shown, self.library_notice = last.job_id, last.message
            elif last is not None and not last.ended:  # its progress is gone: the job's process died
                self.library_notice = STOPPED
        await self._relist(close_drawer=False)
