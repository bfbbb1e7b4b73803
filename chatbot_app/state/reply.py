"""Replies in this tab: start one (send, regenerate, edit), follow one, stop one.

The reply itself is a job that the server owns (services.reply_jobs). A tab subscribes to its log
from a cursor: it gets the text so far at once, then each frame's new text. Switching
conversations, "New chat" or closing the tab only ends the subscription; the job runs on.
This state holds only what a frame changes, so each frame touches little state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import reflex as rx
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from chatbot_app.services.actions import Caller, Started
from chatbot_app.services.chat_service import ConversationNotFound
from chatbot_app.services.chat_settings import ChatSettings
from chatbot_app.services.refusals import Refused
from chatbot_app.services.reply_log import START, Finished, Frame, ReplyEvent, Snapshot, Titled, ToolUpdate
from chatbot_app.services.wiring import services
from chatbot_app.state.attachments import ComposerFilesState
from chatbot_app.state.conversation import STOPPED_FIRST, ConversationState, conversation_url
from chatbot_app.state.library import LibraryState
from chatbot_app.state.session import SessionLost, SessionState
from chatbot_app.state.settings import SettingsState
from chatbot_app.state.stream_parts import PART_NAMES, StreamParts
from chatbot_app.state.views import (
    FileChip,
    MessageView,
    ToolCallView,
    add_tool_calls,
    file_chips,
    show_tools,
    tool_call_view,
    view_of_message,
    view_of_reply,
)
from chatbot_app.storage.models import MessageStatus

#: How often a reply whose log is gone (its process died) is re-read until it is ended.
SETTLE_POLL_S = 1.0
#: How long a followed reply may be silent before the database is asked whether it has ended. (Whether
#: its job's process lives is asked at each second of silence: ReplyJobs.follow.)
LIVENESS_CHECK_S = 3.0
#: How often a tab following a reply checks again that its session still signs someone in.
SESSION_RECHECK_S = 10.0
#: The composer's text area: it keeps a message until the message is stored.
COMPOSER_INPUT_ID = "chat-input"
NOT_STORED = "Your message could not be saved just now (the database is busy). It is still in the box: send it again."
#: What the page shows of a reply (ReplyState._resend).
SHOWN_VARS = ("streaming", "stream_notice", "reasoning_tail", "live_tools", *PART_NAMES)
#: While a reply thinks, only this much of the end of its reasoning is shown (and sent per frame).
REASONING_TAIL_CHARS = 160

log = logging.getLogger(__name__)

#: Starts a reply through its action, given the caller, the tab's settings and batch mode.
TurnStarter = Callable[[Caller, ChatSettings | None, bool], Awaitable[Started]]
#: Updates the shown history once the turn is stored.
HistoryUpdate = Callable[[ConversationState, Started], None]


async def _ended_without_log(owner: str, conversation_id: str, reply_id: int) -> bool:
    """Whether a reply ended without its log saying so (its process died and the sweep ended it)."""
    try:
        message = await services().chat.load_message(owner, conversation_id, reply_id)
    except ConversationNotFound:
        return True
    except SQLAlchemyError:  # the database is restarting: not known yet, the log is followed on
        return False
    return message is None or message.status != MessageStatus.STREAMING


class ReplyState(StreamParts, SessionState):
    # True from the moment a reply is asked for (or found running) until its end is shown.
    streaming: bool = False
    stream_notice: str = ""
    _reply_id: int = 0
    # The conversation history view the reply belongs to (ConversationState.current_view).
    _reply_view: int = -1
    _cursor: str = START
    # Each subscription takes a new number; an older one that sees a newer number ends itself.
    _subscription: int = 0
    # Stop was pressed before the job had started: stop it as soon as it has.
    _stop_pending: bool = False
    # A reasoning model's thinking so far: a frame sends only its short tail; the whole comes at the end.
    reasoning_tail: str = ""
    _reasoning: str = ""
    #: The reply's tool calls so far (their latest states): a call's update re-sends this short list only.
    live_tools: list[ToolCallView] = []
    _tools: dict[str, ToolUpdate] = {}
    _thinking_since: float = 0.0
    _thinking_ms: int | None = None

    def _begin(self) -> None:
        """A reply has been asked for: show it as coming (its job starts a moment later)."""
        self._leave()
        self.streaming, self.notice = True, ""
        self._stream_parts = services().chat.settings.stream_parts

    def _watch(self, reply_id: int, view: int) -> bool:
        """Follow reply `reply_id` from its start (ReplyState.follow does the work).

        Returns whether Stop was pressed meanwhile, in which case the caller stops the job.
        """
        stop_pending = self._stop_pending
        self._leave()
        self.streaming, self._reply_id, self._reply_view, self._cursor = True, reply_id, view, START
        self._stream_parts = services().chat.settings.stream_parts
        return stop_pending

    def _leave(self) -> None:
        """Stop showing any reply; a running job goes on, only this subscription ends."""
        self.streaming, self.stream_notice, self._reply_id, self._stop_pending = False, "", 0, False
        self._subscription += 1
        self._clear_stream()
        self._show_reasoning("")
        self._show_tools({})

    # -- starting a reply: one path for send, regenerate and edit ------------------------------

    async def _start_reply(self, start: TurnStarter, show: HistoryUpdate, *, user_text: str | None = None) -> Any:
        """Start a reply through its action (admission, storing, the job), then follow it.

        The body of a background handler. A refusal leaves the composer as it was, with the reason.
        """
        async with self:
            if self.streaming:
                return
            caller = await self.caller()
            settings = await self.get_state(SettingsState)
            # Settings not loaded (yet) for this page are the previous page's: the stored ones apply instead.
            chat = settings.chat_settings() if settings.settings_ready else None
            batch = settings.batch_mode
            self._begin()
            if user_text is not None:  # shown at once; its id comes with the stored turn
                conversation = await self.get_state(ConversationState)
                conversation._show_history([*conversation.history, MessageView(id=0, role="user", content=user_text)])
        try:
            started = await start(caller, chat, batch)
        except (Refused, SQLAlchemyError) as exc:
            if isinstance(exc, SQLAlchemyError):
                log.warning("could not store a turn: %s", type(exc).__name__)
            async with self:
                self._leave()
                conversation = await self.get_state(ConversationState)
                conversation._show_history([m for m in conversation.history if m.id])
                # The message (and its files) stay in the composer, with the reason.
                self.notice = exc.message if isinstance(exc, Refused) else NOT_STORED
            return
        turn = started.turn
        async with self:
            conversation = await self.get_state(ConversationState)
            show(conversation, started)
            if turn.created_conversation:
                conversation.conversation_id, conversation.title = turn.conversation_id, turn.title
                conversation._just_created = turn.conversation_id
            stop_now = self._watch(turn.reply_id, conversation.current_view())
            if started.stopped_first:
                self.notice = STOPPED_FIRST
        if stop_now:
            await services().replies.stop(turn.reply_id)
        if user_text is not None:
            yield rx.set_value(COMPOSER_INPUT_ID, "")  # stored: only now does the composer let it go
        if turn.created_conversation:  # its page's on_load lists the new conversation in the sidebar
            yield rx.redirect(conversation_url(turn.conversation_id))
        # Followed here, not through a `ReplyState.follow` event: that would wait for the tab's round
        # trip (and a new chat's redirect), while the first token may already be in the log.
        await self._follow()

    @rx.event(background=True)
    async def send_message(self, form_data: Any) -> Any:
        """Store the user's message, then stream the reply."""
        raw = form_data.get("message") if isinstance(form_data, dict) else None
        async with self:
            await self.caller()  # the session first: nothing is checked or shown for a caller who has none
            pending = (await self.get_state(ComposerFilesState)).pending()
            conversation_id = self.conversation_id or None
            shown = (await self.get_state(ConversationState)).shown_leaf()
            try:  # checked before it is shown: the page must never be sent what it cannot show
                text = services().actions.message_text(raw, blank_allowed=bool(pending))
            except Refused as refusal:
                self.notice = refusal.message
                return
        chips: list[FileChip] = []

        def show(conversation: ConversationState, started: Started) -> None:
            conversation._show_history(
                [m for m in conversation.history if m.id]
                + [MessageView(id=started.turn.user_message_id, role="user", content=started.text, attachments=chips)]
            )

        async def start(caller: Caller, chat: ChatSettings | None, batch: bool) -> Started:
            started = await services().actions.send(
                caller, conversation_id, text, settings=chat, attachments=pending, batch=batch, shown_id=shown
            )
            turn = started.turn
            if pending:  # stored: the composer lets them go, the message shows them
                async with self:
                    (await self.get_state(ComposerFilesState)).take_sent(pending)
                ids = [turn.user_message_id]
                views = await services().attachments.views(caller.owner_id, turn.conversation_id, ids)
                chips.extend(file_chips(views.get(turn.user_message_id, []), rx.config.get_config().api_url))
            return started

        async for event in self._start_reply(start, show, user_text=text):
            yield event

    @rx.event(background=True)
    async def regenerate(self) -> Any:
        """Answer the last message again (also the Retry of a failed or stopped reply)."""
        async with self:
            await self.caller()  # the session first
            conversation_id = self.conversation_id
            shown = (await self.get_state(ConversationState)).shown_leaf()
        if not conversation_id:
            return

        async def start(caller: Caller, _chat: ChatSettings | None, batch: bool) -> Started:
            return await services().actions.regenerate(caller, conversation_id, batch=batch, shown_id=shown)

        def show(conversation: ConversationState, started: Started) -> None:
            turn = started.turn
            kept = [m for m in conversation.history if m.id <= turn.user_message_id]
            if not any(m.id == turn.user_message_id for m in kept) and turn.history:
                # A stale tab that never saw the message being answered: show it now.
                kept.append(MessageView(id=turn.user_message_id, role="user", content=turn.history[-1].content))
            conversation._show_history(kept)

        async for event in self._start_reply(start, show):
            yield event

    @rx.event(background=True)
    async def edit_message(self, form_data: Any) -> Any:
        """Answer a new version of a user message; the old one and what followed it stay, as another branch."""
        raw = form_data.get("message") if isinstance(form_data, dict) else None
        async with self:
            await self.caller()  # the session first
            conversation = await self.get_state(ConversationState)
            message_id, conversation.editing_id = conversation.editing_id, 0
            conversation_id = self.conversation_id
        if not message_id or not conversation_id:
            return

        async def start(caller: Caller, _chat: ChatSettings | None, batch: bool) -> Started:
            return await services().actions.edit(caller, conversation_id, message_id, raw, batch=batch)

        def show(conversation: ConversationState, started: Started) -> None:
            shown = conversation.history
            kept = [m for m in shown if m.id < message_id]
            files = next((m.attachments for m in shown if m.id == message_id), [])
            # The new version (its own id, the old one's files); "2/2" comes when its reply has ended.
            edited = MessageView(id=started.turn.user_message_id, role="user", content=started.text, attachments=files)
            conversation._show_history([*kept, edited])

        async for event in self._start_reply(start, show):
            yield event

    # -- following and stopping ------------------------------------------------------------

    @rx.event
    async def resume(self) -> Any:
        """on_load, after ConversationState.open_page: follow the open conversation's running reply."""
        conversation = await self.get_state(ConversationState)
        if running := conversation.take_running_reply():
            self._watch(running, conversation.current_view())
            return ReplyState.follow
        if not (self.streaming and self._reply_view == conversation.current_view()):
            self._leave()  # a reply of another conversation: its job goes on without this tab
            self._resend()
            return None
        if self._reply_id:
            # The page loaded again with its reply still showing (its websocket reconnected, maybe to
            # another backend): follow it from here on, from where it was shown, so that the tab no
            # longer depends on the backend it left (which may die). That follower sees it is replaced.
            return ReplyState.follow
        return None

    @rx.event
    async def stop(self) -> None:
        """Stop the reply this tab shows, wherever its job runs."""
        if not self.streaming:
            return
        if not self._reply_id:
            self._stop_pending = True
            return
        try:
            await services().actions.stop(await self.caller(), self._reply_id)
        except Refused as refusal:  # it ended meanwhile, or its conversation was deleted
            self.notice = refusal.message

    @rx.event(background=True)
    async def follow(self) -> None:
        """Show the watched reply's log from the cursor to its end; then it joins the history."""
        await self._follow()

    async def _follow(self) -> None:
        """The body of `follow`, also run by the handler that started the reply."""
        async with self:
            reply_id, start, owner = self._reply_id, self._cursor, await self.owner_id()
            conversation_id = self.conversation_id
            if not reply_id or not self.streaming:
                self._resend()  # it ended meanwhile, maybe shown by a follower whose tab had moved away
                return
            self._subscription += 1
            subscription = self._subscription
        finished = False
        loop = asyncio.get_running_loop()
        news_at = recheck_at = loop.time()
        try:
            async for cursor, events in services().replies.follow(reply_id, start):
                if loop.time() - recheck_at >= SESSION_RECHECK_S:  # a user signed out or disabled meanwhile
                    recheck_at = loop.time()
                    # Without the tab's state lock (the cookie is the connection's): a follower whose tab
                    # has moved to another backend must not take the lock, which would keep that tab
                    # waiting for the lock's expiry (10 s) should this backend die while it holds it.
                    if services().settings.accounts_enabled:
                        await self.signed_in_user()
                # A newer subscription ends this one, except once the reply has ended: its title is then
                # all that is left, and it belongs in the sidebar whatever the tab shows now.
                if not events:
                    if not finished and self._subscription != subscription:  # without the lock: to end early
                        return
                    if loop.time() - news_at > LIVENESS_CHECK_S:  # silent: has it ended without its log?
                        news_at = loop.time()
                        if await _ended_without_log(owner, conversation_id, reply_id):
                            break
                    continue
                news_at = loop.time()
                async with self:
                    if not finished and self._subscription != subscription:
                        self._check_not_lost(conversation_id)
                        return
                    if not finished:
                        self._cursor = cursor
                    for event in events:
                        finished = await self._apply(event, reply_id, conversation_id) or finished
        except (RedisError, OSError) as exc:  # the log's engine is down: the database still has the reply
            log.warning("could not follow reply %s (%s)", reply_id, type(exc).__name__)
        if not finished:  # no log (its process died, or it expired): the database has the end
            await self._settle_from_database(owner, conversation_id, reply_id, subscription)

    def _check_not_lost(self, conversation_id: str) -> None:
        """A follower that finds a newer subscription ends; but a state that no page has loaded is one the
        server lost (Redis restarted): its page is loaded again, so the tab carries on with no one acting."""
        if self.state_lost():
            raise SessionLost(conversation_url(conversation_id) if conversation_id else "/")

    async def _apply(self, event: ReplyEvent, reply_id: int, conversation_id: str) -> bool:
        """Show one log event (inside the lock); True for the reply's end."""
        match event:
            case Frame(text, reasoning, notice):
                if reasoning:
                    self._show_reasoning(self._reasoning + reasoning)
                if text:
                    self._show_stream(self._stream_text + text)
                    self._thinking_done()
                if notice != self.stream_notice:
                    self.stream_notice = notice
            case ToolUpdate():
                self._show_tools({**self._tools, event.call_id: event})
            case Snapshot(text, reasoning, notice, tools):
                self._show_tools({tool.call_id: tool for tool in tools})
                self._show_reasoning(reasoning)
                self._show_stream(text)
                if text and self._thinking_ms is None:
                    self._thinking_since = 0.0  # joined after the thinking ended: its time is unknown
                self.stream_notice = notice
            case Finished():
                self._thinking_done()
                view = view_of_reply(reply_id, self._stream_text, event, self._reasoning, self._thinking_ms)
                show_tools(view, self._tools.values())
                await self._end(view)
                return True
            case Titled(title) if title:
                (await self.get_state(LibraryState)).show_title(conversation_id, title)
                conversation = await self.get_state(ConversationState)
                if conversation.conversation_id == conversation_id:
                    conversation.title = title
        return False

    def _show_reasoning(self, reasoning: str) -> None:
        """Keep the whole reasoning server-side; the page gets only its tail while the reply thinks."""
        if reasoning and not self._reasoning:
            self._thinking_since, self._thinking_ms = time.monotonic(), None
        self._reasoning = reasoning
        if not reasoning:
            self._thinking_since, self._thinking_ms = 0.0, None
        tail = reasoning[-REASONING_TAIL_CHARS:]
        if tail != self.reasoning_tail:
            self.reasoning_tail = tail

    def _resend(self) -> None:
        """Send what the page shows of a reply again, as it is now. A follower on the backend a tab's websocket
        left can end the reply after the tab moved: its update has nowhere to go, and setting a var to the
        value it already has sends nothing, so the tab would keep showing the reply as streaming."""
        self.dirty_vars.update(SHOWN_VARS)
        self._mark_dirty(SHOWN_VARS)

    def _show_tools(self, tools: dict[str, ToolUpdate]) -> None:
        if tools != self._tools:
            self._tools = tools
            self.live_tools = [tool_call_view(update) for update in tools.values()]

    @rx.event
    async def answer_tool(self, call_id: Any, approve: Any) -> None:
        """Approve once (True) or deny (False) a call of the shown reply that waits for the user."""
        if not self.streaming or not self._reply_id:
            return
        try:
            await services().actions.answer_tool_call(await self.caller(), self._reply_id, call_id, approve)
        except Refused as refusal:
            self.notice = refusal.message

    def _thinking_done(self) -> None:
        """The answer has begun (or the reply ended): the thinking time, as this tab saw it."""
        if self._reasoning and self._thinking_ms is None and self._thinking_since:
            self._thinking_ms = int((time.monotonic() - self._thinking_since) * 1000)

    async def _end(self, view: MessageView) -> None:
        """The reply ended: it joins the history it belongs to, and the composer is free again."""
        conversation = await self.get_state(ConversationState)
        conversation.show_reply(view, self._reply_view)
        self.streaming, self.stream_notice = False, ""
        self._clear_stream()
        self._show_reasoning("")
        self._show_tools({})
        await conversation.load_stats()
        await conversation.show_versions()  # an edit or a regeneration made a new version: "2/2"

    async def _settle_from_database(self, owner: str, conversation_id: str, reply_id: int, subscription: int) -> None:
        service, jobs = services().chat, services().replies
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2 * service.settings.stale_reply_s + 5
        message = None
        while loop.time() < deadline:
            try:
                message = await service.load_message(owner, conversation_id, reply_id)
            except ConversationNotFound:
                message = None
            except SQLAlchemyError:  # the database is restarting: ask again
                message = None
                await asyncio.sleep(SETTLE_POLL_S)
                continue
            if message is None or message.status != MessageStatus.STREAMING:
                break
            if not await jobs.end_if_dead(reply_id):  # else the sweep ends a dead job's reply within its window
                await asyncio.sleep(SETTLE_POLL_S)
        async with self:
            if self._subscription != subscription:
                self._check_not_lost(conversation_id)
                return
            if message is None:
                self._leave()
                return
            view = view_of_message(message)
            await add_tool_calls([view], owner, conversation_id)
            if view.status == MessageStatus.STREAMING:  # past the sweep's window: it will say so too
                view.status = MessageStatus.INTERRUPTED
            await self._end(view)
