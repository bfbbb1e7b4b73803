"""Choose which turns of a conversation fit the model's context budget."""

from __future__ import annotations

from collections.abc import Sequence

from chatbot_app.providers.base import ChatMessage

# Per-message framing overhead in chat templates, in tokens.
_MESSAGE_OVERHEAD = 4


def estimate_tokens(text: str) -> int:
    """A cheap, tokenizer-free estimate: about four characters per token for English."""
    return len(text) // 4 + _MESSAGE_OVERHEAD


def trim_to_budget(system_prompt: str, history: Sequence[ChatMessage], budget_tokens: int) -> list[ChatMessage]:
    """The system prompt plus the newest turns of `history` that fit `budget_tokens`.

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
    return [system, *kept]
