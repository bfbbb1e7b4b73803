"""Speech to text: Groq's Whisper when a Groq key is set, else an OpenAI-compatible server when configured.

With neither, `transcriber_from_settings` returns None and the microphone is not offered. The audio is
checked by its content (the formats Whisper takes) and its size before any upload.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import httpx

from chatbot_app.config import Settings
from chatbot_app.providers.base import ErrorKind, ProviderError, classify_status
from chatbot_app.services.attachments import display_name

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

    async def transcribe(self, filename: str, data: bytes, language: str | None = None) -> str:
        """The text spoken in the audio; raises TranscriptionRejected or ProviderError."""
        found = self.check(filename, data)
        name = display_name(filename)
        if not name.lower().endswith(f".{found}"):
            name = f"{name}.{found}"  # the API reads the format from the name: give the one the content has
        extra = {"language": language} if language else {}
        try:
            result = await self.client.audio.transcriptions.create(
                file=(name, data), model=self.model, response_format="json", **extra
            )
        except self.sdk.APIStatusError as exc:
            raise ProviderError(classify_status(exc.status_code, str(exc.message)), f"HTTP {exc.status_code}") from exc
        except (self.sdk.APITimeoutError, httpx.TimeoutException) as exc:
            raise ProviderError(ErrorKind.TIMEOUT, "transcription timed out") from exc
        except (self.sdk.APIError, httpx.HTTPError) as exc:
            raise ProviderError(ErrorKind.CONNECTION, type(exc).__name__) from exc
        return (getattr(result, "text", "") or "").strip()


def transcriber_from_settings(settings: Settings) -> Transcriber | None:
    """Groq's Whisper if a Groq key is set; else the OpenAI-compatible server if a transcription model is set."""
    if settings.groq_api_key:
        import groq

        client = groq.AsyncGroq(
            api_key=settings.groq_api_key, base_url=settings.groq_base_url, timeout=settings.request_timeout_s
        )
        return Transcriber(client, groq, settings.groq_transcription_model, settings.max_attachment_bytes, "groq")
    if settings.openai_transcription_model and (settings.openai_base_url or settings.openai_api_key):
        import openai

        client = openai.AsyncOpenAI(
            api_key=settings.openai_api_key or "not-needed",
            base_url=settings.openai_base_url,
            timeout=settings.request_timeout_s,
        )
        return Transcriber(client, openai, settings.openai_transcription_model, settings.max_attachment_bytes, "openai")
    return None
