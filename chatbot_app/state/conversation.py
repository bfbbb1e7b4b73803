"""The chat page's state. Handlers validate what the client sent, then call ChatService."""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
from typing import Any

import reflex as rx

from chatbot_app.services.chat_service import ConversationNotFound, Turn
from chatbot_app.services.default_service import get_chat_service, get_library
from chatbot_app.services.validation import InvalidInput, clean_message, is_conversation_id, is_identity
from chatbot_app.state.stream_parts import StreamParts
from chatbot_app.state.views import MessageView, view_of_final_frame, view_of_message
from chatbot_app.storage.models import MessageStatus

#: How many of the newest messages a conversation opens with, and "load earlier" adds.
OPEN_WINDOW = 50
#: The most messages one page holds at once; the rest stay in the database.
MAX_LOADED = 2_000
#: How often a reply written elsewhere (another tab, another worker) is re-read.
WATCH_INTERVAL_S = 1.0
CONVERSATION_ROUTE = "/c/[chat_id]"
_CONVERSATION_PATH = re.compile(r"/c/([^/]+)/?")


def conversation_url(conversation_id: str) -> str:
    return f"/c/{conversation_id}"


async def _stats_line(owner_id: str, conversation_id: str) -> str:
    stats = await get_library().stats(owner_id, conversation_id)
    tokens = stats.prompt_tokens + stats.completion_tokens
    return f"{stats.message_count:,} messages · {tokens:,} tokens"


def _message_from(form_data: Any) -> str:
    """The message text from a submitted form; raises InvalidInput."""
    raw = form_data.get("message") if isinstance(form_data, dict) else None
    return clean_message(raw, get_chat_service().settings.max_message_chars)


def _message_id(raw: object) -> int:
    """A message id from the URL's ?m=, or 0 when absent or malformed."""
    # isascii: str.isdigit() also accepts digits such as "²" that int() refuses.
    return int(raw) if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) < 12 else 0


def conversation_id_in(path: str) -> str:
    """The id in a `/c/<id>` path, or "" for any other path (the id is validated separately)."""
    match = _CONVERSATION_PATH.fullmatch(path)
    return match.group(1) if match else ""


