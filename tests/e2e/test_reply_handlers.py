"""ReplyState's handlers without a browser: a real websocket client (as the browser speaks) against the
production backend, for paths a browser reaches only by chance: a Stop that comes before the job has
started, a client that calls `follow` again and again, and a text that must never show twice."""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.metadata
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlmodel import Session

from bench.app_names import IDENTITY, SEND_MESSAGE, STOP, STREAM_PARTS, STREAMING, changed_messages
from chatbot_app.state.reply import ReplyState
from chatbot_app.storage.database import make_engine
from chatbot_app.storage.models import Message
from tests.e2e.live_app import LiveApp
from tests.e2e.reflex_client import ReflexClient
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer

pytestmark = pytest.mark.e2e

FOLLOW = f"{ReplyState.get_full_name()}.follow"


class Tab:
    """What a tab shows of the reply: the streamed text (every value it took), and the last message."""

    def __init__(self, backend_url: str) -> None:
        self.client = ReflexClient(
            backend_url,
            importlib.metadata.version("reflex"),
            synced_storage=frozenset({IDENTITY}),
            on_update=self.on_update,
        )
        self.parts: dict[tuple[str, str], str] = {}
        self.shown: list[str] = []
        self.streaming = False
        self.last: dict[str, Any] = {}
        self.changed = asyncio.Event()

    def on_update(self, _at: float, _size: int, update: dict[str, Any]) -> None:
        delta = update.get("delta") or {}
        parts = {(s, v): delta[s][v] for s, v in STREAM_PARTS if v in delta.get(s, ())}
        if parts:
            self.parts.update(parts)
            self.shown.append("".join(self.parts.get(key, "") for key in STREAM_PARTS))
        if (flag := (delta.get(STREAMING[0]) or {}).get(STREAMING[1])) is not None:
            self.streaming = bool(flag)
        if messages := changed_messages(delta):
            self.last = messages[-1]
        self.changed.set()

    async def until(self, condition: Callable[[Tab], bool]) -> None:
        async with asyncio.timeout(60):
            while not condition(self):
                self.changed.clear()
                await self.changed.wait()


def stored_reply(app: LiveApp, message_id: int) -> str:
    engine = make_engine(app.database_url)
    with Session(engine) as session:
        message = session.get(Message, message_id)
    engine.dispose()
    assert message is not None
    return message.content


def run(app: LiveApp, scenario: Callable[[Tab], Awaitable[None]]) -> Tab:
    """Run `scenario` with a connected tab on its own event loop (Playwright's sync loop owns this thread's)."""

    async def main() -> Tab:
        tab = Tab(app.backend.url)
        await tab.client.connect()
        await asyncio.wait_for(tab.client.hydrated.wait(), 30)
        try:
            await scenario(tab)
        finally:
            await tab.client.close()
        return tab

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result(timeout=300)


def test_a_stop_as_soon_as_the_reply_shows_as_coming_ends_it_before_its_first_token(
    app: LiveApp, fake: FakeLLMServer
) -> None:
    fake.enqueue_stream(Behaviour(text="never shown", first_token_delay_s=60))

    async def scenario(tab: Tab) -> None:
        await tab.client.emit(SEND_MESSAGE, {"form_data": {"message": "Stop me at once"}})
        await tab.until(lambda t: t.streaming)  # the Stop button shows from here: the job may not have begun
        await tab.client.emit(STOP)
        await tab.until(lambda t: t.last.get("role") == "assistant" and not t.streaming)

    tab = run(app, scenario)

    assert (tab.last["status"], tab.last["content"]) == ("stopped", "")


def test_following_again_and_again_never_shows_text_twice(app: LiveApp, fake: FakeLLMServer) -> None:
    fake.enqueue_stream(Behaviour(text="", tokens=200, tokens_per_s=80))

    async def scenario(tab: Tab) -> None:
        await tab.client.emit(SEND_MESSAGE, {"form_data": {"message": "Stream, and let me follow twice"}})
        await tab.until(lambda t: bool(t.shown and t.shown[-1]))
        for _ in range(3):  # any client may call any handler: each call takes over the subscription
            await tab.client.emit(FOLLOW)
        await tab.until(lambda t: t.last.get("role") == "assistant" and not t.streaming)

    tab = run(app, scenario)

    final = tab.last["content"]
    assert tab.last["status"] == "complete" and final == stored_reply(app, tab.last["id"])
    assert all(final.startswith(text) for text in tab.shown)  # every frame showed a prefix of the reply
