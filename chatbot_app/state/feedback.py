"""Small confirmations of what the user just did in the browser ("Copied").

The clipboard is written in the browser; this state only counts the copies, so the page can show a
confirmation that fades by itself (a CSS animation restarted by a new key: no timer on the server).
"""

from __future__ import annotations

from typing import Any

import reflex as rx

#: What can have been copied, and how the confirmation names it.
COPIED_LABELS = {"Message": "Message copied", "Code": "Code copied", "Link": "Link copied"}


class CopyFeedbackState(rx.State):
    #: How many copies this tab has confirmed (a new number restarts the confirmation's fade).
    copies: int = 0
    copied_label: str = ""

    @rx.event
    def copied(self, what: Any) -> None:
        """The browser has just copied a message, a code block or a link."""
        if isinstance(what, str) and what in COPIED_LABELS:
            self.copies += 1
            self.copied_label = COPIED_LABELS[what]
