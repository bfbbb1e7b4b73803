"""Attachments end to end below the UI: checked by content, stored with the message, sent to the model
in the right form through the real groq and openai SDKs (against the fake server), served only by token.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlalchemy import Engine
from sqlmodel import Session, select

from chatbot_app.config import Settings
from chatbot_app.services import attachments as files
from chatbot_app.services.attachments import AttachmentLimits, AttachmentRejected, AttachmentStore, prepare_attachment
from chatbot_app.services.chat_service import ChatService
from chatbot_app.services.chat_settings import ChatSettings
from chatbot_app.storage.models import Attachment
from tests.conftest import make_service, services_from_environment
from tests.fakes.fake_llm_server import FakeLLMServer
from tests.fakes.sample_files import make_image, make_pdf
from tests.integration.test_ownership import ALICE, MALLORY, snapshot
from tests.replies import run_reply

LIMITS = AttachmentLimits()
NOTES = b"# Notes\nThe launch code word is PELICAN.\n"
PDF = make_pdf("Quarterly revenue rose 12 percent.", "Costs fell.")


def prepared() -> list[files.PreparedAttachment]:
    return [
        prepare_attachment("notes.md", NOTES, LIMITS),
        prepare_attachment("report.pdf", PDF, LIMITS),
        prepare_attachment("photo.jpg", make_image(3000, 1500, "JPEG", with_gps=True), LIMITS),
    ]


def user_message(fake: FakeLLMServer) -> dict[str, Any]:
    [request] = fake.streamed_requests()
    return request.body["messages"][-1]


@pytest.fixture
def vision_settings(settings: Settings) -> Settings:
    return settings.model_copy(update=dict(model="fake-large", vision_models=("fake-large",)))


# -- checking files by content ---------------------------------------------------------------------


def test_text_pdf_and_images_are_recognised_by_content() -> None:
    notes, report, photo = prepared()
    assert (notes.media_type, notes.text) == ("text/plain; charset=utf-8", NOTES.decode())
    assert report.media_type == "application/pdf"
    assert report.text == "Quarterly revenue rose 12 percent.\nCosts fell."
    assert photo.media_type == "image/jpeg"
    # A file with no telling extension is still taken for what its bytes are.
    assert prepare_attachment("scan", PDF, LIMITS).media_type == "application/pdf"
    assert prepare_attachment("picture", make_image(fmt="WEBP"), LIMITS).is_image


def test_images_are_scaled_down_and_lose_their_metadata() -> None:
    original = Image.open(io.BytesIO(make_image(3000, 1500, "JPEG", with_gps=True)))
    assert original.getexif()  # the camera make and GPS block are there to begin with

    photo = prepare_attachment("photo.jpg", make_image(3000, 1500, "JPEG", with_gps=True), LIMITS)

    image = Image.open(io.BytesIO(photo.data))
    assert image.size == (files.MAX_IMAGE_SIDE, files.MAX_IMAGE_SIDE // 2)
    assert not image.getexif()
    assert b"SecretCam" not in photo.data
    # Transparency is kept: such images stay PNG.
    transparent = io.BytesIO()
    Image.new("RGBA", (10, 10), (0, 0, 0, 0)).save(transparent, format="PNG")
    assert prepare_attachment("icon.png", transparent.getvalue(), LIMITS).media_type == "image/png"


@pytest.mark.parametrize(
    ("name", "data", "words"),
    [
        ("photo.png", b"just some text, not an image", "does not contain a PNG, JPEG or WebP image"),
        ("report.pdf", b"not a pdf at all", "does not contain a PDF"),
        ("notes.txt", make_image(), "does not contain a UTF-8 text file"),
        ("anim.gif", make_image(fmt="GIF"), "is a GIF image"),
        ("data.bin", bytes(range(256)) * 4, "not a supported file"),
        ("broken.pdf", b"%PDF-1.4\n garbage", "could not be read as a PDF"),
        ("empty.txt", b"", "is empty"),
        ("big.txt", b"a" * (LIMITS.max_bytes + 1), "files can be at most 10.0 MiB"),
    ],
)
def test_mismatched_unsupported_and_oversized_files_are_refused_with_a_message(
    name: str, data: bytes, words: str
) -> None:
    with pytest.raises(AttachmentRejected) as caught:
        prepare_attachment(name, data, LIMITS)
    assert words in str(caught.value)
    assert name in str(caught.value) or (name == "big.txt" and "big.txt" in str(caught.value))


def test_a_path_in_the_name_is_dropped() -> None:
    assert prepare_attachment("../../etc/passwd.txt", b"x", LIMITS).filename == "passwd.txt"
    assert prepare_attachment("C:\\Users\\me\\notes.txt", b"x", LIMITS).filename == "notes.txt"


# -- through the chat service and the real SDKs -----------------------------------------------------


async def test_the_upstream_request_holds_the_text_file_pdf_text_and_image(
    vision_settings: Settings, engine: Engine, fake: FakeLLMServer
) -> None:
    service = make_service(vision_settings, engine)

    turn = await service.start_turn(ALICE, None, "What do these say?", attachments=prepared())
    reply, _ = await run_reply(service, turn)

    assert reply.finished is not None and reply.finished.status == "complete"
    content = user_message(fake)["content"]
    assert [part["type"] for part in content] == ["text", "image_url"]
    text = content[0]["text"]
    assert text.startswith("What do these say?")
    assert "--- Attached text file: notes.md ---\n# Notes\nThe launch code word is PELICAN." in text
    assert "--- Attached PDF: report.pdf ---\nQuarterly revenue rose 12 percent." in text
    url = content[1]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert sent.format == "JPEG" and max(sent.size) == files.MAX_IMAGE_SIDE and not sent.getexif()


async def test_the_openai_sdk_sends_the_same_content_parts(
    vision_settings: Settings, engine: Engine, fake: FakeLLMServer
) -> None:
    settings = vision_settings.model_copy(
        update=dict(groq_api_key=None, openai_base_url=fake.openai_base_url, openai_api_key="sk-test-" + "x" * 20)
    )
    service = make_service(settings, engine)

    turn = await service.start_turn(ALICE, None, "Describe", attachments=prepared()[2:])
    await run_reply(service, turn)

    content = user_message(fake)["content"]
    assert content[0] == {"type": "text", "text": "Describe"}
    assert content[1]["image_url"]["url"].startswith("data:image/jpeg;base64,")


async def test_later_turns_still_carry_the_files_and_a_message_without_files_stays_plain_text(
    vision_settings: Settings, engine: Engine, fake: FakeLLMServer
) -> None:
    service = make_service(vision_settings, engine)
    turn = await service.start_turn(ALICE, None, "Read this", attachments=prepared()[:1])
    await run_reply(service, turn)

    turn = await service.start_turn(ALICE, turn.conversation_id, "And now?")
    await run_reply(service, turn)

    messages = fake.streamed_requests()[-1].body["messages"]
    assert "PELICAN" in messages[1]["content"]  # the first user message, with its file as text
    assert messages[-1] == {"role": "user", "content": "And now?"}


async def test_a_long_file_is_cut_to_the_context_budget_and_the_user_is_told(
    vision_settings: Settings, engine: Engine, fake: FakeLLMServer
) -> None:
    service = make_service(vision_settings.model_copy(update=dict(context_budget_tokens=1000)), engine)
    long_text = prepare_attachment("book.txt", b"word " * 5000, LIMITS)

    [notice] = files.file_notices([long_text], service.budget_chars())
    assert "book.txt is too long" in notice and "2,000 of 25,000 characters" in notice

    turn = await service.start_turn(ALICE, None, "Summarize", attachments=[long_text])
    await run_reply(service, turn)
    text = user_message(fake)["content"]
    assert "[The file was cut here to fit the context: 2,000 of 25,000 characters." in text
    assert "search_files tool, it searches the whole file.]" in text  # what was cut can still be found


async def test_an_image_for_a_model_that_cannot_see_is_refused_naming_the_vision_models(
    settings: Settings, engine: Engine, fake: FakeLLMServer
) -> None:
    service = make_service(settings.model_copy(update=dict(model="fake-small", vision_models=("fake-large",))), engine)
    first = await service.start_turn(ALICE, None, "hello")
    await run_reply(service, first)
    before, requests_before = snapshot(engine), len(fake.chat_requests())

    with pytest.raises(AttachmentRejected) as caught:
        await service.start_turn(ALICE, first.conversation_id, "look", attachments=prepared()[2:])

    assert str(caught.value) == "fake-small cannot read images. Choose a model that can: fake-large."
    assert snapshot(engine) == before and len(fake.chat_requests()) == requests_before
    # Choosing the vision model for this message is accepted.
    chat = ChatSettings(provider="groq", model="fake-large")
    await service.start_turn(ALICE, first.conversation_id, "look", chat, attachments=prepared()[2:])


async def test_images_from_earlier_turns_are_left_out_for_a_model_that_cannot_see(
    vision_settings: Settings, engine: Engine, fake: FakeLLMServer
) -> None:
    service = make_service(vision_settings, engine)
    turn = await service.start_turn(ALICE, None, "look", attachments=prepared()[2:])
    await run_reply(service, turn)

    blind = ChatSettings(provider="groq", model="fake-small")
    turn = await service.start_turn(ALICE, turn.conversation_id, "and now in words", blind)
    await run_reply(service, turn)

    first_user = fake.streamed_requests()[-1].body["messages"][1]
    assert first_user["content"] == ("look\n\n[1 image(s) attached, not shown: this model does not accept images.]")


async def test_too_many_files_are_refused_and_nothing_is_stored(service: ChatService, engine: Engine) -> None:
    notes = prepare_attachment("n.txt", b"x", LIMITS)

    with pytest.raises(AttachmentRejected, match="at most 5 files; this one has 6"):
        await service.start_turn(ALICE, None, "many", attachments=[notes] * 6)

    assert snapshot(engine) == []


async def test_deleting_the_conversation_deletes_its_attachments(
    vision_settings: Settings, engine: Engine, fake: FakeLLMServer
) -> None:
    from chatbot_app.services.library import ConversationLibrary

    service = make_service(vision_settings, engine)
    turn = await service.start_turn(ALICE, None, "files", attachments=prepared())
    await run_reply(service, turn)

    await ConversationLibrary(engine).delete(ALICE, turn.conversation_id)

    with Session(engine) as session:
        assert session.exec(select(Attachment)).all() == []


# -- ownership and serving ---------------------------------------------------------------------------


async def stored_turn(settings: Settings, engine: Engine) -> tuple[str, int, list[Attachment]]:
    service = make_service(settings, engine)
    turn = await service.start_turn(ALICE, None, "private files", attachments=prepared())
    await run_reply(service, turn)
    with Session(engine) as session:
        rows = list(session.exec(select(Attachment).order_by(Attachment.id)).all())
    return turn.conversation_id, turn.user_message_id, rows


async def test_only_the_owner_sees_the_attachments(vision_settings: Settings, engine: Engine) -> None:
    conversation_id, message_id, rows = await stored_turn(vision_settings, engine)
    store = AttachmentStore(engine)

    views = await store.views(ALICE, conversation_id, [message_id])
    assert [v.filename for v in views[message_id]] == ["notes.md", "report.pdf", "photo.jpg"]
    assert [v.url for v in views[message_id]] == [f"/api/attachments/{row.token}" for row in rows]

    assert await store.views(MALLORY, conversation_id, [message_id]) == {}
    assert await store.by_token(rows[0].token, MALLORY) is None
    assert (await store.by_token(rows[0].token, ALICE)) is not None
    assert await store.by_token("x" * 43) is None


@pytest.fixture
def api_client(
    vision_settings: Settings, monkeypatch: pytest.MonkeyPatch, fake: FakeLLMServer
) -> Iterator[httpx.AsyncClient]:
    """The real API app, in process, configured through the environment like the backend."""
    from chatbot_app.api.app import create_api
    from tests.integration.test_api import KEY_A, KEY_B

    monkeypatch.setenv("CHATBOT_API_KEYS", f"{KEY_A},{KEY_B}")
    monkeypatch.setenv("CHATBOT_DATABASE_URL", vision_settings.database_url)
    monkeypatch.setenv("GROQ_API_KEY", vision_settings.groq_api_key or "")
    monkeypatch.setenv("GROQ_BASE_URL", fake.base_url)
    monkeypatch.setenv("CHATBOT_LOCAL_MODEL", "off")
    with services_from_environment():
        transport = httpx.ASGITransport(app=create_api())
        yield httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def test_the_download_url_serves_by_token_with_safe_headers(
    vision_settings: Settings, engine: Engine, api_client: httpx.AsyncClient
) -> None:
    from tests.integration.test_api import KEY_B

    _, _, rows = await stored_turn(vision_settings, engine)
    notes, report, photo = rows

    async with api_client as client:
        text = await client.get(f"/api/attachments/{notes.token}")
        image = await client.get(f"/api/attachments/{photo.token}")
        pdf = await client.get(f"/api/attachments/{report.token}")
        foreign_key = await client.get(f"/api/attachments/{notes.token}", headers={"Authorization": f"Bearer {KEY_B}"})
        unknown = await client.get("/api/attachments/" + "A" * 43)
        by_id = await client.get(f"/api/attachments/{notes.id}")

    assert text.status_code == 200 and text.content == NOTES
    assert text.headers["content-disposition"] == "attachment; filename*=UTF-8''notes.md"
    assert text.headers["x-content-type-options"] == "nosniff"
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["content-disposition"].startswith("attachment;")
    assert image.headers["content-type"] == "image/jpeg"
    assert image.headers["content-disposition"].startswith("inline;")
    # Another key's request, an unknown token and a row id all look the same: not found.
    assert foreign_key.status_code == unknown.status_code == by_id.status_code == 404
    assert foreign_key.content == unknown.content


# -- export and import -------------------------------------------------------------------------------


async def test_attachments_and_reasoning_travel_with_an_export_and_are_checked_on_import(
    vision_settings: Settings, engine: Engine
) -> None:
    import json

    from chatbot_app.services.library import ConversationLibrary
    from chatbot_app.storage.transfer import ImportRejected

    conversation_id, _, rows = await stored_turn(vision_settings, engine)
    library = ConversationLibrary(engine, attachment_limits=LIMITS)
    export = await library.export(ALICE, conversation_id, "json")
    exported = json.loads(b"".join([chunk async for chunk in export.chunks]))
    records = exported["conversations"][0]["messages"][0]["attachments"]
    assert [(r["filename"], r["media_type"]) for r in records] == [(row.filename, row.media_type) for row in rows]

    [new_id] = (await library.import_file(MALLORY, json.dumps(exported).encode())).ids

    store = AttachmentStore(engine)
    _, messages = await make_service(vision_settings, engine).load_conversation(MALLORY, new_id)
    views = await store.views(MALLORY, new_id, [messages[0].id or 0])
    imported = [await store.by_token(v.url.rsplit("/", 1)[1], MALLORY) for v in views[messages[0].id or 0]]
    assert [(a.filename, a.media_type, a.text) for a in imported if a] == [
        (r.filename, r.media_type, r.text) for r in rows
    ]
    # Files come back byte for byte; images are checked and re-encoded again, as any upload is.
    assert [a.data for a in imported if a][:2] == [r.data for r in rows][:2]
    assert {a.token for a in imported if a}.isdisjoint(row.token for row in rows)  # new tokens, not the old URLs

    # A file whose bytes do not match its name, or too many files, reject the whole import.
    records[0]["filename"] = "notes.png"
    with pytest.raises(ImportRejected, match=r"attachment 1: notes\.png does not contain a PNG"):
        await library.import_file(MALLORY, json.dumps(exported).encode())
    records[0]["filename"] = "notes.md"
    exported["conversations"][0]["messages"][0]["attachments"] = records * 2
    with pytest.raises(ImportRejected, match="at most 5 files; this one has 6"):
        await library.import_file(MALLORY, json.dumps(exported).encode())


async def test_files_sent_into_a_foreign_conversation_are_not_found_and_nothing_changes(
    vision_settings: Settings, engine: Engine, fake: FakeLLMServer
) -> None:
    from chatbot_app.services.chat_service import ConversationNotFound

    conversation_id, _, _ = await stored_turn(vision_settings, engine)
    service = make_service(vision_settings, engine)
    before, requests_before = snapshot(engine), len(fake.chat_requests())
    with Session(engine) as session:
        files_before = len(session.exec(select(Attachment)).all())

    with pytest.raises(ConversationNotFound):
        await service.start_turn(MALLORY, conversation_id, "mine now", attachments=prepared())

    with Session(engine) as session:
        assert len(session.exec(select(Attachment)).all()) == files_before
    assert snapshot(engine) == before and len(fake.chat_requests()) == requests_before


async def test_an_upload_is_read_no_further_than_the_limit() -> None:
    from starlette.datastructures import UploadFile

    limits = AttachmentLimits(max_bytes=1000, max_count=5)
    big = UploadFile(io.BytesIO(b"a" * 5000), filename="big.txt")
    declared = UploadFile(io.BytesIO(b"a" * 10), filename="liar.txt", size=5000)

    with pytest.raises(AttachmentRejected, match=r"big\.txt is 1,001 bytes"):
        await files.read_upload(big, limits)
    assert big.file.tell() == 1001  # the rest was never read
    with pytest.raises(AttachmentRejected, match=r"liar\.txt is 5,000 bytes"):
        await files.read_upload(declared, limits)
    assert await files.read_upload(UploadFile(io.BytesIO(NOTES), filename="dir/notes.md"), limits) == NOTES
