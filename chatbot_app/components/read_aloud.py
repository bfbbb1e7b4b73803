"""Read aloud: the button on each finished reply, and the player that plays the reply being read.

The player is the page's one <audio> element, above the composer while a reply is read: it streams
the backend's link as the reply is synthesized, with the browser's own controls (pause, volume), and
a Stop button. One element for the page, not one per reply: it keeps playing while the messages
above it change.
"""

from __future__ import annotations

import reflex as rx
from reflex.components.component import field
from reflex.components.el.elements.media import Audio
from reflex.event import EventHandler, no_args_event_spec

from chatbot_app.state.read_aloud import ReadAloudState

READ_ALOUD_CLASS = "read-aloud-button"
REPLY_AUDIO_TESTID = "reply-audio"


class ReplyAudio(Audio):
    """<audio>, with the media events Reflex's element leaves out."""

    on_ended: EventHandler[no_args_event_spec] = field(doc="The audio played to its end.")
    on_error: EventHandler[no_args_event_spec] = field(doc="The audio could not be loaded or played.")


def is_playing(message_id: rx.Var[int]) -> rx.Var[bool]:
    return ReadAloudState.playing_id == message_id


def read_aloud_player() -> rx.Component:
    """While a reply is read: "Reading aloud", the audio's controls, and Stop."""
    return rx.cond(
        ReadAloudState.audio_url != "",
        rx.hstack(
            rx.icon("audio-lines", size=16, aria_hidden="true"),
            rx.text("Reading aloud", size="1", color_scheme="gray", white_space="nowrap"),
            ReplyAudio.create(
                src=ReadAloudState.audio_url,
                # A new reply is a new element: it starts from the beginning of its own stream.
                key=ReadAloudState.audio_url,
                auto_play=True,
                controls=True,
                preload="auto",
                on_ended=ReadAloudState.stop,
                on_error=ReadAloudState.failed,
                aria_label="The reply read aloud",
                custom_attrs={"data-testid": REPLY_AUDIO_TESTID},
                class_name="reply-audio",
            ),
            rx.icon_button(
                rx.icon("square", size=14),
                variant="soft",
                color_scheme="gray",
                size="1",
                on_click=ReadAloudState.stop,
                aria_label="Stop reading",
                id="stop-reading",
            ),
            align="center",
            spacing="2",
            width="100%",
            padding_bottom="0.5em",
            id="read-aloud-player",
        ),
    )
