"""The small things a person meets every day, on a desktop: the composer, Escape, copying, scrolling,
times and days, example prompts, rename, search, the product's name, and the keyboard's first stop."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session

from chatbot_app.storage.database import make_engine
from chatbot_app.storage.models import Conversation, Message
from tests.e2e.live_app import LiveApp
from tests.e2e.test_chat_in_browser import send, wait_for_conversation_url, wait_for_replies
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer

pytestmark = pytest.mark.e2e

LONG = Behaviour(text="", tokens=2000, tokens_per_s=60)
INPUT_HEIGHT = "document.querySelector('#chat-input').getBoundingClientRect().height"
SCROLL_UP_UNTIL_THE_BUTTON_SHOWS = """() => {
  document.getElementById('message-scroller').scrollTop = 0;
  return document.getElementById('scroll-to-bottom') !== null;
}"""


def test_the_composer_shrinks_back_after_sending_and_send_waits_for_text(page, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    assert page.is_disabled("#send-button")
    one_line = page.evaluate(INPUT_HEIGHT)
    page.click("#chat-input")
    page.keyboard.type("Twelve lines")
    for number in range(11):
        page.keyboard.press("Shift+Enter")
        page.keyboard.type(f"line {number}")
    assert page.evaluate(INPUT_HEIGHT) > 3 * one_line
    assert page.is_enabled("#send-button")

    page.keyboard.press("Enter")
    wait_for_replies(page, 1)
    page.wait_for_function("document.querySelector('#chat-input').value === ''")
    page.wait_for_function(f"{INPUT_HEIGHT} <= {one_line + 2}")  # back to one line, before any keystroke
    page.wait_for_function("document.querySelector('#send-button').disabled")
    page.fill("#chat-input", "   ")
    assert page.is_disabled("#send-button")  # white space is nothing to send
    page.fill("#chat-input", "x")
    assert page.is_enabled("#send-button")


def test_escape_stops_a_streaming_reply(page, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    fake.enqueue_stream(LONG)
    send(page, "Tell me everything")
    page.wait_for_selector("[data-role=assistant][data-status=streaming] .chat-markdown:has-text('alpha')")
    page.keyboard.press("Escape")  # the focus is still in the message box
    page.wait_for_selector("[data-role=assistant][data-status=stopped]")
    assert page.locator("#stop-button").count() == 0


def test_copying_a_message_confirms_it(page, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    fake.enqueue_stream(Behaviour(text="A reply worth keeping."))
    send(page, "Say something")
    wait_for_replies(page, 1)
    page.locator("[data-role=assistant]").last.locator("..").get_by_role("button", name="Copy reply").click()
    page.wait_for_selector("[data-testid=copied]:has-text('Message copied')")
    assert page.evaluate("navigator.clipboard.readText()") == "A reply worth keeping."
    # It fades by itself (a CSS animation), and a second copy shows it again.
    page.wait_for_selector("[data-testid=copied]", state="hidden")
    page.locator("[data-role=user]").last.locator("..").get_by_role("button", name="Copy message").click()
    page.wait_for_selector("[data-testid=copied]", state="visible")
    assert page.evaluate("navigator.clipboard.readText()") == "Say something"


def test_the_share_panel_copies_its_link_and_the_shared_page_shows_files_and_the_way_back(  # type: ignore[no-untyped-def]
    page, browser, app: LiveApp, fake: FakeLLMServer
) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.set_input_files(
        "#composer input[type=file]", [{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"Otters hold hands."}]
    )
    page.wait_for_selector("[data-testid=attachment]")
    fake.enqueue_stream(Behaviour(text="They do."))
    send(page, "Read my notes")
    wait_for_replies(page, 1)
    wait_for_conversation_url(page)
    page.click("#conversation-menu")
    page.click("#share-button")
    page.wait_for_function("document.querySelector('#share-link').value.includes('/s/')")
    link = page.input_value("#share-link")
    page.click("#copy-share-link")
    page.wait_for_selector("[data-testid=copied]:has-text('Link copied')")
    assert page.evaluate("navigator.clipboard.readText()") == link

    reader = browser.new_context().new_page()  # someone else
    reader.set_default_timeout(20_000)
    reader.goto(link)
    reader.wait_for_selector("#shared-title")
    shared_file = reader.locator(".shared-message [data-testid=message-attachment]")
    assert shared_file.inner_text().strip() == "notes.txt"
    assert "/api/shared/" in (shared_file.get_attribute("href") or "")  # through the link, not the owner's own
    reader.click("#share-start-chat")  # the way back to the app
    reader.wait_for_selector("#chat-input")
    reader.context.close()


def test_scroll_to_bottom_shows_whenever_the_newest_message_is_out_of_view(page, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    for number in range(1, 4):
        fake.enqueue_stream(Behaviour(text="", tokens=120))
        send(page, f"Message {number}")
        wait_for_replies(page, number)
    assert page.locator("#scroll-to-bottom").count() == 0  # at the end already
    page.evaluate("document.getElementById('message-scroller').scrollTop = 0")
    page.wait_for_selector("#scroll-to-bottom")
    page.click("#scroll-to-bottom")
    page.wait_for_function(
        "(e => e.scrollHeight - e.scrollTop - e.clientHeight < 80)(document.getElementById('message-scroller'))"
    )
    page.wait_for_selector("#scroll-to-bottom", state="detached")

    # While a reply streams, too: scrolled up, the button brings the growing end back.
    fake.enqueue_stream(LONG)
    send(page, "A long one")
    page.wait_for_selector("[data-role=assistant][data-status=streaming] .chat-markdown:has-text('alpha')")
    # Scrolled up as a reader does, again until it holds: a jump made between a frame and its scroll event
    # is undone by the list's own follow-the-end (the reader was still at the end when the frame came).
    page.wait_for_function(SCROLL_UP_UNTIL_THE_BUTTON_SHOWS)
    page.click("#scroll-to-bottom")
    page.wait_for_selector("#scroll-to-bottom", state="detached")
    assert page.locator("[data-role=assistant][data-status=streaming]").count() == 1
    page.click("#stop-button")


def test_messages_show_their_time_and_the_sidebar_groups_conversations_by_day(  # type: ignore[no-untyped-def]
    page, app: LiveApp, fake: FakeLLMServer
) -> None:
    send(page, "Today's question")
    wait_for_replies(page, 1)
    wait_for_conversation_url(page)
    page.wait_for_function("document.querySelectorAll('.message-row time').length === 2")
    rows = page.locator(".message-row")
    assert rows.count() == 2
    for index in range(2):
        time = rows.nth(index).locator("time")
        assert time.count() == 1 and "Today" in time.inner_text()
        assert time.get_attribute("datetime")  # machine-readable too

    identity = page.evaluate("localStorage.getItem('chatbot_identity')")
    now = datetime.now(UTC)
    engine = make_engine(app.database_url)
    with Session(engine) as session:
        for title, age, pinned in (
            ("From yesterday", timedelta(days=1), False),
            ("From last week", timedelta(days=4), False),
            ("From long ago", timedelta(days=40), False),
            ("Pinned long ago", timedelta(days=90), True),
        ):
            moment = now - age
            conversation = Conversation(owner_id=identity, title=title, pinned=pinned, updated_at=moment)
            session.add(conversation)
            session.flush()
            session.add(Message(conversation_id=conversation.id, role="user", content=title, created_at=moment))
        session.commit()
    engine.dispose()
    page.reload()
    page.wait_for_function("document.querySelectorAll('[data-testid=conversation-item]').length === 5")
    labels = page.locator("#conversation-list .group-label").all_inner_texts()
    assert labels == ["Pinned", "Today", "Yesterday", "Previous 7 days", "Older"]
    groups = page.locator("[data-testid=conversation-item]").evaluate_all("items => items.map(i => i.dataset.group)")
    assert groups == ["Pinned", "Today", "Yesterday", "Previous 7 days", "Older"]


def test_a_new_chat_offers_example_prompts(page) -> None:  # type: ignore[no-untyped-def]
    prompts = page.locator("[data-testid=example-prompt]")
    assert prompts.count() >= 3
    prompts.first.click()
    page.wait_for_function("document.querySelector('#chat-input').value.length > 10")
    assert page.evaluate("document.activeElement.id") == "chat-input"
    assert page.is_enabled("#send-button")


def test_rename_opens_with_the_current_title(page, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    fake.enqueue_batch(Behaviour(text="Otter Facts", for_prompt="Tell me about otters"))
    send(page, "Tell me about otters")
    wait_for_replies(page, 1)
    page.wait_for_selector("[data-testid=conversation-item]:has-text('Otter Facts')")
    page.get_by_role("button", name="Actions for Otter Facts").click()
    page.get_by_role("menuitem", name="Rename").click()
    page.wait_for_selector("#rename-input")
    assert page.input_value("#rename-input") == "Otter Facts"


def test_search_lists_each_conversation_once_with_its_best_snippet(page, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    fake.enqueue_stream(Behaviour(text="The zebra has stripes."), Behaviour(text="Every zebra is unique."))
    fake.enqueue_batch(Behaviour(text="Striped Animals", for_prompt="Tell me about the zebra"))
    send(page, "Tell me about the zebra")
    wait_for_replies(page, 1)
    send(page, "One more zebra fact")
    wait_for_replies(page, 2)
    page.fill("#search-input", "zebra")
    page.wait_for_selector("[data-testid=search-hit] mark")
    hits = page.locator("[data-testid=search-hit]")
    assert hits.count() == 1  # four matching messages, one conversation
    assert "zebra" in hits.first.locator(".snippet").inner_text().lower()
    title = hits.first.locator(".hit-title")
    assert title.evaluate("e => e.scrollHeight <= e.clientHeight + 1")  # the title's letters are not cut


def test_the_product_name_is_in_the_header_and_the_tab_title(page) -> None:  # type: ignore[no-untyped-def]
    assert page.title() == "Chatbot"
    assert page.inner_text("#app-name") == "Chatbot"


def test_the_first_tab_stop_is_a_skip_link_to_the_message_box(page) -> None:  # type: ignore[no-untyped-def]
    # Tab order is document order (no positive tabindex anywhere): the skip link comes first.
    first = page.evaluate(
        """() => {
          const stops = Array.from(document.querySelectorAll('a[href], button, input, select, textarea, [tabindex]'))
            .filter(e => e.tabIndex >= 0 && !e.disabled && e.getClientRects().length);
          return {first: stops[0].className, positive: stops.filter(e => e.tabIndex > 0).length};
        }"""
    )
    assert first == {"first": "skip-link", "positive": 0}
    link = page.locator(".skip-link")
    assert not link.evaluate("e => e.getBoundingClientRect().bottom > 0")  # out of sight until focused
    link.focus()
    assert link.evaluate("e => e.getBoundingClientRect().bottom > 0")
    page.keyboard.press("Enter")
    page.wait_for_function("document.activeElement.id === 'chat-input'")


def test_controls_have_specific_names_big_targets_and_edit_without_hover(  # type: ignore[no-untyped-def]
    page, fake: FakeLLMServer
) -> None:
    for title in ("Apples", "Pears"):
        fake.enqueue_batch(Behaviour(text=title, for_prompt=f"About {title.lower()}"))
        page.click("#sidebar-new-chat")
        page.wait_for_url(re.compile(r"/$"), wait_until="commit")
        send(page, f"About {title.lower()}")
        wait_for_replies(page, 1)
        page.wait_for_selector(f"[data-testid=conversation-item]:has-text('{title}')")
    names = page.locator(".conversation-actions").evaluate_all("bs => bs.map(b => b.getAttribute('aria-label'))")
    assert sorted(names) == ["Actions for Apples", "Actions for Pears"]

    # Every visible button and link has a name, and is at least 24 x 24 px (or is text in a line).
    report = page.evaluate(
        """() => Array.from(document.querySelectorAll('button, [role=button], a[href], select, input, textarea'))
            .filter(e => e.tabIndex >= 0 && e.getClientRects().length && getComputedStyle(e).visibility !== 'hidden')
            .map(e => {
              const r = e.getBoundingClientRect();
              const name = (e.getAttribute('aria-label') || e.innerText || e.getAttribute('title') ||
                            (e.labels && e.labels[0] && e.labels[0].innerText) || '').trim();
              return {tag: e.tagName, id: e.id, name, w: r.width, h: r.height, inline: e.tagName === 'A'};
            })"""
    )
    unnamed = [c for c in report if not c["name"] and c["tag"] != "INPUT"]
    assert unnamed == []
    small = [c for c in report if not c["inline"] and (c["w"] < 24 or c["h"] < 24)]
    assert small == []

    edit = page.locator(".edit-button").first
    page.mouse.move(0, 0)  # no hover anywhere
    assert edit.is_visible() and edit.evaluate("e => getComputedStyle(e).opacity") == "1"


def test_no_page_writes_a_warning_or_an_error_to_the_console(page, app: LiveApp, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    console: list[str] = []
    page.on(
        "console",
        lambda m: console.append(f"{page.url} {m.type}: {m.text}") if m.type in ("warning", "error") else None,
    )
    page.on("pageerror", lambda error: console.append(f"{page.url} pageerror: {error}"))
    fake.enqueue_stream(Behaviour(text="A `code` reply:\n```python\nprint(1)\n```", tokens_per_s=100))
    send(page, "Reply with code")
    wait_for_replies(page, 1)
    url = wait_for_conversation_url(page)
    for address in (url, app.frontend_url + "/", app.frontend_url + "/nowhere", app.frontend_url + "/s/unknown"):
        page.goto(address)  # each loaded afresh, most from the static host's single-page fallback
        page.wait_for_selector("#chat-input, #not-found, #share-missing")
        page.wait_for_load_state("networkidle")
    assert console == []
