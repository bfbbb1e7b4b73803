"""The microphone: record in the browser, and the transcript lands in the message box.

Recording is reflex-audio-capture's component (audio-recorder-polyfill: WAV in every browser). The
recording reaches the server as one `data:` URL when recording stops; ComposerFilesState checks its
size, counts it against the chat limits and transcribes it.
"""

from __future__ import annotations

from typing import Any

import reflex as rx
from reflex_audio_capture import AudioRecorderPolyfill

from chatbot_app.state.attachments import ComposerFilesState

RECORDER_ID = "mic-recorder"


class Recorder(AudioRecorderPolyfill):
    """reflex-audio-capture 0.1.1's recorder, with its failures reported.

    Where the microphone cannot be opened (none, or permission refused) the component's code names the
    `on_error` handler as a statement without calling it; here those statements call it with the error.
    """

    def _get_added_hooks(self) -> dict[str, Any]:
        # Reflex joins every class's add_hooks; the finished hook code is patched here, once. The leading
        # ";" ends the template's unterminated `const _error = ...` line.
        hooks = super()._get_added_hooks()
        on_error = self.event_triggers.get("on_error")
        if on_error is None:
            return hooks
        handler = str(rx.Var.create(on_error))
        return {code.replace(handler + "\n", f";({handler})(_error);\n"): data for code, data in hooks.items()}


def microphone() -> rx.Component:
    """The recorder (invisible) and #mic-button; shown only when speech to text is configured."""
    recorder = Recorder.create(
        id=RECORDER_ID,
        on_data_available=ComposerFilesState.transcribe_recording,
        on_start=ComposerFilesState.set_recording(True),
        on_stop=ComposerFilesState.set_recording(False),
        on_error=ComposerFilesState.recording_failed,
        # WAV, encoded in the page: the MP3 encoder loads lamejs from a CDN at run time.
        use_mp3=False,
    )
    return rx.fragment(
        recorder,
        rx.cond(
            ComposerFilesState.voice_enabled,
            rx.cond(
                ComposerFilesState.recording,
                rx.icon_button(
                    rx.icon("square", size=16),
                    id="mic-button",
                    type="button",
                    on_click=recorder.stop(),
                    aria_label="Stop recording",
                    color_scheme="red",
                    variant="soft",
                    size="3",
                    custom_attrs={"data-recording": "true"},
                ),
                rx.icon_button(
                    rx.icon("mic", size=18),
                    id="mic-button",
                    type="button",
                    on_click=recorder.start(),
                    aria_label="Record a message",
                    variant="soft",
                    size="3",
                    loading=ComposerFilesState.transcribing,
                ),
            ),
        ),
    )
