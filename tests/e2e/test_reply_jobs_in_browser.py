"""Replies as server-side jobs, as a person meets them: switching conversations mid-reply, search
links with any ?m=, Stop in every phase, a second tab, a reload, and a stale tab's Regenerate."""

from __future__ import annotations

import re

import pytest
from sqlmodel import Session, col, select

from chatbot_app.storage.database import make_engine
from chatbot_app.storage.models import Message
from tests.e2e.live_app import LiveApp
from tests.e2e.test_chat_in_browser import (
    RECORD_REPLY_GROWTH,
    message_texts,
    send,
    wait_for_conversation_url,
    wait_for_replies,
)
from tests.e2e.test_models_and_settings import open_settings
from tests.e2e.test_reliability_in_browser import last_reply, wait_for_streaming_text
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer

pytestmark = pytest.mark.e2e

LONG = Behaviour(text="", tokens=400, tokens_per_s=40)  # ten seconds of reply
STREAMING = "[data-role=assistant][data-status=streaming]"


def conversation_id_of(url: str) -> str:
    match = re.search(r"/c/([0-9a-f]{32})", url)
    assert match, url
    return match.group(1)


def open_from_sidebar(page, conversation_id: str) -> None:  # type: ignore[no-untyped-def]
    page.click(f"[data-testid=conversation-item][data-id='{conversation_id}'] a")
    page.wait_for_url(re.compile(f"/c/{conversation_id}$"), wait_until="commit")


def assert_nothing_streams(page) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function(f"document.querySelectorAll('{STREAMING}').length === 0")


def stored_replies(app: LiveApp, conversation_id: str) -> list[tuple[str, str]]:
    engine = make_engine(app.database_url)
    with Session(engine) as session:
        rows = session.exec(
            select(Message).where(Message.conversation_id == conversation_id).order_by(col(Message.id))
        ).all()
    engine.dispose()
    return [(m.role, m.status) for m in rows]