class ChatState(StreamParts, rx.State):
    """One browser tab's view of one conversation."""

    # An anonymous, unguessable identity that owns this browser's conversations.
    identity: str = rx.LocalStorage("", name="chatbot_identity", sync=True)
    conversation_id: str = ""
    title: str = ""
    summary: str = ""
    stats_line: str = ""
    messages: list[MessageView] = []
    has_earlier: bool = False
    focus_message_id: int = 0
    # The reply being streamed lives in the StreamParts vars, apart from `messages`, so a frame
    # never re-sends the history, nor all of the reply so far.
    streaming: bool = False
    stream_notice: str = ""
    summarizing: bool = False
    editing_id: int = 0
    notice: str = ""
    _stop_requested: bool = False

    @rx.var
    def last_reply_id(self) -> int:
        """The newest assistant message, which gets Regenerate/Retry."""
        return next((m.id for m in reversed(self.messages) if m.role == "assistant"), 0)

    def _owner_id(self) -> str:
        """The caller's identity, created on first use; the one place ownership comes from."""
        if not is_identity(self.identity):
            self.identity = secrets.token_urlsafe(24)
        return self.identity

    def _show_new_chat(self) -> None:
        """An empty conversation view; a notice (e.g. "not found") stays so the user can read it.

        A reply still streaming elsewhere goes on into the database; this view just stops showing it.
        """
        self.conversation_id, self.title, self.summary, self.stats_line = "", "", "", ""
        self.messages, self.has_earlier, self.focus_message_id = [], False, 0
        self.streaming, self.stream_notice, self.editing_id = False, "", 0
        self._clear_stream()

    async def _load_stats(self) -> None:
        self.stats_line = await _stats_line(self._owner_id(), self.conversation_id)

    @rx.event
    async def open_page(self) -> Any:
        """on_load: open the conversation named in the URL (at message ?m=<id> if given), or a new chat."""
        self._owner_id()
        requested = conversation_id_in(self.router.url.path)
        if requested and requested == self.conversation_id and self.streaming:
            return None  # already showing it: right after the first message of a new chat
        if not requested:
            self._show_new_chat()
            return None
        if not is_conversation_id(requested):
            return self._not_found()
        target = _message_id(self.router.url.query_parameters.get("m"))
        service, library, owner = get_chat_service(), get_library(), self._owner_id()
        try:
            conversation, messages = await service.load_conversation(owner, requested, OPEN_WINDOW)
            # Opening at a search hit: page back until that message is loaded (bounded).
            while target and messages and messages[0].id and messages[0].id > target and len(messages) < MAX_LOADED:
                messages = await library.older_messages(owner, requested, messages[0].id, OPEN_WINDOW) + messages
        except ConversationNotFound:
            return self._not_found()
        self.conversation_id, self.title, self.summary = conversation.id, conversation.title, conversation.summary or ""
        self.messages = [view_of_message(m) for m in messages]
        self.has_earlier = await self._has_older(messages)
        self.focus_message_id, self.notice = target, ""
        await self._load_stats()
        events: list[Any] = [rx.scroll_to(f"m-{target}")] if target else []
        if messages and messages[-1].status == MessageStatus.STREAMING:
            events.append(ChatState.watch_reply)  # being written by another tab or worker
        return events

    async def _has_older(self, messages: list[Any]) -> bool:
        if not messages or not messages[0].id:
            return False
        older = await get_library().older_messages(self._owner_id(), self.conversation_id, messages[0].id, 1)
        return bool(older)

    @rx.event
    async def load_earlier(self) -> None:
        """Prepend the next page of older messages."""
        if not self.conversation_id or not self.messages or len(self.messages) >= MAX_LOADED:
            return
        try:
            older = await get_library().older_messages(
                self._owner_id(), self.conversation_id, self.messages[0].id, OPEN_WINDOW
            )
        except ConversationNotFound:
            self.notice = "That conversation was not found."
            return
        self.messages = [view_of_message(m) for m in older] + self.messages
        self.has_earlier = await self._has_older(older)

    def _not_found(self) -> Any:
        self._show_new_chat()
        self.notice = "That conversation was not found. Here is a new chat instead."
        return rx.redirect("/", replace=True)

    @rx.event
    def new_chat(self) -> Any:
        self._show_new_chat()
        self.notice = ""
        return rx.redirect("/")

    @rx.event
    def stop(self) -> None:
        if self.streaming:
            self._stop_requested = True

    @rx.event(background=True)
    async def send_message(self, form_data: Any) -> Any:
        """Store the user's message, then stream the reply in coalesced frames."""
        from chatbot_app.state.library import LibraryState  # a substate of this one

        service = get_chat_service()
        async with self:
            if self.streaming:
                return
            try:
                text = _message_from(form_data)
            except InvalidInput as exc:
                self.notice = str(exc)
                return
            owner, conversation_id = self._owner_id(), self.conversation_id or None
            if (settings := await self._admit_reply()) is None:
                return
            chat, batch = settings.chat_settings(), settings.batch_mode
            self.messages.append(MessageView(id=0, role="user", content=text))
        try:
            turn = await service.start_turn(owner, conversation_id, text, chat)
        except ConversationNotFound:
            async with self:
                self.streaming = False
                self._show_new_chat()
                self.notice = "That conversation was not found. Start a new chat."
            return
        async with self:
            self.conversation_id, self.title = turn.conversation_id, turn.title
            self.messages[-1] = MessageView(id=turn.user_message_id, role="user", content=text)
        if turn.created_conversation:
            yield rx.redirect(conversation_url(turn.conversation_id))
            yield LibraryState.refresh
        completed = await _stream_reply_into(self, turn, batch, owner)
        if (
            turn.created_conversation
            and completed
            and (title := await service.suggest_title(owner, turn.conversation_id))
        ):
            async with self:
                if self.conversation_id == turn.conversation_id:
                    self.title = title
            yield LibraryState.refresh

    @rx.event(background=True)
    async def regenerate(self) -> None:
        """Answer the last message again (also the Retry of a failed or stopped reply)."""
        async with self:
            if self.streaming or not self.conversation_id:
                return
            owner, conversation_id = self._owner_id(), self.conversation_id
            if (settings := await self._admit_reply()) is None:
                return
            batch = settings.batch_mode
        try:
            turn = await get_chat_service().start_regeneration(owner, conversation_id)
        except ConversationNotFound:
            async with self:
                self.streaming, self.notice = False, "There is no message to answer again."
            return
        async with self:
            self.messages = [m for m in self.messages if m.id <= turn.user_message_id]
        await _stream_reply_into(self, turn, batch, owner)

    @rx.event
    def start_edit(self, message_id: Any) -> None:
        if self.streaming or not any(m.id == message_id and m.role == "user" for m in self.messages):
            return
        self.editing_id = message_id

    @rx.event
    def cancel_edit(self) -> None:
        self.editing_id = 0

    @rx.event(background=True)
    async def edit_message(self, form_data: Any) -> None:
        """Replace a user message and answer it again; the messages after it are discarded."""
        async with self:
            message_id, self.editing_id = self.editing_id, 0
            if self.streaming or not message_id or not self.conversation_id:
                return
            try:
                text = _message_from(form_data)
            except InvalidInput as exc:
                self.notice = str(exc)
                return
            owner, conversation_id = self._owner_id(), self.conversation_id
            if (settings := await self._admit_reply()) is None:
                return
            batch = settings.batch_mode
        try:
            turn = await get_chat_service().start_edit(owner, conversation_id, message_id, text)
        except ConversationNotFound:
            async with self:
                self.streaming, self.notice = False, "That message can no longer be edited."
            return
        async with self:
            kept = [m for m in self.messages if m.id < message_id]
            self.messages = [*kept, MessageView(id=message_id, role="user", content=text)]
        await _stream_reply_into(self, turn, batch, owner)

    @rx.event(background=True)
    async def watch_reply(self) -> None:
        """Follow a reply that another session is writing, through its database checkpoints."""
        service = get_chat_service()
        async with self:
            last = self.messages[-1] if self.messages else None
            if self.streaming or last is None or last.status != MessageStatus.STREAMING:
                return
            owner, conversation_id, reply_id = self._owner_id(), self.conversation_id, last.id
            self.messages = self.messages[:-1]
            self._begin_reply()
            self._show_stream(last.content)
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)  # the writer checkpoints every couple of seconds
            try:
                message = await service.load_message(owner, conversation_id, reply_id)
            except ConversationNotFound:
                message = None
            async with self:
                if self.conversation_id != conversation_id or message is None or self._stop_requested:
                    self.streaming = False
                    self._clear_stream()
                    return
                if message.status == MessageStatus.STREAMING:
                    self._show_stream(message.content)
                    continue
                self.messages.append(view_of_message(message))
                self.streaming = False
                self._clear_stream()
                return

    async def _admit_reply(self) -> Any:
        """Inside `async with self`: count a message against the rate limit and start showing a reply.

        Returns the tab's SettingsState, or None when refused (the notice says why).
        """
        from chatbot_app.state.settings import SettingsState  # a substate of this one

        service = get_chat_service()
        if not await service.allow_message(self._owner_id()):
            limit = service.settings.rate_limit_per_minute
            self.notice = f"You are sending messages faster than {limit} a minute. Wait a moment, then try again."
            return None
        settings = await self.get_state(SettingsState)
        self._begin_reply()
        return settings

    def _begin_reply(self) -> None:
        self.notice, self.stream_notice = "", ""
        self.streaming, self._stop_requested = True, False
        self._clear_stream()
        self._stream_parts = get_chat_service().settings.stream_parts


