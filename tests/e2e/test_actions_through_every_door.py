"""Every action through every door that offers it gives the same result and the same refusals.

One production backend with accounts on. Each test's person is a new user with two doors onto the
same account: a tab (the websocket, signed in by its session cookie) and the REST API (a personal
key), plus /v1 where it applies. The actions themselves live once, in services/actions.py; this
checks that no door counts, stops or refuses differently from another.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.metadata
import secrets
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import openai
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from chatbot_app.config import Settings
from chatbot_app.services.accounts import SESSION_COOKIE, Accounts
from chatbot_app.services.actions import CONVERSATION_NOT_FOUND
from chatbot_app.services.shares import ShareLinks
from chatbot_app.state.attachments import ComposerFilesState
from chatbot_app.state.conversation import STOPPED_FIRST, ConversationState
from chatbot_app.state.library import LibraryState
from chatbot_app.state.reply import ReplyState
from chatbot_app.state.session import SessionState
from chatbot_app.storage.database import make_engine
from chatbot_app.storage.models import Conversation, Message, MessageStatus, TokenLedger, User
from tests.conftest import TEST_API_KEY, migrate
from tests.e2e.live_app import Backend, backend_only
from tests.e2e.reflex_client import ReflexClient, in_thread
from tests.fakes.fake_llm_server import FAKE_TRANSCRIPT, Behaviour, FakeLLMServer
from tests.fakes.sample_files import make_wav

pytestmark = pytest.mark.e2e

PER_USER_LIMIT = 5
PASSWORD = "correct horse battery"
T = TypeVar("T")


@dataclass
class Doors:
    backend: Backend
    accounts: Accounts
    engine: Engine


@pytest.fixture(scope="module")
def doors(tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLMServer) -> Iterator[Doors]:
    workdir = tmp_path_factory.mktemp("doors")
    database_url = f"sqlite:///{workdir / 'app.db'}"
    migrate(database_url)
    with backend_only(
        workdir,
        database_url,
        GROQ_API_KEY=TEST_API_KEY,
        GROQ_BASE_URL=fake_llm.base_url,
        CHATBOT_MODEL="fake-large",
        CHATBOT_LOCAL_MODEL="off",
        CHATBOT_AUTH="local",
        CHATBOT_RATE_LIMIT_PER_MINUTE=str(PER_USER_LIMIT),
        # Every person here is one address (127.0.0.1): its own limits are tested elsewhere.
        CHATBOT_ADDRESS_RATE_LIMIT_PER_MINUTE="100000",
        CHATBOT_NEW_IDENTITIES_PER_HOUR="100000",
    ) as backend:
        engine = make_engine(database_url)
        # The test plays the admin who makes each person's account: sign-up open, and not throttled.
        accounts = Accounts(
            Settings(
                database_url=database_url,
                auth_methods=("local",),
                allow_signup=True,
                signups_per_address_per_hour=1000,
            ),
            engine,
        )
        try:
            yield Doors(backend, accounts, engine)
        finally:
            engine.dispose()


@dataclass
class Person:
    """One user, and their two doors: a signed-in tab (`tab()`) and the API with their personal key."""

    doors: Doors
    user: User
    cookie: str
    key: str

    def api(self) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.key}"}
        return httpx.AsyncClient(base_url=self.doors.backend.url, headers=headers, timeout=60)

    def v1(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"{self.doors.backend.url}/v1", api_key=self.key, max_retries=0)

    async def tab(self, path: str = "/") -> ReflexClient:
        tab = ReflexClient(
            self.doors.backend.url,
            importlib.metadata.version("reflex"),
            headers={"Cookie": f"{SESSION_COOKIE}={self.cookie}"},
            pathname=path,
        )
        await tab.connect()
        await asyncio.wait_for(tab.hydrated.wait(), 30)
        return tab

    def conversations(self) -> list[tuple[Conversation, list[Message]]]:
        with Session(self.doors.engine) as session:
            found = session.exec(select(Conversation).where(Conversation.owner_id == self.user.owner_id)).all()
            return [
                (c, list(session.exec(select(Message).where(Message.conversation_id == c.id).order_by(Message.id))))
                for c in found
            ]

    def tokens_used(self) -> int:
        with Session(self.doors.engine) as session:
            return sum(
                row.used_tokens for row in session.exec(select(TokenLedger).where(TokenLedger.user_id == self.user.id))
            )


def person(doors: Doors, *, quota: int | None = None) -> Person:
    async def make() -> Person:
        user = await doors.accounts.sign_up(f"p{secrets.token_hex(4)}@example.com", PASSWORD)
        if quota is not None:
            with Session(doors.engine) as session:
                row = session.get(User, user.id)
                assert row is not None
                row.daily_token_quota = quota
                session.add(row)
                session.commit()
        cookie = await doors.accounts.start_session(user)
        _, key = await doors.accounts.create_api_key(user.id or 0, "doors")
        return Person(doors, user, cookie, key)

    return in_thread(make)


async def notice_after(
    tab: ReflexClient, call: Awaitable[None], state: type = SessionState, var: str = "notice"
) -> str:
    """The notice a call leaves (a new value: an older notice cannot answer)."""
    before = tab.value(state, var)
    await call
    return await tab.until(lambda: (v := tab.value(state, var)) and v != before and v)


async def settled(person: Person, conversation_id: str) -> list[Message]:
    """The conversation's messages once its last reply has ended."""

    def ended() -> list[Message]:
        messages = next((m for c, m in person.conversations() if c.id == conversation_id), [])
        return messages if messages and messages[-1].status != MessageStatus.STREAMING else []

    return await polled(ended)


