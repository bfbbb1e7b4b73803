"""Any client can call any event handler with any arguments: each answers with a clear message.

A real websocket client (as the browser speaks to the backend) calls every public handler that
takes arguments with wrong types and hostile values. Each call must produce its notice, store
nothing, and leave the session working.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.metadata
from typing import Any

import pytest
from reflex_base.constants.state import FIELD_MARKER
from sqlalchemy import func
from sqlmodel import Session, select

from chatbot_app.state.conversation import ConversationState
from chatbot_app.state.library import LibraryState
from chatbot_app.state.read_aloud import ReadAloudState
from chatbot_app.state.reply import ReplyState
from chatbot_app.state.session import SessionState
from chatbot_app.state.settings import SettingsState
from chatbot_app.storage.database import make_engine
from chatbot_app.storage.models import Conversation
from tests.e2e.live_app import LiveApp
from tests.e2e.reflex_client import ReflexClient

pytestmark = pytest.mark.e2e

SESSION, REPLY = SessionState.get_full_name(), ReplyState.get_full_name()
CONVERSATION, SETTINGS, LIBRARY, READ_ALOUD = (
    ConversationState.get_full_name(),
    SettingsState.get_full_name(),
    LibraryState.get_full_name(),
    ReadAloudState.get_full_name(),
)
NOTICE = (SESSION, f"notice{FIELD_MARKER}")
SETTINGS_NOTICE = (SETTINGS, f"settings_notice{FIELD_MARKER}")
LIBRARY_NOTICE = (LIBRARY, f"library_notice{FIELD_MARKER}")

# (handler, payload, the var that answers, words it must contain). Consecutive calls answered
# by the same var expect different words, so each wait can only be satisfied by its own call.
BAD_CALLS: list[tuple[str, dict[str, Any], tuple[str, str], str]] = [
    (f"{REPLY}.send_message", {"form_data": None}, NOTICE, "must be text"),
    (f"{REPLY}.send_message", {"form_data": {"message": "   "}}, NOTICE, "Type a message first"),
    (f"{REPLY}.send_message", {"form_data": 42}, NOTICE, "must be text"),
    (f"{REPLY}.send_message", {"form_data": {"message": "x" * 40_000}}, NOTICE, "the limit is 32,000"),
    (f"{REPLY}.send_message", {"form_data": {"message": ["a", "list"]}}, NOTICE, "must be text"),
    (f"{REPLY}.send_message", {"form_data": {"message": "ring \x07 bell"}}, NOTICE, "control characters"),
    (f"{REPLY}.send_message", {"form_data": {"message": "half \ud800 pair"}}, NOTICE, "cannot be sent"),
    (f"{SETTINGS}.choose_model", {"value": "nope:no-such-model"}, NOTICE, "not available"),
    (f"{SETTINGS}.choose_model", {"value": 123}, NOTICE, "Choose a model from the list"),
    (f"{SETTINGS}.apply_settings", {"form_data": "not a form"}, SETTINGS_NOTICE, "settings form"),
    (
        f"{SETTINGS}.apply_settings",
        {"form_data": {"temperature": "hot", "top_p": 1, "max_tokens": 10}},
        SETTINGS_NOTICE,
        "Temperature must be a number",
    ),
    (f"{SETTINGS}.apply_preset", {"name": {"$ne": 1}}, SETTINGS_NOTICE, "Choose a preset"),
    (f"{SETTINGS}.save_preset", {"form_data": {"preset_name": None}}, SETTINGS_NOTICE, "Give the preset a name"),
    (f"{LIBRARY}.open_hit", {"conversation_id": "../../etc", "message_id": "1"}, LIBRARY_NOTICE, "not found"),
    (f"{LIBRARY}.rename", {"form_data": 5}, LIBRARY_NOTICE, "title cannot be empty"),
    (f"{LIBRARY}.toggle_pin", {"conversation_id": {"a": 1}}, LIBRARY_NOTICE, "not found"),
    (f"{CONVERSATION}.export", {"format": "exe"}, NOTICE, "Open a conversation"),
    (f"{READ_ALOUD}.toggle", {"reply_id": {"$gt": 0}}, NOTICE, "reply was not found"),
    (f"{LIBRARY}.search", {"query": 5}, LIBRARY_NOTICE, "must be text"),
    (f"{LIBRARY}.import_file", {"files": [{"name": "x.json"}]}, LIBRARY_NOTICE, "Choose one JSON file"),
]


async def call_each_badly(backend_url: str) -> tuple[list[str], str]:
    """Make every bad call; return what failed to get its notice, and the client's identity."""
    values: dict[tuple[str, str], Any] = {}
    changed = asyncio.Event()

    def on_update(_at: float, _size: int, update: dict[str, Any]) -> None:
        for state_name, fields in (update.get("delta") or {}).items():
            for var, value in fields.items():
                values[(state_name, var)] = value
        changed.set()

    identity_var = f"{SESSION}.identity{FIELD_MARKER}"
    client = ReflexClient(
        backend_url,
        importlib.metadata.version("reflex"),
        synced_storage=frozenset({identity_var}),
        on_update=on_update,
    )
    await client.connect()
    await asyncio.wait_for(client.hydrated.wait(), 30)
    missing = []
    try:
        for handler, payload, var, words in BAD_CALLS:
            await client.emit(handler, payload)
            try:
                async with asyncio.timeout(15):
                    while words not in str(values.get(var, "")):
                        changed.clear()
                        await changed.wait()
            except TimeoutError:
                missing.append(f"{handler.rsplit('.', 1)[1]}({payload!r:.60}) -> {values.get(var)!r}")
        # The session still works: a valid search answers (with nothing found).
        await client.emit(f"{LIBRARY}.search", {"query": "nothing here"})
        async with asyncio.timeout(15):
            while values.get((LIBRARY, f"search_query{FIELD_MARKER}")) != "nothing here":
                changed.clear()
                await changed.wait()
    finally:
        await client.close()
    return missing, client.local_storage.get(identity_var, "")


def test_every_handler_refuses_wrong_types_and_hostile_values_with_a_message(app: LiveApp) -> None:
    log_start = len(app.backend.log_text())  # the session's app: earlier tests' restarts are theirs
    # Its own event loop in a thread: the browser tests' sync Playwright owns this thread's loop.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        missing, identity = pool.submit(asyncio.run, call_each_badly(app.backend.url)).result(timeout=600)

    assert missing == []
    assert identity
    engine = make_engine(app.database_url)
    with Session(engine) as session:
        stored = session.exec(select(func.count()).where(Conversation.owner_id == identity)).one()
    engine.dispose()
    assert stored == 0
    assert "Traceback" not in app.backend.log_text()[log_start:]
