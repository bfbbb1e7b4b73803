"""Model output always renders whole: for every awkward sample, what Chromium shows is what the database
holds, less the Markdown syntax; while it streams (split over the reply's parts) and once stored, after a
reload. Never the word "undefined", never a lost word, never a page wider than the screen."""

from __future__ import annotations

import pytest
from sqlmodel import Session, col, select

from chatbot_app.storage.database import make_engine
from chatbot_app.storage.models import Message
from tests.e2e.live_app import LiveApp
from tests.e2e.markdown_corpus import CORPUS, page_text, without_markdown
from tests.e2e.test_chat_in_browser import send, wait_for_conversation_url, wait_for_replies
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer

pytestmark = pytest.mark.e2e

#: Records, while a reply streams, whether its bubble ever shows "undefined".
WATCH_FOR_UNDEFINED = """
() => {
  window.__sawUndefined = false;
  new MutationObserver(() => {
    const el = document.querySelector('[data-role=assistant][data-status=streaming] .chat-markdown');
    if (el && el.innerText.includes('undefined')) window.__sawUndefined = true;
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}
"""
REPLY_TEXTS = "Array.from(document.querySelectorAll('[data-role=assistant] .chat-markdown')).map(e => e.innerText)"


def stored_replies(app: LiveApp, conversation_id: str) -> list[str]:
    engine = make_engine(app.database_url)
    try:
        with Session(engine) as session:
            query = (
                select(Message.content)
                .where(Message.conversation_id == conversation_id, Message.role == "assistant")
                .order_by(col(Message.id))
            )
            return list(session.exec(query).all())
    finally:
        engine.dispose()


def assert_shown_whole(shown: list[str], stored: list[str]) -> None:
    assert len(shown) == len(stored) == len(CORPUS)
    for sample, on_page, in_database in zip(CORPUS, shown, stored, strict=True):
        assert in_database == sample.text, sample.name  # the database has the whole text
        assert "undefined" not in on_page, sample.name
        assert page_text(on_page) == without_markdown(in_database), sample.name


def test_every_awkward_output_renders_whole_while_streaming_and_once_stored(  # type: ignore[no-untyped-def]
    page, app: LiveApp, fake: FakeLLMServer
) -> None:
    page.evaluate(WATCH_FOR_UNDEFINED)
    for number, sample in enumerate(CORPUS, start=1):
        # Ten pieces a second: each lands in a frame (and a stream part) of its own.
        fake.enqueue_stream(Behaviour(chunks=list(sample.chunks), tokens_per_s=10 if len(sample.chunks) < 40 else 80))
        send(page, f"Sample {number}: {sample.name}")
        wait_for_replies(page, number)
    conversation_id = wait_for_conversation_url(page).rsplit("/", 1)[1]
    assert page.evaluate("window.__sawUndefined") is False

    stored = stored_replies(app, conversation_id)
    assert_shown_whole(page.evaluate(REPLY_TEXTS), stored)
    # Nothing widens the page (a very long line wraps or scrolls inside its own block).
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert page.evaluate("(e => e.scrollWidth <= e.clientWidth)(document.getElementById('message-scroller'))")

    page.reload()  # the stored messages, rendered from the database
    page.wait_for_function(f"document.querySelectorAll('[data-role=assistant]').length === {len(CORPUS)}")
    assert_shown_whole(page.evaluate(REPLY_TEXTS), stored)


def test_a_code_block_has_its_language_and_a_copy_button_that_confirms(  # type: ignore[no-untyped-def]
    page, fake: FakeLLMServer
) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    fake.enqueue_stream(Behaviour(text="Here: ```python\nprint('hi')\n``` and the end."))
    send(page, "Show me code")
    wait_for_replies(page, 1)
    block = page.locator("[data-role=assistant] .code-block")
    assert block.locator(".code-language").inner_text() == "python"
    assert "and the end." in page.locator("[data-role=assistant] .chat-markdown").inner_text()
    block.get_by_role("button", name="Copy code").click()
    page.wait_for_selector("[data-testid=copied]:has-text('Code copied')")
    assert page.evaluate("navigator.clipboard.readText()") == "print('hi')"
