"""The root of the app's state: who this tab is and which conversation it shows.

Every other state hangs below this one as a sibling (conversation, reply, library, settings) and
reaches another through `get_state`, so dependencies run one way: children on this parent.
"""

from __future__ import annotations

import secrets

import reflex as rx

from chatbot_app.services.validation import is_identity


class SessionState(rx.State):
    # An anonymous, unguessable identity that owns this browser's conversations.
    identity: str = rx.LocalStorage("", name="chatbot_identity", sync=True)
    # The conversation this tab shows ("" for a new chat).
    conversation_id: str = ""
    # A message for the user about their last action, shown under the composer.
    notice: str = ""

    def owner_id(self) -> str:
        """The caller's identity, created on first use; the one place ownership comes from."""
        if not is_identity(self.identity):
            self.identity = secrets.token_urlsafe(24)
        return self.identity
