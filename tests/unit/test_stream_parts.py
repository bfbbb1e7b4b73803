"""The streamed reply spread over part vars: exact text, few bytes per frame, bounded growth."""

from __future__ import annotations

import pytest
import reflex as rx

from chatbot_app.state.stream_parts import PART_NAMES, StreamParts


class Streaming(StreamParts, rx.State):
    """A bare state with the mixin, as ReplyState uses it."""


def stream(tokens: int, per_frame: int, parts: int = len(PART_NAMES)) -> tuple[Streaming, str, int]:
    """Show a reply frame by frame; return the state, the text, and the part bytes marked to send."""
    state = Streaming(_reflex_internal_init=True)
    state._stream_parts = parts
    text, sent = "", 0
    for start in range(0, tokens, per_frame):
        text += "".join(f" tok{i}" for i in range(start, min(start + per_frame, tokens)))
        state._show_stream(text)
        sent += sum(len(getattr(state, name)) for name in state.dirty_vars if name in PART_NAMES)
        state.dirty_vars.clear()
    return state, text, sent


def joined(state: Streaming) -> str:
    return "".join(getattr(state, name) for name in PART_NAMES)


@pytest.mark.parametrize(("tokens", "per_frame"), [(1, 1), (4_000, 20), (4_000, 1), (30_000, 20)])
def test_the_parts_always_spell_the_text(tokens: int, per_frame: int) -> None:
    state, text, _ = stream(tokens, per_frame)

    assert joined(state) == text == state._stream_text


def test_a_frame_sends_a_small_multiple_of_the_reply_not_the_whole_text_each_time() -> None:
    _, text, sent = stream(4_000, 20)
    _, _, naive = stream(4_000, 20, parts=1)

    assert sent < 3 * len(text)
    assert naive > 50 * len(text)  # one var re-sent whole in each of the 200 frames


def test_a_replaced_text_starts_over_and_clear_empties_every_part() -> None:
    state, _, _ = stream(500, 10)
    state._show_stream("something else")
    assert joined(state) == "something else"

    state._clear_stream()
    assert joined(state) == "" and state._stream_text == ""
