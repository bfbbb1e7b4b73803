"""The app's Reflex names that the websocket benchmarks send and read: the one place to change them.

Reflex addresses events and state deltas by the full name of a state class, so a renamed or moved
state class changes what a client must send and where it finds the streamed text.
"""

from __future__ import annotations

from typing import Any

from reflex_base.constants.state import FIELD_MARKER

from chatbot_app.state.conversation import ConversationState
from chatbot_app.state.history_pages import PAGE_NAMES
from chatbot_app.state.reply import ReplyState
from chatbot_app.state.session import SessionState
from chatbot_app.state.settings import SettingsState
from chatbot_app.state.stream_parts import PART_NAMES

REPLY, CONVERSATION = ReplyState.get_full_name(), ConversationState.get_full_name()
#: The event a tab sends to post a message; its payload is {"form_data": {"message": text}}.
SEND_MESSAGE = f"{REPLY}.send_message"
#: The event that stops the reply a tab shows.
STOP = f"{REPLY}.stop"
#: The synced-storage var holding the tab's identity (sent back on every connect).
IDENTITY = f"{SessionState.get_full_name()}.identity{FIELD_MARKER}"
#: (state, var) pairs in a delta: the streamed reply's parts, the streaming flag, and the history's pages.
STREAM_PARTS = [(REPLY, f"{name}{FIELD_MARKER}") for name in PART_NAMES]
STREAMING = (REPLY, f"streaming{FIELD_MARKER}")
HISTORY_PAGES = [f"{name}{FIELD_MARKER}" for name in PAGE_NAMES]
#: The short tail of a reasoning model's thinking, the only reasoning a frame carries while it streams.
REASONING_TAIL = (REPLY, f"reasoning_tail{FIELD_MARKER}")
#: The reply length a tab's next message asks for: until the tab's settings load (a background event after
#: hydration), it is the state's default (1,024), not CHATBOT_MAX_TOKENS; a benchmark waits for it.
MAX_TOKENS = (SettingsState.get_full_name(), f"max_tokens{FIELD_MARKER}")


def changed_messages(delta: dict[str, Any]) -> list[dict[str, Any]]:
    """The messages of the history pages a delta wrote (state/history_pages.py): one just added is the last."""
    conversation = delta.get(CONVERSATION) or {}
    return [message for var in HISTORY_PAGES for message in conversation.get(var) or []]
