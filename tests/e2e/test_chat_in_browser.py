"""What a person sees: streaming, memory, reload, restart, safe rendering, and no leaked key."""

from __future__ import annotations

import re

import pytest

from tests.conftest import TEST_API_KEY
from tests.e2e.live_app import LiveApp
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer

pytestmark = pytest.mark.e2e

# Test-side instrumentation: record every distinct length the streaming reply's text takes.
RECORD_REPLY_GROWTH = """
() => {
  window.__replyLengths = [];
  const seen = () => {
    const el = document.querySelector('[data-role=assistant][data-status=streaming]');
    const n = el ? el.innerText.trim().length : 0;
    const last = window.__replyLengths[window.__replyLengths.length - 1];
    if (n > 0 && n !== last) window.__replyLengths.push(n);
  };
  new MutationObserver(seen).observe(document.body, {subtree: true, childList: true, characterData: true});
}
"""


def send(page, text: str) -> None:  # type: ignore[no-untyped-def]
    page.fill("#chat-input", text)
    page.keyboard.press("Enter")


def wait_for_replies(page, count: int) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function(
        f"document.querySelectorAll('[data-role=assistant][data-status=complete]').length >= {count}"
    )


def wait_for_conversation_url(page) -> str:  # type: ignore[no-untyped-def]
    """After the first message the page moves to the new conversation's own URL."""
    page.wait_for_url(re.compile(r"/c/[0-9a-f]{32}$"), wait_until="commit")
    return page.url


def message_texts(page) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return [(el.get_attribute("data-role"), el.inner_text()) for el in page.query_selector_all("[data-testid=message]")]


def test_reply_streams_remembers_and_survives_reload(page, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    fake.enqueue_stream(Behaviour(text="Nice to meet you, Alice.", tokens=80, tokens_per_s=100))
    page.evaluate(RECORD_REPLY_GROWTH)

    send(page, "My name is Alice.")
    wait_for_replies(page, 1)
    lengths = page.evaluate("window.__replyLengths")
    assert len(lengths) > 1, f"the reply should grow in several steps, saw lengths {lengths}"
    assert lengths == sorted(lengths)

    send(page, "What is my name?")
    wait_for_replies(page, 2)
    assert "Alice" in message_texts(page)[-1][1]
    wait_for_conversation_url(page)

    page.reload()
    page.wait_for_function("document.querySelectorAll('[data-testid=message]').length === 4")
    roles = [role for role, _ in message_texts(page)]
    assert roles == ["user", "assistant", "user", "assistant"]
    assert "Alice" in message_texts(page)[3][1]


def test_conversation_survives_a_server_restart(page, app: LiveApp, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    send(page, "Remember the word pineapple.")
    wait_for_replies(page, 1)
    url = wait_for_conversation_url(page)

    app.backend.restart()
    page.goto(url)

    page.wait_for_function("document.querySelectorAll('[data-testid=message]').length === 2")
    assert "pineapple" in message_texts(page)[0][1]


def test_new_chat_button_starts_an_empty_conversation(page, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    send(page, "First conversation")
    wait_for_replies(page, 1)
    first_url = wait_for_conversation_url(page)

    page.click("#sidebar-new-chat")  # the header's own shows on phones only
    page.wait_for_url(re.compile(r"/$"), wait_until="commit")
    page.wait_for_function("document.querySelectorAll('[data-testid=message]').length === 0")
    send(page, "Second conversation")
    wait_for_replies(page, 1)
    assert wait_for_conversation_url(page) != first_url
    assert message_texts(page)[0] == ("user", "Second conversation")


def test_the_first_message_keeps_the_page_mounted_and_the_composer_with_it(page, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    # The move from / to /c/<id> once used to remount the page, so a message typed in that moment was lost.
    page.evaluate("document.querySelector('#chat-input').dataset.mark = 'the same box'")
    send(page, "first question")
    wait_for_conversation_url(page)
    wait_for_replies(page, 1)
    assert page.evaluate("document.querySelector('#chat-input').dataset.mark") == "the same box"

    send(page, "second question")
    wait_for_replies(page, 2)
    assert [text.split("\n")[0] for role, text in message_texts(page) if role == "user"] == [
        "first question",
        "second question",
    ]


@pytest.mark.parametrize("path", ["/nowhere", "/c", "/c/", "/no/such/page"])
def test_an_address_that_is_no_page_shows_not_found_with_the_way_to_a_new_chat(page, app: LiveApp, path: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(app.frontend_url + path)
    page.wait_for_selector("#not-found:has-text('There is no page at that address')")
    assert page.url.rstrip("/").endswith(path.rstrip("/"))  # the address stays, as on any "not found" page
    assert page.query_selector_all("[data-testid=message]") == []
    page.click("#not-found-home")
    page.wait_for_url(re.compile(r"/$"), wait_until="commit")
    page.wait_for_selector("#chat-input")
    assert page.locator("#not-found").count() == 0


def test_markdown_renders_without_raw_html_and_code_has_copy_button(page, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    fake.enqueue_stream(
        Behaviour(
            text=(
                '**bold** <img src=x onerror="window.__xss=1"> <script>window.__xss=2</script>\n\n'
                "```python\nprint('hi')\n```\n"
            )
        )
    )
    send(page, '<b>user html</b> <img src=y onerror="window.__xss=3">')
    wait_for_replies(page, 1)

    reply = page.query_selector_all("[data-role=assistant]")[-1]
    assert reply.query_selector("strong").inner_text() == "bold"
    assert page.query_selector("[data-testid=message] img") is None
    assert page.query_selector("[data-testid=message] script") is None
    assert page.evaluate("window.__xss") is None
    assert "<img src=x" in reply.inner_text()  # shown as text, not markup
    assert reply.query_selector("button[aria-label='Copy code']") is not None
    assert "print" in reply.inner_text()
    assert "<b>user html</b>" in page.query_selector("[data-role=user]").inner_text()


def test_blank_message_gets_a_clear_notice_and_sends_nothing(page, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    page.fill("#chat-input", "   ")
    assert page.is_disabled("#send-button")  # nothing to send
    page.keyboard.press("Enter")  # Enter still asks: the server says why nothing went
    page.wait_for_selector("#notice")
    assert "Type a message" in page.inner_text("#notice")
    assert page.query_selector_all("[data-testid=message]") == []
    assert fake.chat_requests() == []


def test_api_key_never_reaches_the_browser(page, app: LiveApp, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    frames: list[str] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(str(payload))))
    page.reload()
    page.wait_for_selector("#chat-input")
    send(page, "Tell me a secret")
    wait_for_replies(page, 1)

    assert frames, "expected websocket traffic to scan"
    assert not [f for f in frames if TEST_API_KEY in f]
    assert TEST_API_KEY not in page.content()
    leaked = [p for p in app.site_dir.rglob("*") if p.is_file() and TEST_API_KEY.encode() in p.read_bytes()]
    assert leaked == []
    assert TEST_API_KEY not in app.backend.log_text()
