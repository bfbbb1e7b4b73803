"""trim_to_budget: which turns of a conversation are sent to the model."""

from __future__ import annotations

from chatbot_app.providers.base import ChatMessage, Role
from chatbot_app.services.context import estimate_tokens, trim_to_budget

SYSTEM = "Be brief."


def msg(role: Role, name: str) -> ChatMessage:
    """A message whose estimated cost is the same for every `name` of the same length."""
    return ChatMessage(role, f"{name:<40}")


COST = estimate_tokens(" " * 40)
SYSTEM_COST = estimate_tokens(SYSTEM)


def test_system_prompt_comes_first_and_only_once() -> None:
    history = [msg("user", "u1"), msg("assistant", "a1"), msg("user", "u2")]

    context = trim_to_budget(SYSTEM, history, budget_tokens=10_000)

    assert context[0] == ChatMessage("system", SYSTEM)
    assert [m.role for m in context].count("system") == 1
    assert context[1:] == history


def test_keeps_the_newest_turns_that_fit() -> None:
    history = [msg("user", "u1"), msg("assistant", "a1"), msg("user", "u2"), msg("assistant", "a2"), msg("user", "u3")]

    context = trim_to_budget(SYSTEM, history, budget_tokens=SYSTEM_COST + 3 * COST)

    assert context[1:] == history[-3:]


def test_keeps_a_contiguous_run_and_never_skips_back_to_older_small_turns() -> None:
    small_old = ChatMessage("user", "hi")
    big = ChatMessage("assistant", "x" * 4000)
    history = [small_old, big, msg("user", "u2")]

    context = trim_to_budget(SYSTEM, history, budget_tokens=SYSTEM_COST + COST + estimate_tokens("hi"))

    assert context[1:] == [history[-1]]


def test_always_keeps_the_last_message_even_when_it_alone_is_over_budget() -> None:
    huge = ChatMessage("user", "word " * 5000)
    history = [msg("user", "u1"), msg("assistant", "a1"), huge]

    context = trim_to_budget(SYSTEM, history, budget_tokens=50)

    assert context == [ChatMessage("system", SYSTEM), huge]


def test_drops_an_assistant_reply_left_leading_by_the_cut() -> None:
    history = [msg("user", "u1"), msg("assistant", "a1"), msg("user", "u2"), msg("assistant", "a2"), msg("user", "u3")]

    # Four newest fit, which would start the context with the orphaned reply a1.
    context = trim_to_budget(SYSTEM, history, budget_tokens=SYSTEM_COST + 4 * COST)

    assert context[1:] == history[2:]
    assert context[1].role == "user"