async def _stream_reply_into(state: ChatState, turn: Turn, batch: bool, owner: str) -> bool:
    """Show a reply's frames in `state` (a background task's proxy), taking the lock per frame only.

    The reply is generated and stored to the end even if the user opens another conversation
    meanwhile; the page is only updated while it still shows this one. True if it completed.
    """
    completed = False
    async with contextlib.aclosing(get_chat_service().stream_reply(turn, batch=batch)) as frames:
        async for frame in frames:
            completed = frame.done and frame.status == MessageStatus.COMPLETE
            async with state:
                if state.conversation_id != turn.conversation_id or not state.streaming:
                    continue
                if state._stop_requested:
                    break
                if not frame.done:
                    state._show_stream(frame.text)
                    state.stream_notice = frame.notice
                    continue
                state.messages.append(view_of_final_frame(turn.reply_id, frame))
                state.streaming = False
                state._clear_stream()
    stats_line = await _stats_line(owner, turn.conversation_id)
    async with state:
        if state.conversation_id != turn.conversation_id:
            return completed
        if state.streaming:  # stopped: the service stored the text with status `stopped`
            state.messages.append(
                MessageView(
                    id=turn.reply_id, role="assistant", content=state._stream_text, status=MessageStatus.STOPPED
                )
            )
            state.streaming = False
            state._clear_stream()
        state.stats_line = stats_line
    return completed
