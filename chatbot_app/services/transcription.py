"""Speech to text: Groq's Whisper when a Groq key is set, else an OpenAI-compatible server when configured.

With neither, `transcriber_from_settings` returns None and the microphone is not offered. The audio is
checked by its content (the formats Whisper takes) and its size before any upload.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

from chatbot_app.config import Settings
from chatbot_app.services.attachments import display_name
from chatbot_app.services.audio_endpoint import audio_client, audio_configured, provider_errors

#: Formats Whisper accepts, recognised by their first bytes: (offset, signature, name).
_AUDIO_SIGNATURES = (
    (0, b"RIFF", "wav"),  # with b"WAVE" at offset 8, checked below
    (0, b"fLaC", "flac"),
    (0, b"OggS", "ogg"),
    (0, b"ID3", "mp3"),
    (0, b"\xff\xfb", "mp3"),
    (0, b"\xff\xf3", "mp3"),
    (0, b"\xff\xf2", "mp3"),
    (4, b"ftyp", "mp4"),  # mp4, m4a
    (0, b"\x1a\x45\xdf\xa3", "webm"),  # Matroska/WebM, what browsers record
)


class TranscriptionRejected(ValueError):
    """The audio cannot be transcribed; str(error) says why, in words for the user."""


def audio_format(data: bytes) -> str | None:
    """The audio container the bytes hold (wav, flac, ogg, mp3, mp4, webm), or None."""
    for offset, signature, name in _AUDIO_SIGNATURES:
        if data[offset : offset + len(signature)] == signature:
            if name == "wav" and data[8:12] != b"WAVE":
                continue
            return name
    return None


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    #: Seconds of audio, as the service reports them (None if it does not).
    duration_s: float | None = None


@dataclass
class Transcriber:
    """One speech-to-text endpoint, through the groq or openai SDK (both have `audio.transcriptions`)."""

    client: Any
    sdk: ModuleType
    model: str
    max_bytes: int
    provider: str

    def check(self, filename: str, data: bytes) -> str:
        """The audio's format; raises TranscriptionRejected for empty, oversized or non-audio data."""
        name = display_name(filename)
        if not data:
            raise TranscriptionRejected("The recording is empty.")
        if len(data) > self.max_bytes:
            raise TranscriptionRejected(
                f"{name} is {len(data) / 2**20:.1f} MiB; audio can be at most {self.max_bytes / 2**20:.1f} MiB."
            )
        if (found := audio_format(data)) is None:
            raise TranscriptionRejected(
                f"{name} is not audio in a format we can transcribe (wav, mp3, m4a, ogg, flac, webm)."
            )
        return found

    async def transcribe(self, filename: str, data: bytes, language: str | None = None) -> Transcript:
        """The text spoken in the audio, and how long it ran; raises TranscriptionRejected or ProviderError."""
        found = self.check(filename, data)
        name = display_name(filename)
        if not name.lower().endswith(f".{found}"):
            name = f"{name}.{found}"  # the API reads the format from the name: give the one the content has
        extra = {"language": language} if language else {}
        with provider_errors(self.sdk, "transcription"):
            # verbose_json carries the audio's duration, which the quota counts.
            result = await self.client.audio.transcriptions.create(
                file=(name, data), model=self.model, response_format="verbose_json", **extra
            )
        duration = getattr(result, "duration", None)
        return Transcript(
            (getattr(result, "text", "") or "").strip(),
            float(duration) if isinstance(duration, int | float) and duration >= 0 else None,
        )


def speech_to_text_configured(settings: Settings) -> bool:
    """Whether `transcriber_from_settings` gives a transcriber (without building one)."""
    return audio_configured(settings, settings.openai_transcription_model)


def transcriber_from_settings(settings: Settings) -> Transcriber | None:
    """Groq's Whisper if a Groq key is set; else the OpenAI-compatible server if a transcription model is set."""
    if (audio := audio_client(settings, settings.openai_transcription_model)) is None:
        return None
    model = settings.groq_transcription_model if audio.provider == "groq" else settings.openai_transcription_model
    return Transcriber(audio.client, audio.sdk, model, settings.max_attachment_bytes, audio.provider)
