"""The composer's plain helpers: recordings decoded within the limit, refusals in words, reasoning labels."""

from __future__ import annotations

import base64

import pytest

from chatbot_app.services.attachments import AttachmentLimits, AttachmentView
from chatbot_app.services.transcription import TranscriptionRejected
from chatbot_app.state.attachments import _rejection_message, decode_recording, recording_message_bytes
from chatbot_app.state.views import FileChip, file_chips, thinking_label


def test_a_recording_is_decoded_from_its_data_url() -> None:
    audio = b"ID3" + bytes(100)
    url = "data:audio/mpeg;base64," + base64.b64encode(audio).decode()
    assert decode_recording(url, 1000) == audio


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("data:audio/mpeg;base64," + "A" * 4000, "too long"),  # refused by its length, before decoding
        ("https://example.com/a.mp3", "could not be read"),
        ("data:audio/mpeg;base64,***", "could not be read"),
    ],
)
def test_a_bad_or_oversized_recording_is_refused_with_a_message(url: str, words: str) -> None:
    with pytest.raises(TranscriptionRejected, match=words):
        decode_recording(url, 1000)


def test_files_the_browser_refused_are_named_with_the_limit() -> None:
    limits = AttachmentLimits(max_bytes=1000, max_count=2)
    too_large = {"file": {"path": "./big.txt", "size": 5000}, "errors": [{"code": "file-too-large"}]}
    assert _rejection_message(too_large, limits).startswith("big.txt is 5,000 bytes; files can be at most 1,000")
    too_many = {"file": {}, "errors": [{"code": "too-many-files"}]}
    assert _rejection_message(too_many, limits) == "A message can carry at most 2 files."
    assert _rejection_message("nonsense", limits) == "A file could not be attached."


def test_thinking_is_labelled_with_its_time_when_known() -> None:
    assert thinking_label("", 1200) == ""
    assert thinking_label("some careful thought", 4250) == "Thought for 4.2 s"
    assert thinking_label("some careful thought", None) == "Thoughts · 3 words"


def test_file_chips_link_to_the_backend() -> None:
    views = [AttachmentView(1, "a.png", "image/png", 10, "/api/attachments/tok1")]
    assert file_chips(views, "http://127.0.0.1:8000/") == [
        FileChip("a.png", "http://127.0.0.1:8000/api/attachments/tok1", True)
    ]


def test_the_websocket_takes_a_recording_as_large_as_an_attachment() -> None:
    max_bytes = 10 * 2**20
    url = "data:audio/wav;base64," + base64.b64encode(bytes(max_bytes)).decode()
    assert len(url) + 1000 < recording_message_bytes(max_bytes)
