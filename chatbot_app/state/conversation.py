"""The open conversation as this tab shows it: its history, summary and totals, and its menu.

Replies are started, followed and stopped by ReplyState (state/reply.py), which adds each
finished reply to this history; this state never reaches into it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import reflex as rx
from sqlalchemy.exc import SQLAlchemyError

from chatbot_app.providers.base import ProviderError
from chatbot_app.services.actions import NOTHING_TO_SUMMARIZE
from chatbot_app.services.chat_service import ConversationNotFound
from chatbot_app.services.error_messages import describe_error
from chatbot_app.services.refusals import Refused
from chatbot_app.services.wiring import services
from chatbot_app.state.history_pages import HistoryPages
from chatbot_app.state.session import PasswordChangeRequired, SessionLost, SessionState, state_helper, tab_connected
from chatbot_app.state.views import MessageView, add_details, add_versions, backend_download, view_of_message
from chatbot_app.storage.models import MessageStatus

log = logging.getLogger(__name__)

#: How many of the newest messages a conversation opens with, and "load earlier" adds.
OPEN_WINDOW = 50
#: The most messages one page holds at once; the rest stay in the database.
MAX_LOADED = 2_000
#: One route for the start page and every conversation (`/` and `/c/<id>`): moving from one to the other
#: keeps the page mounted, so a draft in the composer or the sidebar's scroll survive the first message.
#: It also matches any other one- or two-segment path, which open_page sends to the start page.
CHAT_ROUTE = "/[[section]]/[[chat_id]]"
_CONVERSATION_PATH = re.compile(r"/c/([^/]+)/?")
NOT_FOUND = "That conversation was not found."
#: How often a tab's branch watcher wakes without news, to end itself if its tab is gone.
BRANCH_WATCH_S = 30.0
#: This process's branch watchers: tab token -> (the conversation it watches, the event that wakes it).
_BRANCH_WATCHERS: dict[str, tuple[str, asyncio.Event]] = {}


def conversation_url(conversation_id: str) -> str:
    return f"/c/{conversation_id}"


def message_id_in(raw: object) -> int:
    """A message id from the URL's ?m=, or 0 when absent or malformed."""
    # isascii: str.isdigit() also accepts digits such as "²" that int() refuses.
    return int(raw) if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) < 12 else 0


def conversation_id_in(path: str) -> str:
    """The id in a `/c/<id>` path, or "" for any other path (the id is validated separately)."""
    match = _CONVERSATION_PATH.fullmatch(path)
    return match.group(1) if match else ""


def stats_line(message_count: int, tokens: int) -> str:
    return f"{message_count:,} messages · {tokens:,} tokens"


