"""Read aloud: which reply is being read, and the link the page's one <audio> element plays it from.

The action (services.actions.Actions.read_aloud) checks the reply is the caller's and counts it against
the limits; it gives a short-lived, single-use link to the backend, which streams the reply's audio as
it is synthesized. The page's <audio> element plays that link, and tells when it ends or fails.
"""

from __future__ import annotations

from typing import Any

import reflex as rx

from chatbot_app.config import get_settings
from chatbot_app.services.refusals import Refused
from chatbot_app.services.speech import text_to_speech_configured
from chatbot_app.services.wiring import services
from chatbot_app.state.session import SessionState

COULD_NOT_READ = "This reply could not be read aloud. Try again in a moment."


class ReadAloudState(SessionState):
    """The reply being read aloud (0: none) and the backend URL its audio streams from."""

    playing_id: int = 0
    audio_url: str = ""

    @rx.var
    def read_aloud_enabled(self) -> bool:
        """Read aloud is offered only when a text-to-speech service is configured."""
        return text_to_speech_configured(get_settings())

    @rx.event
    async def toggle(self, reply_id: Any) -> None:
        """Read a reply aloud; pressed again on the reply being read, stop."""
        caller = await self.caller()  # the session first: nothing is done for a caller who has none
        if self.playing_id and reply_id == self.playing_id:
            self.stop()
            return
        try:
            path = await services().actions.read_aloud(caller, reply_id)
        except Refused as refusal:
            self.notice = refusal.message
            return
        self.playing_id, self.notice = reply_id, ""
        self.audio_url = rx.config.get_config().api_url.rstrip("/") + path

    @rx.event
    def stop(self) -> None:
        """The reading ended, or the reader stopped it: the audio element goes."""
        self.playing_id, self.audio_url = 0, ""

    @rx.event
    def failed(self) -> None:
        """The audio could not be played (the service failed, or the link was refused)."""
        if self.audio_url:
            self.notice = COULD_NOT_READ
        self.stop()