def reply_tokens(messages: list[Message]) -> int:
    return sum((m.prompt_tokens or 0) + (m.completion_tokens or 0) for m in messages if m.role == "assistant")


async def counted(person: Person, at_least: int) -> int:
    """The user's tokens once at least `at_least` are counted (a reply settles just after it is stored)."""
    return await polled(lambda: (used := person.tokens_used()) >= at_least and used)


async def polled(condition: Callable[[], T]) -> T:
    """`condition()` once it is truthy, read from the database every 50 ms for at most 30 s."""
    async with asyncio.timeout(30):
        while True:
            if result := condition():
                return result
            await asyncio.sleep(0.05)


# --- send ---------------------------------------------------------------------------------------


def test_a_message_sent_through_the_tab_or_the_api_is_stored_and_counted_alike(
    doors: Doors, fake: FakeLLMServer
) -> None:
    someone = person(doors)

    async def run() -> tuple[list[Message], list[Message], int, int]:
        tab = await someone.tab()
        try:
            await tab.call(ReplyState, "send_message", form_data={"message": "Hello from the tab"})
            from_tab = await tab.until(lambda: tab.value(SessionState, "conversation_id"))
        finally:
            await tab.close()
        tab_messages = await settled(someone, from_tab)
        after_tab = await counted(someone, reply_tokens(tab_messages))
        async with someone.api() as api:
            answer = await api.post("/api/chat_batch", json={"message": "Hello from the API"})
        assert answer.status_code == 200
        api_messages = await settled(someone, answer.headers["x-conversation-id"])
        return tab_messages, api_messages, after_tab, await counted(someone, after_tab + reply_tokens(api_messages))

    tab_messages, api_messages, after_tab, after_api = in_thread(run)

    shape = [(m.role, m.status, m.provider, m.model) for m in tab_messages]
    assert shape == [(m.role, m.status, m.provider, m.model) for m in api_messages]
    assert shape == [("user", "complete", None, None), ("assistant", "complete", "groq", "fake-large")]
    assert [m.content for m in tab_messages] == [
        "Hello from the tab",
        "You said: Hello from the tab",
    ]  # the fake echoes
    assert [m.content for m in api_messages] == ["Hello from the API", "You said: Hello from the API"]
    assert 0 < reply_tokens(tab_messages) <= after_tab < after_api  # both replies counted for the one user


# --- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "words"),
    [
        ("   ", "Type a message first."),
        ("x" * 32_001, "That message is 32,001 characters; the limit is 32,000."),
        ("ring \x07 bell", "That message contains control characters; remove them and send it again."),
    ],
    ids=["blank", "too-long", "control"],
)
def test_a_bad_message_is_refused_with_the_same_words_by_every_door(
    doors: Doors, fake: FakeLLMServer, message: str, words: str
) -> None:
    someone = person(doors)

    async def run() -> tuple[str, httpx.Response]:
        tab = await someone.tab()
        try:
            notice = await notice_after(tab, tab.call(ReplyState, "send_message", form_data={"message": message}))
        finally:
            await tab.close()
        async with someone.api() as api:
            return notice, await api.post("/api/chat", json={"message": message})

    notice, answer = in_thread(run)

    assert notice == words
    assert (answer.status_code, answer.json()["detail"]) == (422, words)
    assert someone.conversations() == [] and fake.chat_requests() == []


