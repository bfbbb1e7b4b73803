"""Uploads posted straight to the backend's `/_upload`, as any client can, without a page.

With accounts on, a client without a session is sent to sign in before a byte of its files is read,
and a signed-in tab's files are checked. With accounts off, a request of seven files gets five
places: each file takes one, whether it is kept or refused, and the last two are not read at all.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from chatbot_app.services.accounts import SESSION_COOKIE
from chatbot_app.state.attachments import ComposerFilesState
from tests.conftest import migrate
from tests.e2e.live_app import Backend, backend_only
from tests.e2e.reflex_client import ReflexClient, in_thread, upload_files
from tests.fakes.sample_files import make_image, make_pdf, make_shared_stream_pdf

pytestmark = pytest.mark.e2e

ADD_FILES = f"{ComposerFilesState.get_full_name()}.add_files"
REFLEX_VERSION = importlib.metadata.version("reflex")


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    """Accounts off, a one-second CPU budget per file."""
    workdir = tmp_path_factory.mktemp("uploads")
    database_url = f"sqlite:///{workdir / 'app.db'}"
    migrate(database_url)
    with backend_only(workdir, database_url, CHATBOT_LOCAL_MODEL="off", CHATBOT_FILE_CHECK_CPU_S="1") as running:
        yield running


@pytest.fixture(scope="module")
def accounts_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    workdir = tmp_path_factory.mktemp("uploads_accounts")
    database_url = f"sqlite:///{workdir / 'app.db'}"
    migrate(database_url)
    with backend_only(workdir, database_url, CHATBOT_LOCAL_MODEL="off", CHATBOT_AUTH="local") as running:
        yield running


def merged(updates: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The vars the updates set (by bare var name, last value wins) and the events they carry."""
    values: dict[str, Any] = {}
    events: list[dict[str, Any]] = []
    for update in updates:
        for fields in (update.get("delta") or {}).values():
            for var, value in fields.items():
                values[var.split("_rx_state_")[0]] = value
        events += update.get("events") or []
    return values, events


async def unsigned_tab_uploads(backend_url: str) -> tuple[list[dict[str, Any]], list[str]]:
    """A tab on the sign-in page (no session cookie) posts a heavy PDF; returns the upload's updates, and
    the redirects its websocket got (an upload's events reach the tab over its websocket)."""
    redirects: list[str] = []
    redirected = asyncio.Event()

    def on_update(_at: float, _size: int, update: dict[str, Any]) -> None:
        redirects.extend(e["payload"].get("path") for e in update.get("events") or [] if e["name"] == "_redirect")
        if redirects:
            redirected.set()

    tab = ReflexClient(backend_url, REFLEX_VERSION, on_update=on_update, pathname="/login")
    await tab.connect()
    try:
        updates = await tab.upload(ADD_FILES, [("attack.pdf", make_shared_stream_pdf(300), "application/pdf")])
        await asyncio.wait_for(redirected.wait(), 15)
        return updates, redirects
    finally:
        await tab.close()


def test_without_a_session_an_upload_is_sent_to_sign_in_and_no_file_is_looked_at(accounts_backend: Backend) -> None:
    updates, redirects = in_thread(lambda: unsigned_tab_uploads(accounts_backend.url))

    assert redirects == ["/login"]
    values, _ = merged(updates)
    assert "files" not in values and "notice" not in values


async def signed_in_tab_uploads(backend_url: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=backend_url) as http:
        answer = await http.post("/auth/sign-up", data={"email": "uploader@example.com", "password": "a long password"})
    assert answer.status_code == 303, answer.text
    cookie = f"{SESSION_COOKIE}={answer.cookies[SESSION_COOKIE]}"
    tab = ReflexClient(backend_url, REFLEX_VERSION, headers={"Cookie": cookie})
    await tab.connect()
    try:
        return await tab.upload(ADD_FILES, [("report.pdf", make_pdf("Signed-in text."), "application/pdf")])
    finally:
        await tab.close()


def test_a_signed_in_tab_uploads_as_before(accounts_backend: Backend) -> None:
    values, events = merged(in_thread(lambda: signed_in_tab_uploads(accounts_backend.url)))

    assert not [e for e in events if e["name"] == "_redirect"]
    assert [chip["filename"] for chip in values["files"]] == ["report.pdf"]


def test_each_file_takes_a_place_refused_or_not_and_files_past_the_places_are_not_read(backend: Backend) -> None:
    files = [
        ("report.pdf", make_pdf("Kept."), "application/pdf"),
        ("photo.png", make_pdf("Not an image."), "image/png"),  # refused by its declared type
        ("attack.pdf", make_shared_stream_pdf(300), "application/pdf"),  # refused at the CPU budget
        ("notes.txt", b"Kept too.", "text/plain"),
        ("chart.jpg", make_image(120, 80, "JPEG"), "image/jpeg"),
        ("sixth.txt", b"no place left", "text/plain"),
        ("seventh.pdf", make_shared_stream_pdf(300), "application/pdf"),
    ]

    values, _ = merged(in_thread(lambda: upload_files(backend.url, "u" * 32, ADD_FILES, files)))

    assert [chip["filename"] for chip in values["files"]] == ["report.pdf", "notes.txt", "chart.jpg"]
    notice = values["notice"]
    assert "photo.png does not contain a PNG, JPEG or WebP image" in notice
    assert "attack.pdf takes too long to read (over 1 s of processing)" in notice
    assert "A message can carry at most 5 files: 2 files were not attached." in notice
    assert "sixth.txt" not in notice and "seventh.pdf" not in notice
    assert json.dumps(values).count("seventh") == 0
