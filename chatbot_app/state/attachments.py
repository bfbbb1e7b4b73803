"""Files waiting in the composer, and speech turned into the composer's text.

A file is checked when it is attached (services.attachments: by its content, images re-encoded),
so a bad file is refused at once with a message; the checked files wait here, server-side only,
until ReplyState.send_message stores them with the message. An audio file, or a recording from
the microphone, is transcribed instead and its text put in the message box for the user to check.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
from collections.abc import Sequence
from typing import Any

import reflex as rx
from reflex_base.event import blur_focus

from chatbot_app.config import get_settings
from chatbot_app.providers.base import ProviderError
from chatbot_app.services.attachments import (
    AttachmentLimits,
    AttachmentRejected,
    PreparedAttachment,
    check_size,
    check_upload,
    display_name,
    file_notices,
    read_upload,
    text_budget_chars,
    thumbnail_data_url,
    too_many_files,
    vision_refusal,
)
from chatbot_app.services.error_messages import describe_error
from chatbot_app.services.refusals import Refused
from chatbot_app.services.transcription import TranscriptionRejected, audio_format, speech_to_text_configured
from chatbot_app.services.wiring import services
from chatbot_app.state.session import SessionLost, SessionState, reload_on_lost_session, state_helper
from chatbot_app.state.settings import SettingsState

#: The composer's upload zone (its one file input) and message box.
UPLOAD_ID = "composer-files"
COMPOSER_INPUT_ID = "chat-input"


@dataclasses.dataclass
class PendingChip:
    """What the composer shows of a file waiting to be sent."""

    filename: str
    size: str
    is_image: bool = False
    #: A small `data:` URL of an image ("" for other files, which show an icon).
    thumbnail: str = ""


def _thumbnail_key(file: PreparedAttachment) -> str:
    return f"{len(file.data)}:{file.filename}"


def _size_text(size: int) -> str:
    return f"{size / 2**20:.1f} MB" if size >= 2**20 else f"{max(1, size // 1024)} KB"


def _limits() -> AttachmentLimits:
    return AttachmentLimits.from_settings(services().chat.settings)


def _rejection_message(rejection: Any, limits: AttachmentLimits) -> str:
    """Words for a file the browser refused before uploading it (react-dropzone's codes)."""
    file = rejection.get("file") if isinstance(rejection, dict) else None
    name = display_name(str(file.get("path") or file.get("name") or "")) if isinstance(file, dict) else "A file"
    errors = rejection.get("errors") if isinstance(rejection, dict) else None
    codes = {e.get("code") for e in errors if isinstance(e, dict)} if isinstance(errors, list) else set()
    if "too-many-files" in codes:
        return f"A message can carry at most {limits.max_count} files."
    if "file-too-large" in codes:
        size = file.get("size") if isinstance(file, dict) else None
        try:
            check_size(name, size if isinstance(size, int) else limits.max_bytes + 1, limits)
        except AttachmentRejected as exc:
            return str(exc)
    return f"{name} could not be attached."


def recording_message_bytes(max_bytes: int) -> int:
    """The websocket message a recording of `max_bytes` needs: base64 (4/3) plus room for the event around it."""
    return max_bytes * 4 // 3 + 64 * 1024


def decode_recording(data_url: str, max_bytes: int) -> bytes:
    """The audio in a recorder's `data:` URL; raises TranscriptionRejected (size checked before decoding)."""
    _, sep, payload = data_url.partition(";base64,")
    if not data_url.startswith("data:") or not sep:
        raise TranscriptionRejected("The recording could not be read.")
    if len(payload) * 3 // 4 > max_bytes:
        raise TranscriptionRejected(f"The recording is too long: audio can be at most {max_bytes / 2**20:.1f} MiB.")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise TranscriptionRejected("The recording could not be read.") from None


class ComposerFilesState(SessionState):
    #: The files waiting to be sent, as chips (data-testid="attachment").
    files: list[PendingChip] = []
    #: What the user should know before sending: files cut to fit the context, PDFs without text.
    file_notices: list[str] = []
    transcribing: bool = False
    #: Counts the server's writes to the message box: Send is mounted again at each, and reads the box.
    box_writes: int = 0
    # The microphone is recording (the recorder's start and stop events).
    recording: bool = False
    # The checked files themselves: server-side only, never sent to the browser.
    _pending: list[PreparedAttachment] = []
    # Their chips' thumbnails, by file (made once, off the event loop, when an image is attached).
    _thumbnails: dict[str, str] = {}

    @rx.var
    def has_image(self) -> bool:
        """An image is waiting to be sent (a model that cannot read images must not get it)."""
        return any(chip.is_image for chip in self.files)

    @rx.var
    def voice_enabled(self) -> bool:
        """The microphone is offered only when a speech-to-text service is configured."""
        return speech_to_text_configured(get_settings())

    # -- called by ReplyState.send_message ---------------------------------------------------

    @state_helper
    def pending(self) -> list[PreparedAttachment]:
        return list(self._pending)

    @state_helper
    def take_sent(self, sent: Sequence[PreparedAttachment]) -> None:
        """The files were stored with the message: let them go (a file attached meanwhile stays)."""
        left = list(self._pending)
        for file in sent:  # by value: the state may have been stored and loaded since they were read
            if file in left:
                left.remove(file)
        self._set_pending(left)

    # -- events ------------------------------------------------------------------------------

    @rx.event
    async def add_files(self, uploads: list[rx.UploadFile]) -> Any:
        """Check and keep each attached file; an audio file is transcribed into the message box.

        Any client can post to this handler: the session is checked before a byte is read, and each
        file of the request takes one of the message's places whether it is kept or refused, so one
        request never makes more than CHATBOT_MAX_ATTACHMENTS files' worth of work.
        """
        if not isinstance(uploads, list) or not all(isinstance(u, rx.UploadFile) for u in uploads):
            self.notice = "Attach files with the button, or by dropping them on the message box."
            return
        try:
            await self.owner_id()  # with accounts on, a tab that signs in no one stops here
        except SessionLost as lost:  # SignedOut too. An upload's updates go back over HTTP, past the app's handler.
            yield reload_on_lost_session(lost)
            return
        limits = _limits()
        self.notice = ""
        kept = list(self._pending)
        refusals: list[str] = []
        places = max(limits.max_count - len(kept), 0)
        for upload in uploads[:places]:
            name = display_name(upload.filename or "file")
            try:
                data = await read_upload(upload, limits)
                if audio_format(data) is not None and services().transcriber is not None:
                    self.transcribing = True
                    yield  # "Transcribing…" shows at once
                    if (transcript := await self._transcribe(name, data)) is not None:
                        yield self._into_composer(transcript)
                    else:
                        self.transcribing = False
                    continue
                prepared = await check_upload(name, data, limits, services().file_checks, upload.content_type)
                if prepared.is_image:  # the checked image is at most 2,048 px a side: a thread is enough
                    self._thumbnails[_thumbnail_key(prepared)] = await asyncio.to_thread(
                        thumbnail_data_url, prepared.data
                    )
                kept.append(prepared)
            except AttachmentRejected as exc:
                refusals.append(str(exc))
        if len(uploads) > places:
            refusals.append(too_many_files(limits, len(uploads) - places))
        self._set_pending(kept)
        if refusals:
            self.notice = " ".join(refusals)
        elif any(p.is_image for p in kept):
            self.notice = await self._vision_warning()
        yield rx.clear_selected_files(UPLOAD_ID)

    @rx.event
    def refuse_files(self, rejections: list[dict[str, Any]]) -> None:
        """Files the browser refused by the limits it was given (size, count): say why."""
        if not isinstance(rejections, list) or not rejections:
            return
        limits = _limits()
        described = (_rejection_message(r, limits) for r in rejections[:20] if isinstance(r, dict))
        self.notice = " ".join(dict.fromkeys(described))

    @rx.event
    def remove_file(self, index: int) -> None:
        if isinstance(index, int) and 0 <= index < len(self._pending):
            self._set_pending(self._pending[:index] + self._pending[index + 1 :])
            self.notice = ""

    @rx.event
    def remove_images(self) -> None:
        """ "Remove the image and send": the images leave the composer, any other file stays."""
        self._set_pending([p for p in self._pending if not p.is_image])
        self.notice = ""

    @rx.event
    async def transcribe_recording(self, data_url: str) -> Any:
        """The microphone's recording (a `data:` URL) becomes the message box's text."""
        transcriber = services().transcriber
        if transcriber is None or not isinstance(data_url, str):
            return
        await self.caller()  # the session first: nothing is decoded for a caller who has none
        try:
            data = decode_recording(data_url, transcriber.max_bytes)
        except TranscriptionRejected as exc:
            self.notice = str(exc)
            return
        extension = audio_format(data) or "webm"
        self.transcribing = True
        yield
        if (transcript := await self._transcribe(f"recording.{extension}", data)) is not None:
            yield self._into_composer(transcript)
        else:
            self.transcribing = False

    @staticmethod
    def _into_composer(transcript: str) -> list[Any]:
        """Write the box, focus it afresh, then end "Transcribing…" by an event queued after those.

        The box's on_focus reads it, so Send knows it holds text (a write fires no input event), and
        the user can press Enter. Ending "Transcribing…" changes Send's key: it mounts again and reads
        the box too. A change of state sent with the write would reach the page before the write.
        """
        return [
            rx.set_value(COMPOSER_INPUT_ID, transcript),
            blur_focus(COMPOSER_INPUT_ID),  # a box that has the focus gets no focus event
            rx.set_focus(COMPOSER_INPUT_ID),
            ComposerFilesState.transcribed,
        ]

    @rx.event
    def transcribed(self) -> None:
        self.transcribing = False
        self.box_writes += 1

    @rx.event
    def set_recording(self, recording: bool) -> None:
        self.recording = recording is True

    @rx.event
    def recording_failed(self, error: Any) -> None:
        """The browser could not record (no microphone, permission refused)."""
        # The browser's own words, minus what cannot travel back to it (lone surrogates).
        detail = error.encode("utf-8", "ignore").decode() if isinstance(error, str) else ""
        self.notice = f"The microphone could not record{': ' + detail[:200] if detail else ''}."

    # -- helpers -------------------------------------------------------------------------------

    def _set_pending(self, pending: list[PreparedAttachment]) -> None:
        self._pending = pending
        kept = {_thumbnail_key(p) for p in pending}
        self._thumbnails = {key: url for key, url in self._thumbnails.items() if key in kept}
        self.files = [
            PendingChip(p.filename, _size_text(len(p.data)), p.is_image, self._thumbnails.get(_thumbnail_key(p), ""))
            for p in pending
        ]
        budget = text_budget_chars(services().chat.settings.context_budget_tokens)
        self.file_notices = file_notices(pending, budget)

    async def _transcribe(self, name: str, data: bytes) -> str | None:
        """The text spoken in `data`, counted against the chat limits; None (with a notice) if it failed.

        The caller shows `transcribing` around it, and clears it once the text is in the box.
        """
        try:
            text = await services().actions.transcribe(await self.caller(), name, data)
        except Refused as refusal:
            self.notice = refusal.message
            return None
        except ProviderError as exc:
            self.notice = describe_error(exc.kind)
            return None
        if not text:
            self.notice = "No speech was heard in the recording."
            return None
        return text

    async def _vision_warning(self) -> str:
        """A notice when the chosen model cannot see the images attached ("" when it can); it names only
        the models that can which the picker really offers."""
        settings = await self.get_state(SettingsState)
        model = settings.chat_settings().model
        vision_models = services().chat.settings.vision_models
        if model and model not in vision_models:
            return vision_refusal(model, [option.label for option in settings.vision_choices])
        return ""
