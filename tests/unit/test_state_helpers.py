"""Only the app's real event handlers can be called by a client; helpers for sibling states cannot."""

from __future__ import annotations

from chatbot_app.state.conversation import ConversationState
from chatbot_app.state.session import SessionState
from chatbot_app.state.settings import SettingsState

HELPERS = {
    SessionState: [
        "owner_id",
        "client_address",
        "signed_in_user",
        "session_token",
        "start_clean_on_new_sign_in",
        "state_lost",
    ],
    ConversationState: ["show_new_chat", "current_view", "show_reply", "take_running_reply", "load_stats"],
    SettingsState: ["chat_settings"],
}


def test_helpers_are_not_event_handlers_but_still_methods() -> None:
    for state, names in HELPERS.items():
        for name in names:
            assert name not in state.event_handlers, f"{state.__name__}.{name} is callable by any client"
            assert callable(getattr(state, name))
    assert "open_page" in ConversationState.event_handlers  # the real handlers are still registered
