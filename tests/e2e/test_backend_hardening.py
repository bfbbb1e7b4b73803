"""What the production backend sends and logs: security headers, structured logs without secrets, limits."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest

from tests.conftest import TEST_API_KEY
from tests.e2e.live_app import LiveApp
from tests.e2e.test_chat_in_browser import send, wait_for_replies
from tests.fakes.fake_llm_server import FakeLLMServer

pytestmark = pytest.mark.e2e


def test_backend_responses_carry_security_headers(app: LiveApp) -> None:
    with urllib.request.urlopen(f"{app.backend.url}/ping") as response:
        headers = {k.lower(): v for k, v in response.headers.items()}

    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "object-src 'none'" in headers["content-security-policy"]


def test_logs_are_structured_and_hold_no_key_or_message_text(page, app: LiveApp, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    send(page, "my very private words")
    wait_for_replies(page, 1)

    records = []
    for line in app.backend.log_text().splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    calls = [r for r in records if r["event"] == "provider_call"]
    assert calls and {"request_id", "provider", "model", "first_token_ms", "duration_ms", "completion_tokens"} <= set(
        calls[-1]
    )
    assert any(r["event"] == "startup" for r in records)
    log_text = app.backend.log_text()
    assert TEST_API_KEY not in log_text
    assert "my very private words" not in log_text


@pytest.fixture
def strict_limit(app: LiveApp) -> Iterator[LiveApp]:
    app.backend.restart(CHATBOT_RATE_LIMIT_PER_MINUTE="3")
    yield app
    app.backend.restart(CHATBOT_RATE_LIMIT_PER_MINUTE=None)


def test_sending_too_fast_gets_a_clear_message_and_sends_nothing(
    strict_limit: LiveApp, browser, fake: FakeLLMServer
) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context()
    page = context.new_page()
    page.goto(strict_limit.frontend_url)
    page.wait_for_selector("#chat-input")
    # Three provider calls a minute: the first reply, the new conversation's title, the second reply.
    # The title's call is awaited before the second message, so the order of the three is fixed.
    send(page, "message 1")
    wait_for_replies(page, 1)
    fake.wait_for_chat_requests(2)
    send(page, "message 2")
    wait_for_replies(page, 2)
    fake.wait_for_chat_requests(3)
    requests = len(fake.chat_requests())

    send(page, "message 3")
    page.wait_for_selector("#notice:has-text('the limit is 3 a minute')")
    assert len(fake.chat_requests()) == requests
    assert len(page.query_selector_all("[data-role=user]")) == 2
    assert page.input_value("#chat-input") == "message 3"  # the refused message stays in the box
    context.close()
