"""Text to speech for Read aloud: Groq's Orpheus when a Groq key is set, else an OpenAI-compatible
`/audio/speech` when a speech model is configured.

With neither, `speaker_from_settings` returns None and Read aloud is not offered. A reply is read
in pieces (services/spoken_text.py), each synthesized as WAV; `joined_wav` sends them as one WAV
stream of unknown length, which a browser's <audio> plays as it arrives: the sound starts with the
first piece while the next is synthesized.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from chatbot_app.config import Settings
from chatbot_app.providers.base import ErrorKind, ProviderError
from chatbot_app.services.audio_endpoint import audio_client, audio_configured, provider_errors
from chatbot_app.services.export_links import SignedLinks

log = logging.getLogger(__name__)

#: A RIFF or data chunk size that says "until the stream ends" (what streaming WAV writers send).
UNKNOWN_SIZE = 0xFFFFFFFF
#: Keeps the key of links to replies read aloud apart from any other use of the shared secret.
SPEECH_LINK_PURPOSE = b"chatbot_app speech links v1\0"
#: A link to a reply read aloud is used at once, by the page that asked for it, and once only.
SPEECH_LINK_TTL_S = 120


def speech_links(settings: Settings) -> SignedLinks:
    """The links the page plays replies from: a token over (owner id, reply id), with the export links' secret."""
    return SignedLinks(settings, purpose=SPEECH_LINK_PURPOSE, ttl_s=SPEECH_LINK_TTL_S)


def speech_url(token: str) -> str:
    """The backend path a reply is read aloud at, as one WAV stream."""
    return f"/api/speech/{token}"


@dataclass(frozen=True, slots=True)
class WavParts:
    """A WAV file's `fmt ` chunk (as it is: PCM, float or extensible alike) and its samples."""

    fmt: bytes
    frames: bytes

    @property
    def block_align(self) -> int:
        return max(1, struct.unpack_from("<H", self.fmt, 12)[0])


def wav_parts(data: bytes) -> WavParts:
    """The format and samples of a RIFF/WAVE file; raises ValueError for anything else.

    A data chunk that claims more than the file holds (a streamed WAV's "unknown" size) ends with the file.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("not a WAV file")
    fmt: bytes | None = None
    offset = 12
    while offset + 8 <= len(data):
        name, size = data[offset : offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        body = data[offset + 8 : offset + 8 + size]
        if name == b"fmt ":
            fmt = body
        elif name == b"data":
            if fmt is None or len(fmt) < 16:
                raise ValueError("a WAV file without its format before the samples")
            parts = WavParts(fmt, body)
            return WavParts(fmt, body[: len(body) - len(body) % parts.block_align])
        offset += 8 + size + size % 2  # chunks are padded to an even length
    raise ValueError("a WAV file without samples")


def streaming_wav_header(fmt: bytes) -> bytes:
    """The start of a WAV stream in format `fmt`, of unknown length: its samples follow as they come."""
    return (
        b"RIFF"
        + struct.pack("<I", UNKNOWN_SIZE)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + (b"\0" if len(fmt) % 2 else b"")
        + b"data"
        + struct.pack("<I", UNKNOWN_SIZE)
    )


async def joined_wav(
    first: bytes, later: Sequence[str], synthesize: Callable[[str], Awaitable[bytes]]
) -> AsyncIterator[bytes]:
    """One WAV stream: the first piece's audio (already made), then each later piece's, in order.

    Each piece is synthesized while the one before it is sent, so the stream keeps ahead of the
    voice. A piece that fails, or comes in another format than the first, ends the stream there.
    """
    head = wav_parts(first)
    pending = asyncio.ensure_future(synthesize(later[0])) if later else None
    try:
        yield streaming_wav_header(head.fmt) + head.frames
        for index in range(len(later)):
            assert pending is not None
            try:
                audio = await pending
            except ProviderError as exc:
                log.warning("read aloud stopped at piece %d of %d: %s", index + 2, len(later) + 1, exc.kind)
                return
            pending = asyncio.ensure_future(synthesize(later[index + 1])) if index + 1 < len(later) else None
            try:
                piece = wav_parts(audio)
            except ValueError:
                log.warning("read aloud stopped: piece %d is not WAV", index + 2)
                return
            if piece.fmt != head.fmt:
                log.warning("read aloud stopped: piece %d is in another audio format", index + 2)
                return
            yield piece.frames
    finally:  # the listener left, or a piece failed: the one being made is not wanted
        if pending is not None and not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, ProviderError):
                await pending


@dataclass
class Speaker:
    """One text-to-speech endpoint, through the groq or openai SDK (both have `audio.speech`)."""

    client: Any
    sdk: ModuleType
    model: str
    #: The voices offered; the first is the default.
    voices: tuple[str, ...]
    provider: str

    def voice_for(self, chosen: str | None) -> str:
        """The chosen voice if this service has it, else its default."""
        return chosen if chosen in self.voices else self.voices[0]

    async def synthesize(self, text: str, voice: str) -> bytes:
        """`text` spoken in `voice`, as WAV; raises ProviderError."""
        with provider_errors(self.sdk, "speech"):
            response = await self.client.audio.speech.create(
                model=self.model, voice=voice, input=text, response_format="wav"
            )
            # groq gives a binary response to read; openai one whose content is read already.
            data = await response.read() if self.provider == "groq" else response.content
        if not isinstance(data, bytes | bytearray):
            raise ProviderError(ErrorKind.BAD_REQUEST, "speech gave no audio")
        return bytes(data)


def text_to_speech_configured(settings: Settings) -> bool:
    """Whether `speaker_from_settings` gives a speaker (without building one): Read aloud is offered."""
    return audio_configured(settings, settings.openai_speech_model)


def speech_voices(settings: Settings) -> tuple[str, ...]:
    """The voices the configured speech service offers, its default first; none without one."""
    if settings.groq_api_key:
        return settings.groq_speech_voices
    return settings.openai_speech_voices if text_to_speech_configured(settings) else ()


def speaker_from_settings(settings: Settings) -> Speaker | None:
    """Groq's speech model if a Groq key is set; else the OpenAI-compatible server if a speech model is set."""
    if (audio := audio_client(settings, settings.openai_speech_model)) is None:
        return None
    if audio.provider == "groq":
        return Speaker(audio.client, audio.sdk, settings.groq_speech_model, settings.groq_speech_voices, "groq")
    return Speaker(audio.client, audio.sdk, settings.openai_speech_model, settings.openai_speech_voices, "openai")
