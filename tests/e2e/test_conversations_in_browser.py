"""The sidebar, search, rename/pin/delete, summaries, and isolation between browser identities."""

from __future__ import annotations

import re

import pytest

from tests.e2e.live_app import LiveApp
from tests.e2e.test_chat_in_browser import send, wait_for_conversation_url, wait_for_replies
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer, Hold

pytestmark = pytest.mark.e2e


def sidebar_titles(page) -> list[str]:  # type: ignore[no-untyped-def]
    return [el.inner_text().strip() for el in page.query_selector_all("[data-testid=conversation-item]")]


def wait_for_sidebar(page, count: int) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function(f"document.querySelectorAll('[data-testid=conversation-item]').length === {count}")


def test_a_second_identity_sees_none_of_the_first_ones_conversations(  # type: ignore[no-untyped-def]
    page, browser, app: LiveApp, fake: FakeLLMServer
) -> None:
    fake.enqueue_stream(Behaviour(text="Reply one."))
    fake.enqueue_batch(Behaviour(text="Secret Plans", for_prompt="My secret plan"))  # its title
    send(page, "My secret plan is ready.")
    wait_for_replies(page, 1)
    private_url = wait_for_conversation_url(page)
    wait_for_sidebar(page, 1)

    stranger = browser.new_context()
    other = stranger.new_page()
    other.goto(app.frontend_url)
    other.wait_for_selector("#chat-input")
    assert other.query_selector_all("[data-testid=conversation-item]") == []

    other.goto(private_url)
    other.wait_for_selector("#notice")
    assert "not found" in other.inner_text("#notice")
    assert other.query_selector_all("[data-testid=message]") == []
    other.fill("#search-input", "secret")
    other.wait_for_selector("text=No matches.")
    stranger.close()


def test_first_reply_titles_the_conversation_and_search_opens_it_at_the_hit(  # type: ignore[no-untyped-def]
    page, fake: FakeLLMServer
) -> None:
    fake.enqueue_stream(Behaviour(text="Sure, here is a haiku about pelicans."))
    fake.enqueue_batch(Behaviour(text='"Pelican Haiku Request."', for_prompt="haiku about pelicans"))
    send(page, "Write a haiku about pelicans")
    wait_for_replies(page, 1)
    wait_for_conversation_url(page)
    page.wait_for_function("document.querySelector('[data-testid=conversation-item]')?.innerText.includes('Pelican')")
    assert sidebar_titles(page) == ["Pelican Haiku Request"]

    page.click("#sidebar-new-chat")
    page.wait_for_url(re.compile(r"/$"), wait_until="commit")
    page.fill("#search-input", "pelic")
    message_hit = "[data-testid=search-hit]:has-text('haiku about')"  # not the title hit
    page.wait_for_selector(f"{message_hit} mark")
    page.click(message_hit)
    page.wait_for_url(re.compile(r"/c/[0-9a-f]{32}\?m=\d+$"), wait_until="commit")
    page.wait_for_selector(".message-row.focused")
    assert "pelicans" in page.inner_text(".message-row.focused").lower()


def test_a_title_that_comes_after_the_user_moved_on_still_reaches_the_sidebar(  # type: ignore[no-untyped-def]
    page, fake: FakeLLMServer
) -> None:
    """The reply has ended and its title is still being written when the user opens a new chat (or when the
    new conversation's page loads, on a busy machine): the title still replaces the first words."""
    title = Hold()
    fake.enqueue_stream(Behaviour(text="They hold hands when they sleep."))
    fake.enqueue_batch(Behaviour(text="Otter Facts", for_prompt="Tell me about otters", hold=title))
    send(page, "Tell me about otters")
    wait_for_replies(page, 1)
    wait_for_conversation_url(page)
    assert title.reached.wait(20)
    page.click("#sidebar-new-chat")
    page.wait_for_url(re.compile(r"/$"), wait_until="commit")
    page.wait_for_selector("[data-testid=conversation-item]:has-text('Tell me about otters')")
    title.release()
    page.wait_for_selector("[data-testid=conversation-item]:has-text('Otter Facts')")
    assert sidebar_titles(page) == ["Otter Facts"]


def test_rename_pin_and_delete_with_confirmation(page, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    for number, text in enumerate(("first topic", "second topic"), start=1):
        # A failed title request (401 is not retried) keeps the first words as the title.
        fake.enqueue_stream(Behaviour(text="ok"))
        fake.enqueue_batch(Behaviour(status=401))
        page.click("#sidebar-new-chat")
        page.wait_for_url(re.compile(r"/$"), wait_until="commit")
        send(page, text)
        wait_for_replies(page, 1)
        wait_for_conversation_url(page)
        fake.wait_for_chat_requests(2 * number)
    wait_for_sidebar(page, 2)
    assert sidebar_titles(page) == ["second topic", "first topic"]

    # Locators, not element handles: the list re-renders as it refreshes, and a locator finds it again.
    items = page.locator("[data-testid=conversation-item]")
    items.nth(1).locator(".conversation-actions").click()
    page.click("text=Pin")
    page.wait_for_function(
        "document.querySelector('[data-testid=conversation-item]').innerText.includes('first topic')"
    )

    items.nth(0).locator(".conversation-actions").click()
    page.click("text=Rename")
    page.fill("#rename-input", "Pinned and renamed")
    page.click("#rename-confirm")
    page.wait_for_function(
        "document.querySelector('[data-testid=conversation-item]').innerText.includes('Pinned and renamed')"
    )

    items.nth(1).locator(".conversation-actions").click()
    page.click("text=Delete…")
    page.wait_for_selector("#confirm-delete")
    page.click("#confirm-delete")
    wait_for_sidebar(page, 1)
    assert sidebar_titles(page) == ["Pinned and renamed"]


def test_summarize_shows_the_summary_at_the_top(page, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    fake.enqueue_stream(Behaviour(text="Paris is the capital of France."))
    fake.enqueue_batch(Behaviour(text="Capital of France", for_prompt="What is the capital"))
    send(page, "What is the capital of France?")
    wait_for_replies(page, 1)
    wait_for_conversation_url(page)
    page.wait_for_selector("#conversation-stats:has-text('2 messages')")

    fake.enqueue_batch(Behaviour(text="The user asked for the capital of France; it is Paris."))
    page.click("#conversation-menu")
    page.click("#summarize-item")
    page.wait_for_selector("#summary")
    assert "Paris" in page.inner_text("#summary")
    page.reload()
    page.wait_for_selector("#summary")
    assert "Paris" in page.inner_text("#summary")
