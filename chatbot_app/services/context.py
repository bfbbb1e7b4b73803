"""Choose which turns of a conversation fit the model's context budget.

Messages come first: the newest turns that fit. Earlier replies' tool calls and their answers come
only with what budget is left, newest first, so they are dropped before any message is.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import replace

from chatbot_app.providers.base import ChatMessage

# Per-message framing overhead in chat templates, in tokens.
_MESSAGE_OVERHEAD = 4
#: About this many characters a token, for English.
CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    """A cheap, tokenizer-free estimate of one message's text."""
    return len(text) // CHARS_PER_TOKEN + _MESSAGE_OVERHEAD


def context_tokens(messages: Iterable[ChatMessage]) -> int:
    """The estimate for messages as sent: their text and the arguments of the tool calls they carry."""
    return sum(
        estimate_tokens(m.content) + sum(len(c.arguments) for c in m.tool_calls) // CHARS_PER_TOKEN for m in messages
    )


def trim_to_budget(
    system_prompt: str, history: Sequence[ChatMessage], budget_tokens: int, offered: Collection[str] = ()
) -> list[ChatMessage]:
    """The system prompt plus the newest turns of `history` that fit `budget_tokens`, then, in what is left,
    the calls of the kept replies to tools `offered` to this request (see _with_earlier_tools).

    The last message (the one being answered) is always kept, even if it alone is over budget:
    the provider then reports "context too long", which is clearer than a silent cut.
    """
    system = ChatMessage("system", system_prompt)
    remaining = budget_tokens - estimate_tokens(system_prompt)
    kept: list[ChatMessage] = []
    for message in reversed(history):
        cost = estimate_tokens(message.content)
        if kept and cost > remaining:
            break
        kept.append(message)
        remaining -= cost
    kept.reverse()
    # A context should not open with an orphaned assistant reply.
    while len(kept) > 1 and kept[0].role == "assistant":
        kept.pop(0)
    return [system, *_with_earlier_tools(kept, remaining, set(offered))]


def _with_earlier_tools(kept: list[ChatMessage], remaining: int, offered: set[str]) -> list[ChatMessage]:
    """`kept` with the calls of its newest replies ahead of them, while they fit `remaining` (an older reply's
    go first when they do not); a call of a tool this request is not offered stays out, with its answer."""
    sent: dict[int, tuple[ChatMessage, ...]] = {}
    for index in range(len(kept) - 1, -1, -1):
        if not (exchange := _offered_part(kept[index].earlier_tools, offered)):
            continue
        cost = context_tokens(exchange)
        if cost > remaining:
            break
        sent[index] = exchange
        remaining -= cost
    context: list[ChatMessage] = []
    for index, message in enumerate(kept):
        context += sent.get(index, ())
        context.append(message)
    return context


def _offered_part(exchange: tuple[ChatMessage, ...], offered: set[str]) -> tuple[ChatMessage, ...]:
    """The calls of `exchange` whose tools are offered, each with its answer (a round left empty goes)."""
    ids = {call.id for message in exchange for call in message.tool_calls if call.name in offered}
    part: list[ChatMessage] = []
    for message in exchange:
        if message.tool_calls:
            if calls := tuple(call for call in message.tool_calls if call.id in ids):
                part.append(replace(message, tool_calls=calls))
        elif message.tool_call_id in ids:
            part.append(message)
    return tuple(part)