def test_the_per_user_limit_counts_every_door_together_and_refuses_alike(doors: Doors, fake: FakeLLMServer) -> None:
    someone = person(doors)
    refusal = f"Too many messages: the limit is {PER_USER_LIMIT} a minute. Wait a moment, then try again."

    async def run() -> tuple[list[str], str, int, str]:
        async with someone.api() as api:
            seed = await api.post("/api/chat_batch", json={"message": "one"})  # 1: a conversation, no title
            conversation_id = seed.headers["x-conversation-id"]
            tab = await someone.tab(f"/c/{conversation_id}")
            outcomes: list[str] = []
            try:
                for _ in range(2):  # 2, 4: a regeneration from the tab; 3, 5: a message from the API
                    await settled(someone, conversation_id)
                    await tab.call(ReplyState, "regenerate")
                    await tab.until(lambda: len(fake.chat_requests()) == 2 + 2 * len(outcomes))
                    await settled(someone, conversation_id)
                    answer = await api.post(
                        "/api/chat_batch", json={"message": "again", "conversation_id": conversation_id}
                    )
                    outcomes.append(str(answer.status_code))
                from_tab = await notice_after(tab, tab.call(ReplyState, "regenerate"))
            finally:
                await tab.close()
            late = await api.post("/api/chat_batch", json={"message": "late", "conversation_id": conversation_id})
            with pytest.raises(openai.RateLimitError) as from_v1:
                async with someone.v1() as sdk:
                    await sdk.chat.completions.create(
                        model="groq:fake-large", messages=[{"role": "user", "content": "hi"}]
                    )
        return outcomes, from_tab, late.status_code, f"{late.json()['detail']}|{from_v1.value.body['message']}"  # type: ignore[index]

    outcomes, from_tab, late_status, api_and_v1 = in_thread(run)

    assert outcomes == ["200", "200"]  # calls 1 to 5, from both doors, pass; the 6th and later do not
    assert from_tab == refusal
    assert (late_status, api_and_v1) == (429, f"{refusal}|{refusal}")


def test_a_spent_quota_refuses_every_action_alike_and_nothing_reaches_the_provider(
    doors: Doors, fake: FakeLLMServer
) -> None:
    someone = person(doors, quota=1)
    words = "You have used today's 1 tokens. The quota starts again at midnight UTC, or an admin can raise it."
    wav = make_wav()
    data_url = "data:audio/wav;base64," + base64.b64encode(wav).decode()

    async def run() -> dict[str, str]:
        refusals: dict[str, str] = {}
        for name, handler, payload in [
            ("tab: send", (ReplyState, "send_message"), {"form_data": {"message": "hello"}}),
            ("tab: transcribe", (ComposerFilesState, "transcribe_recording"), {"data_url": data_url}),
        ]:
            tab = await someone.tab()  # a tab each: the same words twice would not change the notice
            try:
                refusals[name] = await notice_after(tab, tab.call(*handler, **payload))
            finally:
                await tab.close()
        async with someone.api() as api:
            answer = await api.post("/api/chat_batch", json={"message": "hello"})
            refusals["api: send"] = f"{answer.status_code} {answer.json()['detail']}"
            answer = await api.post("/api/transcribe", files={"file": ("mic.wav", wav)})
            refusals["api: transcribe"] = f"{answer.status_code} {answer.json()['detail']}"
        async with someone.v1() as sdk:
            try:
                await sdk.chat.completions.create(model="groq:fake-large", messages=[{"role": "user", "content": "x"}])
            except openai.RateLimitError as exc:
                refusals["v1: complete"] = f"429 {exc.body['message']}"  # type: ignore[index]
        return refusals

    refusals = in_thread(run)

    assert refusals == {
        "tab: send": words,
        "tab: transcribe": words,
        "api: send": f"429 {words}",
        "api: transcribe": f"429 {words}",
        "v1: complete": f"429 {words}",
    }
    assert fake.requests == [] and someone.conversations() == []


# --- delete and stop --------------------------------------------------------------------------------