class ConversationState(HistoryPages, SessionState):
    """The history shown is in pages (state/history_pages.py): read `history`, change it with `_show_history`."""

    title: str = ""
    summary: str = ""
    stats_line: str = ""
    has_earlier: bool = False
    focus_message_id: int = 0
    editing_id: int = 0
    summarizing: bool = False
    #: The address is no page of the app (it matched the chat's route only by its shape): "not found".
    page_missing: bool = False
    # A reply found still being written when the page opened; ReplyState.resume follows it.
    _running_reply_id: int = 0
    # The conversation a first message just created: its page is already showing, nothing to load.
    _just_created: str = ""
    # Bumped whenever the history shown is replaced: a reply watched under an older view is not added.
    _view: int = 0
    # How many switches of the open conversation's branch this process had heard of when it was read: its
    # watcher shows any that come after (services/branch_changes.py).
    _branch_seen: int = 0

    # -- called by sibling states, inside their lock -------------------------------------------

    @state_helper
    def show_new_chat(self) -> None:
        """An empty conversation view; a notice (e.g. "not found") stays so the user can read it."""
        self.conversation_id, self.title, self.summary, self.stats_line = "", "", "", ""
        self._show_history([])
        self.has_earlier, self.focus_message_id, self.editing_id = False, 0, 0
        self._running_reply_id = 0
        self._view += 1

    @state_helper
    def current_view(self) -> int:
        """Which history is shown; a reply is added only to the view it was watched under."""
        return self._view

    @state_helper
    def show_reply(self, view: MessageView, watched_under: int) -> None:
        """Add a finished reply to the history (once), if that history is still the one shown."""
        shown = self.history
        if watched_under == self._view and not any(m.id == view.id for m in shown):
            self._show_history([*shown, view])

    @state_helper
    def shown_leaf(self) -> int:
        """The last stored message shown: a send or a regeneration acts on the branch the page shows."""
        return next((m.id for m in reversed(self.history) if m.id), 0)

    @state_helper
    def take_running_reply(self) -> int:
        running, self._running_reply_id = self._running_reply_id, 0
        return running

    @state_helper
    async def load_stats(self) -> None:
        if self.conversation_id:
            stats = await services().library.stats(await self.owner_id(), self.conversation_id)
            self.stats_line = stats_line(stats.message_count, stats.prompt_tokens + stats.completion_tokens)

    # -- opening ----------------------------------------------------------------------------

    @rx.event
    async def open_page(self) -> Any:
        """on_load: open the conversation in the URL (at message ?m=<id> if given), or a new chat.

        A fixed number of queries whatever ?m= holds. A reply still being written is left for
        ReplyState.resume (the next on_load event) to follow.
        """
        owner = await self.page_owner_id()
        requested = conversation_id_in(self.router.url.path)
        self._running_reply_id = 0
        if requested and requested == self._just_created:
            self._just_created = ""
            self._branch_seen = services().branches.seen(requested)
            return ConversationState.watch_branch  # the first message of a new chat created it: already shown
        self._just_created = ""
        # "/nowhere" or "/c": not a chat address, so the page says "not found" (and links to a new chat).
        self.page_missing = not requested and bool(self.router.url.path.strip("/"))
        if not requested:
            self.show_new_chat()
            return None
        scroll = await self._open(owner, requested, message_id_in(self.router.url.query_parameters.get("m")))
        if not self.conversation_id:  # not found: a new chat instead
            return scroll
        return [ConversationState.watch_branch] if scroll is None else [scroll, ConversationState.watch_branch]

    @rx.event(background=True)
    async def watch_branch(self) -> Any:
        """While this tab shows the conversation, show a switch of versions made in another tab or device at
        once. One watcher per tab: a newer one (another conversation opened) wakes and replaces it; it also
        ends when its tab is gone from every backend."""
        async with self:
            await self.caller()  # the session first
            conversation_id, token, seen = self.conversation_id, self.router.session.client_token, self._branch_seen
            if not conversation_id or _BRANCH_WATCHERS.get(token, ("", None))[0] == conversation_id:
                return
        wake = asyncio.Event()
        if (replaced := _BRANCH_WATCHERS.get(token)) is not None:
            replaced[1].set()
        _BRANCH_WATCHERS[token] = (conversation_id, wake)
        try:
            async for shown in self._branch_switches(conversation_id, token, seen, wake):
                from chatbot_app.state.reply import ReplyState  # (it imports this module)

                if shown is not None:  # a scroll, or "not found" and its redirect
                    yield shown
                yield ReplyState.resume  # a reply still written on the branch shown is followed again
        finally:
            if _BRANCH_WATCHERS.get(token, ("", None))[1] is wake:
                del _BRANCH_WATCHERS[token]

    async def _branch_switches(
        self, conversation_id: str, token: str, seen: int, wake: asyncio.Event
    ) -> AsyncIterator[Any]:
        """Show each switch of the conversation's branch as it comes; yields what the page does then."""
        changes = services().branches
        while True:
            changed = await changes.wait(conversation_id, seen, BRANCH_WATCH_S, wake)
            seen = changes.seen(conversation_id)
            if _BRANCH_WATCHERS.get(token, ("", None))[1] is not wake or not await tab_connected(token):
                return  # replaced by a newer watcher, or the tab is gone
            async with self:
                if self.conversation_id != conversation_id:
                    return
                if not changed:
                    continue
                try:
                    shown = await self._open(await self.owner_id(), conversation_id, keep_from=self.first_shown_id)
                except (SessionLost, PasswordChangeRequired):  # signed out meanwhile: nothing more to show
                    return
                except SQLAlchemyError as exc:  # the database is back soon: the next switch shows both
                    log.warning("could not show a switched branch (%s)", type(exc).__name__)
                    continue
            yield shown

    async def _open(self, owner: str, conversation_id: str, target: int = 0, keep_from: int = 0) -> Any:
        """Show the conversation's current path: its newest messages, reaching back to message `target` (shown
        and scrolled to; on another branch, that branch is shown) or `keep_from` (the first message already
        shown, if still on the path: the pages before a change stay)."""
        seen = services().branches.seen(conversation_id)  # before reading: a switch meanwhile is shown again
        try:
            opened = await services().chat.open_conversation(
                owner,
                conversation_id,
                window=OPEN_WINDOW,
                at_message=target or keep_from,
                cap=MAX_LOADED,
                to_its_branch=bool(target),
            )
        except ConversationNotFound:
            return self._not_found()
        messages = opened.messages
        if messages and messages[-1].role == "assistant" and messages[-1].status == MessageStatus.STREAMING:
            self._running_reply_id = messages.pop().id or 0
        conversation = opened.conversation
        self._view += 1
        self._branch_seen = seen
        self.conversation_id, self.title, self.summary = conversation.id, conversation.title, conversation.summary or ""
        views = [view_of_message(m) for m in messages]
        await add_details(views, owner, conversation.id)
        self._show_history(views)
        self.has_earlier = opened.has_earlier
        found = any(m.id == target for m in messages)
        self.focus_message_id, self.notice, self.editing_id = target if found else 0, "", 0
        tokens = opened.stats.prompt_tokens + opened.stats.completion_tokens
        self.stats_line = stats_line(opened.stats.message_count, tokens)
        return rx.scroll_to(f"m-{target}") if found else None

    @rx.event
    async def load_earlier(self, before_id: Any = None) -> None:
        """Prepend the next page of older messages (before message `before_id`, if it is still the first shown:
        scrolling asks again until the page has come)."""
        await self._load_earlier(await self.owner_id(), before_id)

    @rx.event
    async def load_from_start(self) -> Any:
        """ "Go to the first message": load every earlier page, one frame each, then scroll to the top."""
        owner = await self.owner_id()
        while self.has_earlier and await self._load_earlier(owner):
            yield
        if self.first_shown_id:
            yield rx.scroll_to(f"m-{self.first_shown_id}")

    async def _load_earlier(self, owner: str, before_id: Any = None) -> bool:
        shown = self.history
        if len(shown) >= MAX_LOADED:  # the page holds no more: scrolling up asks for nothing more
            self.has_earlier = False
        if not self.conversation_id or not shown or not self.has_earlier:
            return False
        if before_id is not None and before_id != shown[0].id:  # loaded meanwhile, or not a message id at all
            return False
        library = services().library
        try:
            older = await library.older_messages(owner, self.conversation_id, shown[0].id, OPEN_WINDOW + 1)
        except ConversationNotFound:
            self.notice = NOT_FOUND
            return False
        self.has_earlier = len(older) > OPEN_WINDOW
        views = [view_of_message(m) for m in older[-OPEN_WINDOW:]]
        await add_details(views, owner, self.conversation_id)
        self._show_history(views + shown)
        return bool(views)

    def _not_found(self) -> Any:
        self.show_new_chat()
        self.notice = f"{NOT_FOUND} Here is a new chat instead."
        return rx.redirect("/", replace=True)

    @rx.event
    def new_chat(self) -> Any:
        self.show_new_chat()
        self.notice = ""
        return rx.redirect("/")

    @state_helper
    async def show_versions(self) -> None:
        """After an edit or a regeneration: the shown messages' places among their versions ("2/2")."""
        if self.conversation_id:
            views = [dataclasses.replace(m) for m in self.history]
            await add_versions(views, await self.owner_id(), self.conversation_id)
            self._show_history(views)

    # -- versions of a message ("< 2/3 >") ----------------------------------------------------

    @rx.event
    async def switch_version(self, message_id: Any, step: Any) -> Any:
        """Show the previous (-1) or next (+1) version of a message, and the newest path below it."""
        caller = await self.caller()
        try:
            await services().actions.switch_version(caller, self.conversation_id, message_id, step)
        except Refused as refusal:
            self.notice = refusal.message
            return None
        # The messages above the one switched stay on the path: their pages are kept. (Not that message itself:
        # opening at a message of another branch would switch back to it.)
        above = self.first_shown_id if self.first_shown_id != message_id else 0
        return await self._open(caller.owner_id, self.conversation_id, keep_from=above)

    @rx.event
    async def fork(self, message_id: Any) -> Any:
        """ "Branch in new chat": open a new conversation holding the path up to this message."""
        caller = await self.caller()
        try:
            new_id = await services().actions.fork(caller, self.conversation_id, message_id)
        except Refused as refusal:
            self.notice = refusal.message
            return None
        return rx.redirect(conversation_url(new_id))

    # -- editing a message ------------------------------------------------------------------

    @rx.event
    def start_edit(self, message_id: Any) -> None:
        if any(m.id == message_id and m.role == "user" for m in self.history):
            self.editing_id = message_id

    @rx.event
    def cancel_edit(self) -> None:
        self.editing_id = 0

    # -- the conversation's menu -------------------------------------------------------------

    @rx.event
    async def clear_conversation(self) -> Any:
        """Delete the messages; a reply still being written is stopped first (and the notice says so)."""
        caller = await self.caller()
        if not self.conversation_id:
            return None
        try:
            stopped = await services().actions.clear(caller, self.conversation_id)
        except Refused as refusal:
            self.notice = refusal.message
            return None
        self._show_history([])
        self.summary, self.has_earlier = "", False
        self._view += 1
        await self.load_stats()
        self.notice = STOPPED_FIRST if stopped else ""
        return None

    async def _summarize(self) -> bool:
        try:
            self.summary = await services().actions.summarize(await self.caller(), self.conversation_id)
        except Refused as refusal:
            self.notice = refusal.message
        except ProviderError as exc:
            self.notice = f"Could not summarize: {describe_error(exc.kind)}"
        else:
            return True
        finally:
            self.summarizing = False
        return False

    @rx.event
    async def summarize(self) -> Any:
        """Ask the model for a summary; it is stored and shown at the top of the conversation."""
        await self.caller()  # the session first
        if not self.conversation_id:
            self.notice = NOTHING_TO_SUMMARIZE
            return
        self.summarizing = True
        yield  # show the spinner while the model works
        await self._summarize()

    @rx.event
    async def end_session(self) -> Any:
        """The original design's "End session": summarize this conversation, then start fresh."""
        await self.caller()  # the session first
        if not self.conversation_id:
            return
        self.summarizing = True
        yield
        if await self._summarize():
            yield ConversationState.new_chat

    @rx.event
    async def export(self, format: Any) -> Any:
        """Download this conversation (Markdown or JSON), streamed from a short-lived link."""
        caller = await self.caller()  # the session first
        if not self.conversation_id or format not in ("md", "json"):
            self.notice = "Open a conversation to export it."
            return None
        try:
            path = await services().actions.export_link(caller, self.conversation_id, format)
        except Refused as refusal:
            self.notice = refusal.message
            return None
        return backend_download(path, f"conversation-{self.conversation_id[:8]}.{format}")


STOPPED_FIRST = "The reply that was still being written was stopped first."
