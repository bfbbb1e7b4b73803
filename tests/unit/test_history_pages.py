"""The history spread over page vars: always the messages shown, and a change sends only what changed."""

from __future__ import annotations

import reflex as rx
from hypothesis import given, settings
from hypothesis import strategies as st

from chatbot_app.state.history_pages import (
    HISTORY_PAGES,
    PAGE_NAMES,
    PAGE_SIZE,
    SMALL_PAGE,
    SPARE_PAGES,
    HistoryPages,
)
from chatbot_app.state.views import MessageView


class History(HistoryPages, rx.State):
    """A bare state with the mixin, as ConversationState uses it."""


def views(ids: range | list[int]) -> list[MessageView]:
    return [MessageView(id=i, role=("user", "assistant")[i % 2], content=f"message {i}") for i in ids]


def sent(state: History) -> int:
    """Messages marked to send since the last call (the pages written); clears the marks."""
    count = sum(len(getattr(state, name)) for name in state.dirty_vars if name in PAGE_NAMES)
    state.dirty_vars.clear()
    return count


def new_state() -> History:
    return History(_reflex_internal_init=True)


def test_opening_appending_and_loading_earlier_send_only_the_new_messages() -> None:
    state = new_state()
    state._show_history(views(range(950, 1000)))
    assert sent(state) == 50
    assert state.history == views(range(950, 1000))

    state._show_history([*state.history, *views([1000])])  # a turn: the question...
    assert sent(state) == 1
    state._show_history([*state.history, *views([1001])])  # ...and its reply, beside it in a small page
    assert sent(state) == 2
    assert state.last_reply_id == 1001

    for start in range(900, -50, -50):  # scrolling back to the first message
        state._show_history(views(range(start, start + 50)) + state.history)
        assert sent(state) == 50
    assert state.history == views(range(1002)) and state.first_shown_id == 0
    assert all(len(getattr(state, PAGE_NAMES[i])) <= PAGE_SIZE for i in state.history_order)

    state._show_history([*state.history, *views([1002])])  # a turn with everything loaded costs the same
    assert sent(state) <= SMALL_PAGE


def test_a_switch_of_versions_rewrites_only_the_pages_from_the_first_change() -> None:
    state = new_state()
    state._show_history(views(range(1000)))
    sent(state)
    state._show_history(views(range(990)) + views([2001, 2002]))  # message 990 has another version now

    assert state.history == views(range(990)) + views([2001, 2002])
    assert sent(state) <= PAGE_SIZE + 2


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["append", "prepend", "replace_tail", "replace_all", "clear"]), st.integers(1, 60)),
        max_size=40,
    )
)
def test_any_sequence_of_changes_shows_exactly_the_messages_given(changes: list[tuple[str, int]]) -> None:
    state, shown, next_id = new_state(), list[MessageView](), 10_000
    for change, count in changes:
        fresh = views(range(next_id, next_id + count))
        next_id += count
        if change == "append":
            shown = shown + fresh
        elif change == "prepend":
            shown = fresh + shown
        elif change == "replace_tail":
            shown = shown[: len(shown) // 2] + fresh
        elif change == "replace_all":
            shown = fresh
        else:
            shown = []
        state._show_history(shown)

        assert state.history == shown
        assert len(set(state.history_order)) == len(state.history_order) <= HISTORY_PAGES
        assert all(getattr(state, PAGE_NAMES[i]) for i in state.history_order)  # no empty page in the order
        unused = set(range(HISTORY_PAGES)) - set(state.history_order)
        assert not any(getattr(state, PAGE_NAMES[i]) for i in unused)  # and nothing left in a page not shown


def test_many_turns_in_a_full_history_merge_small_pages_a_few_at_a_time() -> None:
    state = new_state()
    state._show_history(views(range(2000)))
    sent(state)
    largest = 0
    for turn in range(300):  # far more turns than there are free pages
        for message in views([10_000 + 2 * turn, 10_001 + 2 * turn]):
            state._show_history([*state.history, message])
            largest = max(largest, sent(state))
    assert state.history == views(range(2000)) + views(range(10_000, 10_600))
    assert largest <= 4 * SMALL_PAGE * SPARE_PAGES  # never the whole history again


def test_a_message_given_twice_is_shown_once() -> None:
    state = new_state()
    state._show_history(views([1, 2]) + views([2]) + [MessageView(id=0, role="user", content="not stored yet")] * 2)

    assert [m.id for m in state.history] == [1, 2, 0, 0]