@pytest.mark.parametrize("door", ["tab", "api"])
def test_deleting_through_either_door_stops_the_running_reply_and_its_links(
    doors: Doors, fake: FakeLLMServer, door: str
) -> None:
    someone = person(doors)
    shares = ShareLinks(doors.engine)
    fake.enqueue_stream(Behaviour(tokens=400, tokens_per_s=20))  # still streaming when the delete comes

    async def run() -> tuple[str, str]:
        async with (
            someone.api() as api,
            api.stream("POST", "/api/chat", json={"message": "a long one"}) as streaming,
        ):
            conversation_id = streaming.headers["x-conversation-id"]
            chunks = streaming.aiter_text()
            while not await anext(chunks):
                pass  # until the first text: it is streaming, and this client stays connected meanwhile
            link = await shares.create(someone.user.owner_id, conversation_id)
            if door == "api":
                deleted = await api.delete(f"/api/conversations/{conversation_id}")
                outcome = str(deleted.status_code)
            else:
                tab = await someone.tab()
                try:
                    await tab.call(LibraryState, "ask_delete", conversation_id=conversation_id)
                    confirm = tab.call(LibraryState, "confirm_delete")
                    outcome = await notice_after(tab, confirm, LibraryState, "library_notice")
                finally:
                    await tab.close()
            async for _ in chunks:  # the stream ends: its reply was stopped
                pass
        assert await shares.snapshot(link) is None
        return outcome, conversation_id

    outcome, _ = in_thread(run)

    assert outcome == ("204" if door == "api" else STOPPED_FIRST)
    assert someone.conversations() == []
    assert '"status": "stopped"' in doors.backend.log_text()  # the reply stored its end before the rows went


@pytest.mark.parametrize("door", ["tab", "api"])
def test_deleting_someone_elses_conversation_is_refused_alike(doors: Doors, fake: FakeLLMServer, door: str) -> None:
    owner, intruder = person(doors), person(doors)

    async def run() -> str:
        async with owner.api() as api:
            answer = await api.post("/api/chat_batch", json={"message": "mine"})
        target = answer.headers["x-conversation-id"]
        if door == "api":
            async with intruder.api() as api:
                refused = await api.delete(f"/api/conversations/{target}")
            return f"{refused.status_code} {refused.json()['detail']}"
        tab = await intruder.tab()
        try:
            await tab.call(LibraryState, "ask_delete", conversation_id=target)
            return await notice_after(tab, tab.call(LibraryState, "confirm_delete"), LibraryState, "library_notice")
        finally:
            await tab.close()

    outcome = in_thread(run)

    assert outcome == (f"404 {CONVERSATION_NOT_FOUND}" if door == "api" else CONVERSATION_NOT_FOUND)
    assert len(owner.conversations()) == 1


# --- export and transcription ------------------------------------------------------------------------


def test_an_export_is_the_same_from_the_tab_and_the_api(doors: Doors, fake: FakeLLMServer) -> None:
    someone = person(doors)

    async def run() -> tuple[str, str]:
        async with someone.api() as api:
            answer = await api.post("/api/chat_batch", json={"message": "Export me"})
            conversation_id = answer.headers["x-conversation-id"]
            from_api = (await api.get(f"/api/conversations/{conversation_id}/export?format=md")).text
            tab = await someone.tab(f"/c/{conversation_id}")
            try:
                await tab.call(ConversationState, "export", format="md")
                await tab.until(lambda: any(name == "_download" for name, _ in tab.frontend_events))
            finally:
                await tab.close()
            [payload] = [p for name, p in tab.frontend_events if name == "_download"]
            url = str(payload.get("url"))
            if url.startswith("data:"):
                head, _, data = url.partition(",")
                from_tab = base64.b64decode(data).decode() if head.endswith(";base64") else urllib.parse.unquote(data)
            else:  # a link to the export route
                from_tab = (await api.get(urllib.parse.urljoin(someone.doors.backend.url, url))).text
        return from_api, from_tab

    from_api, from_tab = in_thread(run)

    assert "Export me" in from_api
    assert from_tab == from_api


def test_a_recording_is_transcribed_and_counted_alike_by_the_tab_and_the_api(doors: Doors, fake: FakeLLMServer) -> None:
    someone = person(doors)
    wav = make_wav()
    data_url = "data:audio/wav;base64," + base64.b64encode(wav).decode()

    async def run() -> tuple[Any, int, str, int]:
        tab = await someone.tab()
        try:
            await tab.call(ComposerFilesState, "transcribe_recording", data_url=data_url)
            await tab.until(lambda: any(name == "_set_value" for name, _ in tab.frontend_events))
        finally:
            await tab.close()
        [set_value] = [p for name, p in tab.frontend_events if name == "_set_value"]
        after_tab = someone.tokens_used()
        async with someone.api() as api:
            answer = await api.post("/api/transcribe", files={"file": ("mic.wav", wav)})
        return set_value.get("value"), after_tab, answer.json()["text"], someone.tokens_used()

    from_tab, after_tab, from_api, after_api = in_thread(run)

    assert from_tab == from_api == FAKE_TRANSCRIPT
    assert after_tab > 0 and after_api == 2 * after_tab  # the same audio counts the same seconds


