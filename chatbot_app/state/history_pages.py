"""The open conversation's history, split over a fixed set of page vars so that a change sends only what changed.

Reflex sends a changed var's whole value, so a history held in one list var was sent whole at every
change: a turn in a conversation with 1,000 messages loaded sent 1.4 MB frames. Here the history is a
run of *pages* (each a list var of consecutive messages) in the order `history_order` names them, and
the page renders them in that order. A change keeps every page whose messages are unchanged at the
start and at the end of the history, and writes only the part between them into free pages:

- an appended message is a page of its own, or joins the page before it while both stay small;
- older messages loaded on scrolling up fill new pages placed first in the order;
- a switch of versions rewrites the pages from the first message that differs.

So a frame carries the messages that changed and the order (a list of small integers), whatever the
length of the history. Only when every page is in use is the whole history laid out again.
"""

from __future__ import annotations

from typing import Any

import reflex as rx
from reflex.vars import Var

from chatbot_app.state.views import MessageView

#: Page vars the history is spread over: room for MAX_LOADED messages in full pages, and for many
#: turns' worth of small ones.
HISTORY_PAGES = 128
#: The most messages one page holds: at about 1.5 kB a message, a page stays well under 64 kB.
PAGE_SIZE = 25
#: A run of new messages joins the page before it while together they are no more than this (a question
#: and its reply share a page).
SMALL_PAGE = 2
#: When fewer pages than this are free, the smallest neighbouring pages are merged, a few at a time.
SPARE_PAGES = 8

#: The most messages the pages hold.
CAPACITY = HISTORY_PAGES * PAGE_SIZE

PAGE_NAMES = [f"history_page_{i}" for i in range(HISTORY_PAGES)]

# Reflex reads vars from class annotations, so the page vars are declared programmatically.
_PageVars: Any = type(
    "_PageVars",
    (rx.State,),
    {
        "__annotations__": dict.fromkeys(PAGE_NAMES, list[MessageView]),
        **{name: rx.field(default_factory=list) for name in PAGE_NAMES},
        "__module__": __name__,
    },
    mixin=True,
)


Pages = list[list[MessageView]]


def lay_out(pages: Pages, new: list[MessageView], free: int) -> tuple[int, int, Pages]:
    """Where `new` differs from the history the `pages` (in order) hold.

    Returns (head, tail, middle): the pages before `head` and from `tail` on stay as they are, and the
    pages in between give way to the pages of `middle`. `free` is how many pages are unused.
    """
    head, start = 0, 0
    while head < len(pages) and new[start : start + len(pages[head])] == pages[head]:
        start += len(pages[head])
        head += 1
    tail, end = len(pages), len(new)
    while tail > head and len(last := pages[tail - 1]) <= end - start and new[end - len(last) : end] == last:
        end -= len(last)
        tail -= 1
    changed = new[start:end]
    if changed and 0 < head == tail == len(pages) and len(pages[head - 1]) + len(changed) <= SMALL_PAGE:
        head -= 1  # a few messages appended after a small page: one page, not many tiny ones
        changed = pages[head] + changed
    middle = [changed[i : i + PAGE_SIZE] for i in range(0, len(changed), PAGE_SIZE)]
    if len(middle) > free + (tail - head):  # no room: everything again, in full pages
        return 0, len(pages), [new[i : i + PAGE_SIZE] for i in range(0, len(new), PAGE_SIZE)]
    return head, tail, middle


def _once_each(messages: list[MessageView]) -> list[MessageView]:
    """Each stored message the first time it comes; messages not stored yet (id 0) all."""
    seen: set[int] = set()
    kept = []
    for message in messages:
        if message.id and message.id in seen:
            continue
        seen.add(message.id)
        kept.append(message)
    return kept


class HistoryPages(_PageVars, mixin=True):
    """A state mixin: `history` reads the messages shown, `_show_history(messages)` changes them."""

    #: The pages that hold the history, in the order shown.
    history_order: list[int] = []
    #: The newest reply shown, which gets Regenerate/Retry.
    last_reply_id: int = 0
    #: The oldest message shown: loading earlier messages names it, so a repeated request loads nothing twice.
    first_shown_id: int = 0

    @classmethod
    def history_page(cls, index: Var[int]) -> Var[list[MessageView]]:
        """Page `index` of the history (a page var chosen in the browser by its number)."""
        first = getattr(cls, PAGE_NAMES[0])
        state_object, _, field = first._js_expr.rpartition(".")
        suffix = field.removeprefix(PAGE_NAMES[0])  # Reflex's suffix for a field's name in the browser
        expression = f'{state_object}[("history_page_" + {index._js_expr} + "{suffix}")]'
        return Var(_js_expr=expression, _var_type=list[MessageView], _var_data=first._get_all_var_data())

    @property
    def history(self) -> list[MessageView]:
        """The messages shown, oldest first."""
        return [message for index in self.history_order for message in getattr(self, PAGE_NAMES[index])]

    def _show_history(self, messages: list[MessageView]) -> None:
        """Show `messages`, writing (and so sending) only the pages that change.

        A message already shown under the same id is shown once (a reply's page and a reload may both
        bring it), and past the pages' room the oldest leave the view.
        """
        messages = _once_each(messages)[-CAPACITY:]
        if HISTORY_PAGES - len(self.history_order) < SPARE_PAGES:
            self._merge_small_pages()
        order = list(self.history_order)
        pages = [getattr(self, PAGE_NAMES[index]) for index in order]
        unused = sorted(set(range(HISTORY_PAGES)) - set(order))
        head, tail, middle = lay_out(pages, messages, len(unused))
        released = order[head:tail]
        available = released + unused
        placed = available[: len(middle)]
        for index, page in [*zip(placed, middle, strict=True), *((index, []) for index in released[len(placed) :])]:
            if getattr(self, PAGE_NAMES[index]) != page:
                setattr(self, PAGE_NAMES[index], page)
        new_order = order[:head] + placed + order[tail:]
        if new_order != order:
            self.history_order = new_order
        first = messages[0].id if messages else 0
        if first != self.first_shown_id:
            self.first_shown_id = first
        last_reply = next((m.id for m in reversed(messages) if m.role == "assistant"), 0)
        if last_reply != self.last_reply_id:
            self.last_reply_id = last_reply

    def _merge_small_pages(self) -> None:
        """Free pages by merging neighbours, the smallest pairs first (each merge sends one small page)."""
        order = list(self.history_order)
        for _ in range(SPARE_PAGES):
            sizes = [len(getattr(self, PAGE_NAMES[index])) for index in order]
            pairs = [
                (sizes[i] + sizes[i + 1], i) for i in range(len(order) - 1) if sizes[i] + sizes[i + 1] <= PAGE_SIZE
            ]
            if not pairs:
                break
            _, i = min(pairs)
            kept, merged = PAGE_NAMES[order[i]], PAGE_NAMES[order[i + 1]]
            setattr(self, kept, getattr(self, kept) + getattr(self, merged))
            setattr(self, merged, [])
            del order[i + 1]
        self.history_order = order
