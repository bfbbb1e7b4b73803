"""The chat page's state. Handlers validate what the client sent, then call ChatService."""

from __future__ import annotations

import contextlib
import re
import secrets
from typing import Any

import reflex as rx

from chatbot_app.services.chat import ConversationNotFound
from chatbot_app.services.default_service import get_chat_service
from chatbot_app.services.validation import InvalidInput, clean_message, is_conversation_id, is_identity
from chatbot_app.state.views import MessageView, view_of_final_frame, view_of_message
from chatbot_app.storage.models import MessageStatus

#: How many of the newest messages a conversation opens with.
OPEN_WINDOW = 50
CONVERSATION_ROUTE = "/c/[chat_id]"
_CONVERSATION_PATH = re.compile(r"/c/([^/]+)/?")


def conversation_url(conversation_id: str) -> str:
    return f"/c/{conversation_id}"


def conversation_id_in(path: str) -> str:
    """The id in a `/c/<id>` path, or "" for any other path (the id is validated separately)."""
    match = _CONVERSATION_PATH.fullmatch(path)
    return match.group(1) if match else ""


class ChatState(rx.State):
    """One browser tab's view of one conversation."""

    # An anonymous, unguessable identity that owns this browser's conversations.
    identity: str = rx.LocalStorage("", name="chatbot_identity", sync=True)
    conversation_id: str = ""
    title: str = ""
    messages: list[MessageView] = []
    # The reply being streamed lives apart from `messages`, so a frame never re-sends the history.
    stream_text: str = ""
    streaming: bool = False
    notice: str = ""
    _stop_requested: bool = False

    def _owner_id(self) -> str:
        """The caller's identity, created on first use; the one place ownership comes from."""
        if not is_identity(self.identity):
            self.identity = secrets.token_urlsafe(24)
        return self.identity

    def _show_new_chat(self) -> None:
        self.conversation_id, self.title, self.messages, self.notice = "", "", [], ""

    @rx.event
    async def open_page(self) -> Any:
        """on_load: open the conversation named in the URL, or a new chat at `/`."""
        self._owner_id()
        requested = conversation_id_in(self.router.url.path)
        if not requested:
            if not self.streaming:
                self._show_new_chat()
            return None
        if requested == self.conversation_id and (self.streaming or self.messages):
            return None  # already showing it, e.g. right after the first message of a new chat
        if self.streaming:
            return None
        if not is_conversation_id(requested):
            return self._not_found()
        try:
            conversation, messages = await get_chat_service().load_conversation(
                self._owner_id(), requested, OPEN_WINDOW
            )
        except ConversationNotFound:
            return self._not_found()
        self.conversation_id, self.title = conversation.id, conversation.title
        self.messages = [view_of_message(m) for m in messages]
        self.notice = ""
        return None

    def _not_found(self) -> Any:
        self._show_new_chat()
        self.notice = "That conversation was not found. Here is a new chat instead."
        return rx.redirect("/", replace=True)

    @rx.event
    def new_chat(self) -> Any:
        if self.streaming:
            return None
        self._show_new_chat()
        return rx.redirect("/")

    @rx.event
    def stop(self) -> None:
        if self.streaming:
            self._stop_requested = True

    @rx.event(background=True)
    async def send_message(self, form_data: Any) -> Any:
        """Store the user's message, then stream the reply in coalesced frames."""
        from chatbot_app.state.settings import SettingsState  # a substate of this one

        service = get_chat_service()
        async with self:
            if self.streaming:
                return
            try:
                text = clean_message(form_data.get("message") if isinstance(form_data, dict) else None)
            except InvalidInput as exc:
                self.notice = str(exc)
                return
            owner, conversation_id = self._owner_id(), self.conversation_id or None
            settings = await self.get_state(SettingsState)
            chat, batch = settings.chat_settings(), settings.batch_mode
            self.notice, self.stream_text, self.streaming, self._stop_requested = "", "", True, False
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
        if turn.created_conversation:
            yield rx.redirect(conversation_url(turn.conversation_id))

        async with contextlib.aclosing(service.stream_reply(turn, batch=batch)) as frames:
            async for frame in frames:
                async with self:
                    if self._stop_requested:
                        break
                    if not frame.done:
                        self.stream_text = frame.text
                        continue
                    self.messages.append(view_of_final_frame(turn.reply_id, frame))
                    self.stream_text, self.streaming = "", False
        # Stopped: the service stored the text with status `stopped` when the stream closed.
        async with self:
            if self.streaming:
                self.messages.append(
                    MessageView(
                        id=turn.reply_id, role="assistant", content=self.stream_text, status=MessageStatus.STOPPED
                    )
                )
                self.stream_text, self.streaming = "", False