# --- versions ---------------------------------------------------------------------------------------


def current_path(person: Person, conversation_id: str) -> list[str]:
    from chatbot_app.storage import conversations as store

    with Session(person.doors.engine) as session:
        return [m.content for m in store.latest_messages(session, conversation_id)]


async def branched(person: Person) -> tuple[str, dict[str, int]]:
    """A conversation whose first reply has two follow-ups (sent with parent_id), "B" the current; its id and
    the message ids by content."""
    async with person.api() as api:
        first = await api.post("/api/chat_batch", json={"message": "Question"})
        conversation_id = first.headers["x-conversation-id"]
        reply = (await api.get(f"/api/conversations/{conversation_id}")).json()["messages"][-1]["id"]
        for text in ("Follow-up A", "Follow-up B"):
            answer = await api.post(
                "/api/chat_batch", json={"message": text, "conversation_id": conversation_id, "parent_id": reply}
            )
            assert answer.status_code == 200, answer.text
    await settled(person, conversation_id)
    return conversation_id, {m.content: m.id or 0 for _, ms in person.conversations() for m in ms}


@pytest.mark.parametrize("door", ["tab", "api"])
def test_switching_and_forking_give_the_same_branches_and_refusals_through_either_door(
    doors: Doors, fake: FakeLLMServer, door: str
) -> None:
    owner, intruder = person(doors), person(doors)

    async def run() -> tuple[list[str], list[str], list[str]]:
        conversation_id, ids = await branched(owner)
        if door == "api":
            async with owner.api() as api:
                switched = await api.put(
                    f"/api/conversations/{conversation_id}/leaf", json={"message_id": ids["Follow-up A"]}
                )
                assert switched.status_code == 200
                forked = await api.post(
                    f"/api/conversations/{conversation_id}/fork", json={"message_id": ids["Question"]}
                )
                assert forked.status_code == 201
                fork_id = forked.json()["id"]
            async with intruder.api() as api:
                refusals = [
                    (
                        await api.put(
                            f"/api/conversations/{conversation_id}/leaf", json={"message_id": ids["Question"]}
                        )
                    ).json()["detail"],
                    (
                        await api.post(
                            f"/api/conversations/{conversation_id}/fork", json={"message_id": ids["Question"]}
                        )
                    ).json()["detail"],
                ]
        else:
            tab = await owner.tab(f"/c/{conversation_id}")
            try:
                await tab.call(ConversationState, "open_page")
                await tab.until(lambda: tab.value(SessionState, "conversation_id") == conversation_id)
                await tab.call(ConversationState, "switch_version", message_id=ids["Follow-up B"], step=-1)
                await polled(lambda: current_path(owner, conversation_id)[2] == "Follow-up A")
                await tab.call(ConversationState, "fork", message_id=ids["Question"])
                fork_id = await polled(
                    lambda: next((c.id for c, _ in owner.conversations() if c.id != conversation_id), None)
                )
            finally:
                await tab.close()
            refusals = []
            for handler, payload in [
                ("switch_version", {"message_id": ids["Question"], "step": 1}),
                ("fork", {"message_id": ids["Question"]}),
            ]:
                tab = await intruder.tab(f"/c/{conversation_id}")  # a tab each: the same words twice are no change
                try:
                    await tab.call(ConversationState, "open_page")  # not theirs: a new chat instead, and a notice
                    await tab.until(lambda tab=tab: tab.value(SessionState, "notice"))
                    refusals.append(await notice_after(tab, tab.call(ConversationState, handler, **payload)))
                finally:
                    await tab.close()
        await settled(owner, fork_id)
        return current_path(owner, conversation_id), current_path(owner, fork_id), refusals

    path, fork, refusals = in_thread(run)

    assert path == ["Question", "You said: Question", "Follow-up A", "You said: Follow-up A"]
    assert fork == ["Question", "You said: Question"]  # a fork at a question answers it in the copy
    assert refusals == [CONVERSATION_NOT_FOUND, CONVERSATION_NOT_FOUND]
    assert intruder.conversations() == []
