"""Speech to text through the real groq and openai SDKs against the fake server, and POST /api/transcribe."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from chatbot_app.config import Settings
from chatbot_app.services.transcription import TranscriptionRejected, audio_format, transcriber_from_settings
from tests.conftest import TEST_API_KEY, services_from_environment
from tests.fakes.fake_llm_server import FAKE_TRANSCRIPT, Behaviour, FakeLLMServer
from tests.fakes.sample_files import make_image, make_wav


def speech_wav(tmp_path: Path) -> bytes:
    """Real speech from espeak-ng when it is installed, else a tone the test writes with `wave`."""
    if shutil.which("espeak-ng") is None:
        return make_wav()
    path = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(path), "hello from the microphone"], check=True, timeout=30)
    return path.read_bytes()


def groq_settings(fake: FakeLLMServer) -> Settings:
    return Settings(groq_api_key=TEST_API_KEY, groq_base_url=fake.base_url, local_model="off")


def test_no_service_configured_means_no_transcriber() -> None:
    assert transcriber_from_settings(Settings(local_model="off")) is None
    # An OpenAI-compatible server alone is not enough: it must be told which transcription model to use.
    assert transcriber_from_settings(Settings(openai_base_url="http://127.0.0.1:9/v1")) is None


async def test_groq_whisper_gets_the_audio_and_returns_the_text(fake: FakeLLMServer, tmp_path: Path) -> None:
    audio = speech_wav(tmp_path)
    transcriber = transcriber_from_settings(groq_settings(fake))
    assert transcriber is not None and transcriber.provider == "groq"

    transcript = await transcriber.transcribe("recording", audio)

    assert transcript.text == FAKE_TRANSCRIPT
    assert transcript.duration_s is not None and transcript.duration_s > 0  # what the quota counts
    [request] = [r for r in fake.requests if r.path.endswith("/audio/transcriptions")]
    assert request.path == "/openai/v1/audio/transcriptions"
    assert request.body["model"] == "whisper-large-v3-turbo"
    assert request.body["file"] == audio
    assert request.body["filename"] == "recording.wav"  # named after its content, which the API reads


async def test_the_openai_compatible_server_is_used_without_a_groq_key(fake: FakeLLMServer) -> None:
    settings = Settings(
        openai_base_url=fake.openai_base_url, openai_api_key="sk-" + "x" * 20, openai_transcription_model="whisper-1"
    )
    transcriber = transcriber_from_settings(settings)
    assert transcriber is not None and transcriber.provider == "openai"
    fake.enqueue(Behaviour(text="  bonjour  "))

    assert (await transcriber.transcribe("clip.wav", make_wav())).text == "bonjour"
    [request] = [r for r in fake.requests if r.path.endswith("/audio/transcriptions")]
    assert (request.path, request.body["model"]) == ("/v1/audio/transcriptions", "whisper-1")


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "empty"),
        (make_image(), "not audio"),
        (b"RIFF\x00\x00\x00\x00AVI LIST", "not audio"),
    ],
)
async def test_empty_oversized_or_non_audio_is_refused_before_any_upload(
    fake: FakeLLMServer, data: bytes, words: str
) -> None:
    transcriber = transcriber_from_settings(groq_settings(fake))
    assert transcriber is not None

    with pytest.raises(TranscriptionRejected, match=words):
        await transcriber.transcribe("x.wav", data)
    small = transcriber_from_settings(groq_settings(fake).model_copy(update=dict(max_attachment_bytes=100)))
    assert small is not None
    with pytest.raises(TranscriptionRejected, match="audio can be at most"):
        await small.transcribe("long.wav", make_wav())
    assert not fake.requests


def test_audio_formats_are_recognised_by_content() -> None:
    assert audio_format(make_wav()) == "wav"
    assert audio_format(b"\x1a\x45\xdf\xa3" + b"\x00" * 20) == "webm"
    assert audio_format(b"\x00\x00\x00\x20ftypM4A ") == "mp4"
    assert audio_format(b"OggS\x00") == "ogg"
    assert audio_format(b"hello") is None


async def test_the_rest_endpoint_transcribes_for_a_key_and_refuses_bad_audio(
    fake: FakeLLMServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import httpx

    from chatbot_app.api.app import create_api
    from tests.conftest import migrate
    from tests.integration.test_api import KEY_A

    database_url = f"sqlite:///{tmp_path / 'api.db'}"
    migrate(database_url)
    for name, value in {
        "CHATBOT_API_KEYS": KEY_A,
        "CHATBOT_DATABASE_URL": database_url,
        "GROQ_API_KEY": TEST_API_KEY,
        "GROQ_BASE_URL": fake.base_url,
        "CHATBOT_LOCAL_MODEL": "off",
        "CHATBOT_MAX_ATTACHMENT_BYTES": "200000",
    }.items():
        monkeypatch.setenv(name, value)
    headers = {"Authorization": f"Bearer {KEY_A}"}
    with services_from_environment():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_api()), base_url="http://t") as client:
            ok = await client.post("/api/transcribe", files={"file": ("mic.webm", make_wav())}, headers=headers)
            not_audio = await client.post("/api/transcribe", files={"file": ("a.wav", b"hello")}, headers=headers)
            too_big = await client.post(
                "/api/transcribe", files={"file": ("a.wav", make_wav(seconds=8))}, headers=headers
            )
            anonymous = await client.post("/api/transcribe", files={"file": ("mic.wav", make_wav())})

    assert (ok.status_code, ok.json()) == (200, {"text": FAKE_TRANSCRIPT})
    assert not_audio.status_code == 422 and "not audio" in not_audio.json()["detail"]
    assert too_big.status_code == 413
    assert anonymous.status_code == 401
    assert len([r for r in fake.requests if r.path.endswith("/audio/transcriptions")]) == 1
