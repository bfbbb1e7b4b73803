"""Exports in the browser: the sidebar's "Export all" and the conversation menu's exports download a file
the backend streams from a short-lived link (GET /api/exports/<token>), not data sent over the websocket."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tests.e2e.test_chat_in_browser import send, wait_for_conversation_url, wait_for_replies
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer

pytestmark = pytest.mark.e2e

FILE_INPUT = "#composer input[type=file]"


def test_exports_download_from_a_link_with_the_attachments_inside(page, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    fake.enqueue_stream(Behaviour(text="Noted."))
    page.set_input_files(FILE_INPUT, [{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"exported file"}])
    page.wait_for_selector("[data-testid=attachment]")
    send(page, "Export me")
    wait_for_replies(page, 1)
    conversation_id = wait_for_conversation_url(page).rsplit("/", 1)[1]
    frames: list[int] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(len(payload))))

    with page.expect_download() as caught:
        page.click("#export-all-button")
    everything = caught.value

    assert everything.suggested_filename == "conversations.json"
    assert "/api/exports/" in everything.url
    exported = json.loads(Path(everything.path()).read_bytes())
    [conversation] = exported["conversations"]
    assert conversation["id"] == conversation_id
    user = conversation["messages"][0]
    assert user["content"] == "Export me"
    assert [(a["filename"], base64.b64decode(a["data"])) for a in user["attachments"]] == [
        ("notes.txt", b"exported file")
    ]
    assert all(size < 2_000 for size in frames)  # the file came over HTTP; the websocket carried the link

    page.click("#conversation-menu")
    with page.expect_download() as caught:
        page.click("text=Export as Markdown")
    markdown = caught.value
    assert markdown.suggested_filename == f"conversation-{conversation_id[:8]}.md"
    text = Path(markdown.path()).read_text()
    assert text.startswith("# ") and "Export me" in text and "Noted." in text
