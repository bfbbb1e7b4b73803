"""What the page shows of a message: the details line and the per-message view."""

from __future__ import annotations

import pytest

from chatbot_app.services.error_messages import describe_error
from chatbot_app.services.reply_log import Finished
from chatbot_app.state.views import MessageView, reply_details, view_of_message, view_of_reply
from chatbot_app.storage.models import Message, MessageStatus

CONVERSATION = "ab" * 16


@pytest.mark.parametrize(
    ("model", "completion_tokens", "first_token_ms", "duration_ms", "expected"),
    [
        ("llama-x", 120, 100, 1100, "llama-x · 120 tokens · 120 tok/s · first token 100 ms"),
        ("llama-x", 50, 0, 500, "llama-x · 50 tokens · 100 tok/s · first token 0 ms"),
        ("llama-x", None, 95, None, "llama-x · first token 95 ms"),
        (None, 10, None, 1000, "10 tokens"),  # no first-token time: no rate can be computed
        ("llama-x", 10, 300, 300, "llama-x · 10 tokens · first token 300 ms"),  # no time after the first token
        ("llama-x", 0, None, None, "llama-x"),
        ("llama-x", None, None, None, "llama-x"),
        (None, None, None, None, ""),
    ],
)
def test_reply_details(
    model: str | None, completion_tokens: int | None, first_token_ms: int | None, duration_ms: int | None, expected: str
) -> None:
    assert reply_details(None, model, completion_tokens, first_token_ms, duration_ms) == expected


def test_rate_is_rounded_to_a_whole_number() -> None:
    assert reply_details(None, None, 100, 0, 3000) == "100 tokens · 33 tok/s · first token 0 ms"


def test_the_provider_comes_first() -> None:
    assert reply_details("groq", "llama-x", 10, None, None) == "groq · llama-x · 10 tokens"


def test_user_message_view_has_no_details_and_no_error() -> None:
    message = Message(id=7, conversation_id=CONVERSATION, role="user", content="Hello?", model="ignored")

    assert view_of_message(message) == MessageView(id=7, role="user", content="Hello?", status="complete")


def test_assistant_message_view_carries_its_details() -> None:
    message = Message(
        id=8,
        conversation_id=CONVERSATION,
        role="assistant",
        content="**Hi**",
        model="fake-large",
        completion_tokens=120,
        first_token_ms=100,
        duration_ms=1100,
    )

    view = view_of_message(message)

    assert view == MessageView(
        id=8,
        role="assistant",
        content="**Hi**",
        status="complete",
        error="",
        details="fake-large · 120 tokens · 120 tok/s · first token 100 ms",
    )


def test_error_message_view_says_what_went_wrong_in_words() -> None:
    message = Message(
        id=9,
        conversation_id=CONVERSATION,
        role="assistant",
        content="partial answ",
        status=MessageStatus.ERROR,
        error_kind="rate_limit",
        model="fake-large",
    )

    view = view_of_message(message)

    assert view.status == "error"
    assert view.error == describe_error("rate_limit")
    assert "rate-limiting" in view.error
    assert view.content == "partial answ"  # the partial text stays visible


def test_error_kind_is_not_shown_unless_the_status_is_error() -> None:
    message = Message(
        id=10, conversation_id=CONVERSATION, role="assistant", content="done", status="stopped", error_kind="server"
    )

    assert view_of_message(message).error == ""


def test_unsaved_message_gets_id_zero() -> None:
    assert view_of_message(Message(conversation_id=CONVERSATION, role="user", content="x")).id == 0


def test_view_of_a_failed_reply() -> None:
    finished = Finished(status=MessageStatus.ERROR, error_kind="connection", model="m")

    view = view_of_reply(42, "half", finished)

    assert view == MessageView(
        id=42, role="assistant", content="half", status="error", error=describe_error("connection"), details="m"
    )


def test_view_of_a_complete_reply() -> None:
    finished = Finished(
        status=MessageStatus.COMPLETE,
        model="m",
        completion_tokens=20,
        first_token_ms=0,
        duration_ms=1000,
    )

    view = view_of_reply(43, "all", finished)

    assert (view.status, view.error, view.details) == ("complete", "", "m · 20 tokens · 20 tok/s · first token 0 ms")
