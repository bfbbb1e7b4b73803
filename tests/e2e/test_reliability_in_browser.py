"""Stop, retry, regenerate, edit, faults in human words, reloads and restarts, and unsafe links."""

from __future__ import annotations

import signal

import pytest

from tests.e2e.live_app import LiveApp
from tests.e2e.test_chat_in_browser import message_texts, send, wait_for_conversation_url, wait_for_replies
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer

pytestmark = pytest.mark.e2e

SLOW = Behaviour(text="", tokens=400, tokens_per_s=40)  # ten seconds of reply


def wait_for_streaming_text(page) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function(
        "document.querySelector('[data-role=assistant][data-status=streaming]')?.innerText.trim().length > 20"
    )


def last_reply(page):  # type: ignore[no-untyped-def]
    return page.query_selector_all("[data-role=assistant]")[-1]


def test_stop_closes_the_upstream_and_keeps_the_partial_text(page, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    fake.enqueue_stream(SLOW)
    send(page, "Tell me a long story")
    wait_for_streaming_text(page)

    page.click("#stop-button")
    page.wait_for_selector("[data-role=assistant][data-status=stopped]")

    assert fake.abort_seen.wait(10), "the upstream request should be closed"
    kept = last_reply(page).inner_text().split("\n")[0].split()
    assert 3 < len(kept) < 400  # some of the reply was kept, and it stopped well before the end
    page.reload()
    page.wait_for_selector("[data-role=assistant][data-status=stopped]")


def test_a_rate_limit_shows_a_retrying_hint_then_the_reply(page, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    fake.enqueue_stream(Behaviour(status=429, retry_after="3"), Behaviour(text="Made it after waiting."))
    send(page, "Hello?")

    page.wait_for_selector("#retry-notice:has-text('retrying in 3 s (try 2 of 3)')")
    wait_for_replies(page, 1)
    assert "Made it after waiting." in last_reply(page).inner_text()


@pytest.mark.parametrize(
    ("behaviour", "words"),
    [
        (Behaviour(status=401), "rejected the API key"),
        (Behaviour(status=404, error_message="model_decommissioned"), "not available"),
        (Behaviour(status=400, error_message="context_length_exceeded"), "too long for the model"),
        (Behaviour(status=400, error_message="content_filter"), "declined"),
    ],
)
def test_provider_faults_are_said_in_human_words(page, fake: FakeLLMServer, behaviour: Behaviour, words: str) -> None:  # type: ignore[no-untyped-def]
    fake.enqueue_stream(behaviour)
    send(page, "Hello?")

    page.wait_for_selector("[data-role=assistant][data-status=error]")
    text = last_reply(page).inner_text()
    assert words in text
    assert "Traceback" not in text and "HTTP" not in text


def test_a_cut_mid_stream_keeps_the_text_and_retry_completes_it(page, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    fake.enqueue_stream(Behaviour(text="", tokens=60, cut_after_tokens=20), Behaviour(text="The complete answer."))
    send(page, "Hello?")
    page.wait_for_selector("[data-role=assistant][data-status=error]")
    assert "alpha" in last_reply(page).inner_text()

    page.click("[aria-label=Retry]")
    wait_for_replies(page, 1)
    assert [role for role, _ in message_texts(page)] == ["user", "assistant"]
    assert "The complete answer." in last_reply(page).inner_text()


def test_regenerate_replaces_the_last_reply(page, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    fake.enqueue_stream(Behaviour(text="First answer."), Behaviour(text="Second answer."))
    fake.enqueue_batch(Behaviour(status=401))  # the title request fails: no effect on the replies
    send(page, "Question")
    wait_for_replies(page, 1)

    page.click("[aria-label=Regenerate]")
    page.wait_for_function("document.body.innerText.includes('Second answer.')")
    assert [text.split("\n")[0] for _, text in message_texts(page)] == ["Question", "Second answer."]


def test_editing_a_message_truncates_what_follows_and_answers_again(page, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    fake.enqueue_stream(Behaviour(text="One."), Behaviour(text="Two."), Behaviour(text="Edited answer."))
    fake.enqueue_batch(Behaviour(status=401))  # the title request
    send(page, "first question")
    wait_for_replies(page, 1)
    send(page, "second question")
    wait_for_replies(page, 2)

    page.locator(".edit-button").first.click()  # a locator: the list may re-render before the click
    page.fill("#edit-input", "a better first question")
    page.click("#edit-save")
    page.wait_for_function("document.body.innerText.includes('Edited answer.')")

    assert [text.split("\n")[0] for _, text in message_texts(page)] == ["a better first question", "Edited answer."]
    assert fake.streamed_requests()[-1].body["messages"][-1]["content"] == "a better first question"


def test_links_and_images_in_model_output_cannot_run_script_or_load(page, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    fake.enqueue_stream(
        Behaviour(
            text=(
                "[js](javascript:window.__xss=1) [data](data:text/html,<script>window.__xss=2</script>) "
                "[ok](https://example.com) ![pixel](http://127.0.0.1:9/track.png)"
            )
        )
    )
    send(page, "links please")
    wait_for_replies(page, 1)

    hrefs = last_reply(page).eval_on_selector_all("a", "els => els.map(e => e.getAttribute('href') || '')")
    assert not [h for h in hrefs if h.lower().startswith(("javascript:", "data:"))]
    assert "https://example.com" in hrefs
    assert last_reply(page).query_selector("img") is None
    assert page.evaluate("window.__xss") is None


def test_a_reload_mid_reply_shows_it_continuing_and_complete(page, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    fake.enqueue_stream(Behaviour(text="", tokens=160, tokens_per_s=40))
    send(page, "Stream for a while")
    wait_for_conversation_url(page)
    wait_for_streaming_text(page)

    page.reload()
    wait_for_replies(page, 1)
    assert len(last_reply(page).inner_text().split()) >= 160


def test_a_second_tab_follows_a_reply_that_is_still_streaming(page, browser, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    fake.enqueue_stream(Behaviour(text="", tokens=200, tokens_per_s=40))
    send(page, "Stream for a while")
    url = wait_for_conversation_url(page)
    wait_for_streaming_text(page)
    identity = page.evaluate("localStorage.getItem('chatbot_identity')")

    # The same browser identity in a new tab (new Reflex session): it reads the reply as it is written.
    other = page.context.new_page()
    other.goto(url)
    other.wait_for_selector("[data-role=assistant][data-status=streaming]")
    assert other.evaluate("localStorage.getItem('chatbot_identity')") == identity
    wait_for_replies(other, 1)
    assert len(last_reply(other).inner_text().split()) >= 200
    other.close()


def test_a_backend_killed_mid_reply_leaves_it_interrupted_with_its_text(  # type: ignore[no-untyped-def]
    page, app: LiveApp, fake: FakeLLMServer
) -> None:
    fake.enqueue_stream(Behaviour(text="", tokens=2000, tokens_per_s=40))
    send(page, "A very long answer please")
    url = wait_for_conversation_url(page)
    page.wait_for_function(  # past the first checkpoint (every 2 s), so some text is stored
        "document.querySelector('[data-role=assistant][data-status=streaming]')?.innerText.split(' ').length > 120"
    )

    app.backend.stop(signal.SIGKILL)
    app.backend.start()
    page.goto(url)

    page.wait_for_selector("[data-role=assistant][data-status=interrupted]", timeout=30_000)
    assert "alpha" in last_reply(page).inner_text()
    assert [role for role, _ in message_texts(page)] == ["user", "assistant"]
