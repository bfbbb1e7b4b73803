"""trim_to_budget: which turns of a conversation are sent to the model."""

from __future__ import annotations

from chatbot_app.providers.base import ChatMessage, Role, ToolCall
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


# --- earlier replies' tool calls ------------------------------------------------------------------------


def with_calls(name: str, tool: str, answer_chars: int) -> ChatMessage:
    """An assistant reply that called `tool` once before answering, its answer `answer_chars` long."""
    call = ToolCall(f"call-{name}", tool, '{"q": 1}')
    exchange = (
        ChatMessage("assistant", "", tool_calls=(call,)),
        ChatMessage("tool", "r" * answer_chars, tool_call_id=call.id),
    )
    return ChatMessage("assistant", f"{name:<40}", earlier_tools=exchange)


def exchange_cost(reply: ChatMessage) -> int:
    return sum(
        estimate_tokens(m.content) + sum(len(c.arguments) for c in m.tool_calls) // 4 for m in reply.earlier_tools
    )


def test_an_earlier_replys_calls_go_just_before_it_when_its_tools_are_offered() -> None:
    reply = with_calls("a1", "lookup", 40)
    history = [msg("user", "u1"), reply, msg("user", "u2")]

    context = trim_to_budget(SYSTEM, history, budget_tokens=10_000, offered={"lookup"})

    assert context[1:] == [history[0], *reply.earlier_tools, reply, history[2]]
    assert trim_to_budget(SYSTEM, history, budget_tokens=10_000)[1:] == history  # no tools offered: no calls


def test_tool_calls_are_dropped_before_any_message_and_the_oldest_first() -> None:
    old, new = with_calls("a1", "lookup", 400), with_calls("a2", "lookup", 400)
    history = [msg("user", "u1"), old, msg("user", "u2"), new, msg("user", "u3")]
    messages_only = SYSTEM_COST + 5 * COST

    just_the_newest = trim_to_budget(SYSTEM, history, messages_only + exchange_cost(new), offered={"lookup"})
    no_calls = trim_to_budget(SYSTEM, history, messages_only + exchange_cost(new) - 1, offered={"lookup"})

    assert just_the_newest[1:] == [*history[:3], *new.earlier_tools, *history[3:]]
    assert no_calls[1:] == history  # every message still there


def test_a_call_of_a_tool_not_offered_now_stays_out_and_older_ones_still_go() -> None:
    old, new = with_calls("a1", "lookup", 40), with_calls("a2", "gone", 40)
    history = [msg("user", "u1"), old, msg("user", "u2"), new, msg("user", "u3")]

    context = trim_to_budget(SYSTEM, history, budget_tokens=10_000, offered={"lookup"})

    assert context[1:] == [history[0], *old.earlier_tools, *history[1:]]
