"""Read aloud in Chromium: a reply's `.read-aloud-button` plays it through the page's `<audio data-testid=reply-audio>`,
streamed from the backend as the fake server synthesizes it piece by piece, in the voice the settings panel chose."""

from __future__ import annotations

import time

import pytest

from tests.e2e.accessibility import blocking_violations
from tests.e2e.test_chat_in_browser import send, wait_for_replies
from tests.e2e.test_models_and_settings import open_settings
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer

pytestmark = pytest.mark.e2e

AUDIO = "[data-testid=reply-audio]"
REPLY = (
    "## Three steps\n\nFirst, open the **settings**. Then choose a [voice](https://x.test/voices).\n\n"
    "```bash\necho hidden\n```\n\nLast, press the button and listen to the whole reply read aloud."
)
#: Every `playing` event on the page, with when it came (media events do not bubble: listened for on the way down).
WATCH_PLAYING = "document.addEventListener('playing', () => { window.playingAt = performance.now() }, true)"


def a_reply(page, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    fake.enqueue_stream(Behaviour(text=REPLY))
    send(page, "How do I listen to a reply?")
    wait_for_replies(page, 1)


def test_a_reply_read_aloud_plays_in_the_chosen_voice(page, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    open_settings(page)
    page.wait_for_selector("#voice-select option[value=hannah]", state="attached")
    page.select_option("#voice-select", "hannah")
    page.click("#apply-settings")
    page.wait_for_selector("#settings-notice:has-text('Saved')")
    page.keyboard.press("Escape")
    a_reply(page, fake)
    page.evaluate(WATCH_PLAYING)

    clicked = time.monotonic()
    page.click(".read-aloud-button")
    page.wait_for_selector(AUDIO)
    page.wait_for_function(f"document.querySelector('{AUDIO}').currentTime > 0")
    started_s = time.monotonic() - clicked

    said = [r.body["input"] for r in fake.speech_requests()]
    assert {r.body["voice"] for r in fake.speech_requests()} == {"hannah"}
    assert said[0].startswith("Three steps. First, open the settings.")
    assert "A code block in Bash." in " ".join(said) and "echo" not in " ".join(said)
    assert page.evaluate("window.playingAt > 0")
    assert page.get_attribute(".read-aloud-button", "aria-label") == "Stop reading"
    print(f"\nfrom the click to the sound: {started_s:.2f} s ({len(said)} pieces)")
    # It plays to its end (every piece, one after the other), then the player goes.
    page.wait_for_selector(AUDIO, state="detached", timeout=30_000)
    assert page.get_attribute(".read-aloud-button", "aria-label") == "Read aloud"
    assert page.query_selector("#notice") is None  # it ended well: nothing to say


def test_stop_ends_the_reading_and_a_failure_says_so(page, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    fake.enqueue_stream(Behaviour(text="## A long one\n\n" + "It goes on for a while longer. " * 40))
    send(page, "Read me something long")
    wait_for_replies(page, 1)
    page.click(".read-aloud-button")
    page.wait_for_function(f"document.querySelector('{AUDIO}') && document.querySelector('{AUDIO}').currentTime > 0")
    assert blocking_violations(page) == []  # the player, its controls and Stop, in axe's eyes

    page.click("#stop-reading")
    page.wait_for_selector(AUDIO, state="detached")

    fake.enqueue_batch(Behaviour(status=400, error_message="no such voice"))
    page.click(".read-aloud-button")
    page.wait_for_selector("#notice:has-text('could not be read aloud')")
    assert page.query_selector(AUDIO) is None
