"""Choosing models and settings in the browser, and the offline local model as the default."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import TEST_API_KEY
from tests.e2e.live_app import LiveApp
from tests.e2e.test_chat_in_browser import send, wait_for_replies
from tests.fakes.fake_llm_server import DEFAULT_MODELS, FakeLLMServer

pytestmark = pytest.mark.e2e


def model_options(page) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    page.wait_for_function("document.querySelectorAll('#model-select option').length > 0")
    return page.eval_on_selector_all("#model-select option", "els => els.map(e => [e.parentElement.label, e.value])")


def open_settings(page) -> None:  # type: ignore[no-untyped-def]
    page.click("#settings-button")
    page.wait_for_selector("#apply-settings")


def test_model_select_lists_groq_models_and_the_chosen_one_is_requested(page, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    options = model_options(page)
    assert [value for label, value in options if label == "Groq"] == [f"groq:{m}" for m in sorted(DEFAULT_MODELS)]

    page.select_option("#model-select", "groq:fake-small")
    page.wait_for_function("document.querySelector('#model-select').value === 'groq:fake-small'")
    send(page, "Which model are you?")
    wait_for_replies(page, 1)

    assert fake.streamed_requests()[-1].body["model"] == "fake-small"
    assert "fake-small" in page.query_selector_all("[data-role=assistant]")[-1].inner_text()


def test_settings_reach_the_provider_and_stay_with_the_conversation(page, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    open_settings(page)
    page.fill("#max-tokens-input", "321")
    page.fill("#system-prompt-input", "You answer like a pirate.")
    page.click("#apply-settings")
    page.wait_for_selector("#settings-notice:has-text('Saved')")
    page.keyboard.press("Escape")

    send(page, "Ahoy?")
    wait_for_replies(page, 1)
    body = fake.streamed_requests()[-1].body
    assert body["max_tokens"] == 321
    assert body["messages"][0] == {"role": "system", "content": "You answer like a pirate."}

    page.reload()
    open_settings(page)
    assert page.input_value("#max-tokens-input") == "321"
    assert page.input_value("#system-prompt-input") == "You answer like a pirate."


def test_out_of_range_max_tokens_is_refused_and_changes_nothing(page, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    open_settings(page)
    before = page.input_value("#max-tokens-input")
    page.fill("#max-tokens-input", "999999")
    page.click("#apply-settings")
    page.wait_for_selector("#settings-notice:has-text('Max tokens must be')")
    page.keyboard.press("Escape")

    send(page, "Still fine?")
    wait_for_replies(page, 1)
    assert fake.streamed_requests()[-1].body["max_tokens"] == int(before)


@pytest.fixture
def local_only(app: LiveApp, fake_llm: FakeLLMServer) -> Iterator[LiveApp]:
    """The backend with no provider keys at all: the embedded model must answer."""
    app.backend.restart(GROQ_API_KEY=None, GROQ_BASE_URL=None, CHATBOT_MODEL=None)
    yield app
    app.backend.restart(GROQ_API_KEY=TEST_API_KEY, GROQ_BASE_URL=fake_llm.base_url, CHATBOT_MODEL="fake-large")


def test_with_no_keys_the_local_model_answers(local_only: LiveApp, browser) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(local_only.frontend_url)
    assert [label for label, _ in model_options(page)] == ["Local (offline)"]

    send(page, "Say hello.")
    wait_for_replies(page, 1)
    reply = page.query_selector_all("[data-role=assistant]")[-1]
    assert reply.get_attribute("data-status") == "complete"
    assert "SmolLM2" in reply.inner_text()  # the details line names the model
    context.close()
