"""Every provider failure has a sentence a person understands, and nothing technical leaks."""

from __future__ import annotations

import re

import pytest

from chatbot_app.providers.base import ErrorKind
from chatbot_app.services.error_messages import describe_error

FALLBACK = describe_error("no_such_kind")
# Things that show a message came from a stack trace or an exception rather than from a person.
TECHNICAL = re.compile(r"Traceback|File \"|line \d+|Exception|Error\b|\w+Error|HTTP \d{3}|\bat 0x|<\w+|\{|\}|\n")


@pytest.mark.parametrize("kind", list(ErrorKind))
def test_every_error_kind_has_its_own_message(kind: ErrorKind) -> None:
    # Kinds are stored on messages as plain strings, so look them up by value as the page does.
    message = describe_error(kind.value)

    assert message != FALLBACK
    assert describe_error(kind) == message
    assert message.endswith(".")


def test_no_two_kinds_share_a_message() -> None:
    messages = [describe_error(kind.value) for kind in ErrorKind]

    assert len(set(messages)) == len(messages)


@pytest.mark.parametrize("kind", ["no_such_kind", "", None, "AUTH", " auth"])
def test_unknown_kinds_get_the_fallback(kind: str | None) -> None:
    assert describe_error(kind) == "Something went wrong while generating the reply. Try again."


@pytest.mark.parametrize("kind", [*ErrorKind, "unknown"])
def test_messages_contain_nothing_like_a_stack_trace(kind: str) -> None:
    message = describe_error(kind)

    assert not TECHNICAL.search(message), message
    assert len(message) < 200


def test_not_configured_says_which_setting_to_set() -> None:
    assert "GROQ_API_KEY" in describe_error(ErrorKind.NOT_CONFIGURED)


def test_a_rejected_key_names_the_provider_and_its_own_setting() -> None:
    openai = describe_error(ErrorKind.AUTH, "openai")
    groq = describe_error(ErrorKind.AUTH, "groq")

    assert "OpenAI-compatible provider" in openai and "OPENAI_API_KEY" in openai
    assert "GROQ_API_KEY" not in openai
    assert groq.startswith("Groq") and "GROQ_API_KEY" in groq
    assert "GROQ_API_KEY" not in describe_error(ErrorKind.AUTH)  # unknown provider: no guess at the wrong key


@pytest.mark.parametrize("provider", ["groq", "openai", "local"])
def test_provider_failures_name_the_provider(provider: str) -> None:
    name = {"groq": "Groq", "openai": "OpenAI-compatible provider", "local": "local model"}[provider]

    for kind in (ErrorKind.RATE_LIMIT, ErrorKind.TIMEOUT, ErrorKind.CONNECTION, ErrorKind.SERVER):
        assert name in describe_error(kind, provider)