def test_switching_away_from_a_streaming_conversation_and_back(page, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    fake.enqueue_stream(Behaviour(text="The first conversation's answer."))
    send(page, "First conversation")
    first = conversation_id_of(wait_for_conversation_url(page))
    wait_for_replies(page, 1)

    page.click("#sidebar-new-chat")  # the header's own shows on phones only
    page.wait_for_url(re.compile(r"/$"), wait_until="commit")  # or the next URL read is still the first's
    fake.enqueue_stream(LONG, Behaviour(text="Answered while the other one streams."))
    send(page, "Second conversation, a long answer")
    second = conversation_id_of(wait_for_conversation_url(page))
    wait_for_streaming_text(page)

    # Away to the first: only its own messages, and the composer works at once.
    open_from_sidebar(page, first)
    page.wait_for_function("document.body.innerText.includes('The first conversation')")
    assert_nothing_streams(page)
    page.wait_for_selector("#send-button")
    assert [text.split("\n")[0] for _, text in message_texts(page)] == [
        "First conversation",
        "The first conversation's answer.",
    ]
    send(page, "Still here?")
    wait_for_replies(page, 2)
    assert "Answered while the other one streams." in last_reply(page).inner_text()

    # Back to the second: its reply is followed (or already whole), and whole in the end.
    open_from_sidebar(page, second)
    page.wait_for_function("!document.body.innerText.includes('Still here?')")  # the first one's view is gone
    wait_for_replies(page, 1)
    texts = message_texts(page)
    assert [role for role, _ in texts] == ["user", "assistant"]
    assert texts[0][1].startswith("Second conversation")
    assert len(texts[1][1].split()) >= 400
    assert_nothing_streams(page)


@pytest.mark.parametrize("m", ["1", "99999999", "not-a-number", "%00", "-5"])
def test_a_search_link_with_any_message_id_shows_the_conversation(page, fake: FakeLLMServer, m: str) -> None:  # type: ignore[no-untyped-def]
    fake.enqueue_stream(Behaviour(text="Something to find."))
    send(page, "Open me by link")
    url = wait_for_conversation_url(page)
    wait_for_replies(page, 1)

    page.goto(f"{url}?m={m}")

    page.wait_for_function("document.body.innerText.includes('Something to find.')")
    assert [role for role, _ in message_texts(page)] == ["user", "assistant"]
    page.wait_for_selector("#send-button")


def test_a_search_link_to_a_foreign_message_shows_only_the_conversation(  # type: ignore[no-untyped-def]
    page, browser, app: LiveApp, fake: FakeLLMServer
) -> None:
    fake.enqueue_stream(Behaviour(text="Mine."))
    send(page, "My conversation")
    url = wait_for_conversation_url(page)
    wait_for_replies(page, 1)
    stranger = browser.new_context().new_page()
    stranger.goto(app.frontend_url)
    stranger.wait_for_selector("#chat-input")
    fake.enqueue_stream(Behaviour(text="Theirs."))
    send(stranger, "Their conversation")
    foreign = conversation_id_of(wait_for_conversation_url(stranger))
    wait_for_replies(stranger, 1)
    [foreign_reply_id] = [m.id for m in messages_of(app, foreign) if m.role == "assistant"]

    page.goto(f"{url}?m={foreign_reply_id}")

    page.wait_for_function("document.body.innerText.includes('Mine.')")
    assert "Theirs." not in page.inner_text("body")
    stranger.context.close()


def messages_of(app: LiveApp, conversation_id: str) -> list[Message]:
    engine = make_engine(app.database_url)
    with Session(engine) as session:
        rows = list(session.exec(select(Message).where(Message.conversation_id == conversation_id)).all())
    engine.dispose()
    return rows


def test_stop_while_waiting_for_a_slow_first_token(page, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    fake.enqueue_stream(Behaviour(text="never shown", first_token_delay_s=60))
    send(page, "Take your time")
    wait_for_conversation_url(page)
    fake.wait_for_chat_requests(1)

    page.click("#stop-button")

    page.wait_for_selector("[data-role=assistant][data-status=stopped]")
    assert fake.abort_seen.wait(10), "the upstream request should be closed"
    assert_nothing_streams(page)
    page.wait_for_selector("#send-button")


def test_stop_during_a_retry_wait(page, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    fake.enqueue_stream(Behaviour(status=429, retry_after="15"), Behaviour(text="too late"))
    send(page, "Try again later")
    page.wait_for_selector("#retry-notice")

    page.click("#stop-button")

    page.wait_for_selector("[data-role=assistant][data-status=stopped]")
    assert len(fake.chat_requests()) == 1  # no second try
    assert "too late" not in page.inner_text("body")


def test_stop_in_batch_mode_shows_what_is_stored(page, app: LiveApp, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    open_settings(page)
    page.click("#batch-switch")
    page.click("#apply-settings")
    page.wait_for_selector("#settings-notice:has-text('Saved')")
    page.keyboard.press("Escape")
    fake.enqueue_batch(Behaviour(text="The whole batch reply.", first_token_delay_s=60))
    send(page, "All at once, please")
    conversation_id = conversation_id_of(wait_for_conversation_url(page))
    fake.wait_for_chat_requests(1)

    page.click("#stop-button")

    page.wait_for_selector("[data-role=assistant][data-status=stopped]")
    assert "The whole batch reply." not in last_reply(page).inner_text()
    reply = [m for m in messages_of(app, conversation_id) if m.role == "assistant"][-1]
    assert (reply.status, reply.content) == ("stopped", "")


def second_tab_on_a_streaming_reply(page, fake: FakeLLMServer, tokens: int):  # type: ignore[no-untyped-def]
    """Start a reply of `tokens` in `page`; a second tab of the same browser opens it while it streams."""
    fake.enqueue_stream(Behaviour(text="", tokens=tokens, tokens_per_s=40))
    send(page, "Stream for a while")
    url = wait_for_conversation_url(page)
    wait_for_streaming_text(page)
    other = page.context.new_page()
    other.goto(url)
    other.wait_for_selector(STREAMING)
    return other


def test_a_second_tab_follows_a_reply_live_frame_by_frame(page, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    other = second_tab_on_a_streaming_reply(page, fake, 240)
    other.evaluate(RECORD_REPLY_GROWTH)
    wait_for_replies(other, 1)

    growth = other.evaluate("window.__replyLengths")
    assert len(growth) >= 5, growth  # live frames, not one jump at the end
    assert len(last_reply(other).inner_text().split()) >= 240
    assert_nothing_streams(other)
    other.close()


def test_stop_from_a_second_tab_stops_the_reply_in_both(page, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    other = second_tab_on_a_streaming_reply(page, fake, 400)

    other.click("#stop-button")

    for tab in (page, other):
        tab.wait_for_selector("[data-role=assistant][data-status=stopped]")
        assert_nothing_streams(tab)
    assert fake.abort_seen.wait(10)
    other.close()


def test_regenerate_in_a_stale_tab_stops_the_reply_streaming_in_another_first(  # type: ignore[no-untyped-def]
    page, app: LiveApp, fake: FakeLLMServer
) -> None:
    fake.enqueue_stream(Behaviour(text="The first answer."))
    send(page, "First question")
    url = wait_for_conversation_url(page)
    wait_for_replies(page, 1)
    stale = page.context.new_page()  # opened now: it will not see the next message
    stale.goto(url)
    wait_for_replies(stale, 1)

    fake.enqueue_stream(LONG, Behaviour(text="The regenerated answer."))
    send(page, "Second question, a long answer")
    wait_for_streaming_text(page)
    stale.click("[aria-label=Regenerate]")

    stale.wait_for_function("document.body.innerText.includes('The regenerated answer.')")
    wait_for_replies(stale, 2)  # complete on the page: stored
    assert "stopped first" in stale.inner_text("#notice")
    page.wait_for_selector("[data-role=assistant][data-status=stopped]")  # the other tab is told, not left hanging
    assert_nothing_streams(page)
    assert stored_replies(app, conversation_id_of(url)) == [
        ("user", "complete"),
        ("assistant", "complete"),
        ("user", "complete"),
        ("assistant", "stopped"),  # kept, as the reply's first version
        ("assistant", "complete"),
    ]
    stale.reload()
    wait_for_replies(stale, 2)
    assert "The regenerated answer." in last_reply(stale).inner_text()
    stale.close()
