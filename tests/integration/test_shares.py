"""Share links on both databases: a snapshot of finished messages only, capped in size and in number, listed
for revoking (through the one door, which checks the owner), read from the database on each visit, its files
served through the link and never by the owner's own file links, and gone with their conversation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from chatbot_app.config import Settings
from chatbot_app.services.actions import Actions, Caller
from chatbot_app.services.attachments import AttachmentLimits, prepare_attachment
from chatbot_app.services.chat_service import ChatService
from chatbot_app.services.library import ConversationLibrary
from chatbot_app.services.refusals import RefusalKind, Refused
from chatbot_app.services.shares import ShareLinks
from chatbot_app.storage.models import Attachment, ShareLink
from tests.conftest import make_services, services_from_environment
from tests.fakes.fake_llm_server import FakeLLMServer
from tests.fakes.sample_files import make_image
from tests.replies import run_reply

OWNER = "share-owner-" + "a" * 16
STRANGER = "share-stranger-" + "b" * 16


async def test_a_snapshot_holds_the_finished_messages_and_a_revoked_link_looks_unknown(
    service: ChatService, engine: Engine
) -> None:
    shares = ShareLinks(engine)
    turn = await service.start_turn(OWNER, None, "What is a pelican?")
    await run_reply(service, turn)
    await service.start_turn(OWNER, turn.conversation_id, "a later message")  # its reply is still `streaming`

    with pytest.raises(Refused) as foreign:
        await shares.create(STRANGER, turn.conversation_id)
    token = await shares.create(OWNER, turn.conversation_id)
    snapshot = await shares.snapshot(token)
    [link] = await shares.links(OWNER)

    assert foreign.value.kind == RefusalKind.NOT_FOUND
    assert snapshot is not None and OWNER not in str(snapshot)
    assert [m["role"] for m in snapshot["messages"]] == ["user", "assistant", "user"]  # never a reply being written
    assert snapshot["messages"][0]["content"] == "What is a pelican?"
    assert (link.conversation_id, link.title) == (turn.conversation_id, "What is a pelican?")
    assert await shares.links(STRANGER) == []
    assert not await shares.revoke(STRANGER, link.id)
    assert not await shares.revoke(OWNER, 2**63)  # an id no database holds: refused, not an error
    assert await shares.revoke(OWNER, str(link.id))  # as a page sends it
    assert await shares.snapshot(token) is None
    assert await shares.snapshot("unknown") is None
    assert await shares.snapshot("x" * 500) is None
    assert await shares.snapshot(None) is None


async def test_a_snapshot_lists_each_messages_files_by_their_links(service: ChatService, engine: Engine) -> None:
    notes = prepare_attachment("notes.txt", b"Pelicans eat fish.", AttachmentLimits())
    turn = await service.start_turn(OWNER, None, "Read this", attachments=[notes])
    await run_reply(service, turn)

    token = await ShareLinks(engine).create(OWNER, turn.conversation_id)
    snapshot = await ShareLinks(engine).snapshot(token)
    assert snapshot is not None
    [sent, reply] = snapshot["messages"]
    [file] = sent["files"]
    assert file == {"filename": "notes.txt", "is_image": False, "url": f"/api/shared/{token}/files/0"}
    assert reply["files"] == []
    # Nothing of the owner's own file link, stored or shown: it would outlive a revoke.
    with Session(engine) as session:
        [stored] = session.exec(select(ShareLink.snapshot)).all()
        [attachment] = session.exec(select(Attachment)).all()
    assert attachment.token not in stored and attachment.token not in str(snapshot)


async def test_links_per_conversation_and_snapshot_size_are_capped(service: ChatService, engine: Engine) -> None:
    shares = ShareLinks(engine, max_links=2, max_bytes=4096)
    turn = await service.start_turn(OWNER, None, "short")
    long_one = await service.start_turn(OWNER, None, "x" * 5000)

    await shares.create(OWNER, turn.conversation_id)
    await shares.create(OWNER, turn.conversation_id)
    with pytest.raises(Refused) as too_many:
        await shares.create(OWNER, turn.conversation_id)
    with pytest.raises(Refused) as too_large:
        await shares.create(OWNER, long_one.conversation_id)
    [first, *_] = await shares.links(OWNER)
    await shares.revoke(OWNER, first.id)
    await shares.create(OWNER, turn.conversation_id)  # a revoked link frees its place

    assert too_many.value.kind == RefusalKind.INVALID and "already has 2 links" in too_many.value.message
    assert too_large.value.kind == RefusalKind.TOO_LARGE and "Export it instead" in too_large.value.message


async def test_links_are_deleted_with_their_conversation(service: ChatService, engine: Engine) -> None:
    shares, library = ShareLinks(engine), ConversationLibrary(engine)
    turn = await service.start_turn(OWNER, None, "to be deleted")
    token = await shares.create(OWNER, turn.conversation_id)

    await library.delete(OWNER, turn.conversation_id)

    assert await shares.snapshot(token) is None
    with Session(engine) as session:
        assert session.exec(select(ShareLink)).all() == []


# -- revoking through the one door ------------------------------------------------------------------

#: What a hostile client may send as a link's id: each is refused as not found, and nothing changes.
#: ("\uff11" is a fullwidth 1: a digit to str.isdigit, not to a database.)
MALFORMED_IDS: list[Any] = [None, "", "abc", "-1", -1, 0, True, 1.5, "1.0", 2**70, "9" * 30, "\uff11", {"id": 1}, ["1"]]


@pytest.fixture
def actions(settings: Settings) -> Actions:
    return make_services(settings).actions


async def test_only_the_owner_revokes_a_link_and_hostile_ids_change_nothing(
    actions: Actions, service: ChatService
) -> None:
    turn = await service.start_turn(OWNER, None, "Shared notes")
    await run_reply(service, turn)
    owner, stranger = Caller(OWNER, "192.0.2.1"), Caller(STRANGER, "192.0.2.2")
    token = await actions.share(owner, turn.conversation_id)
    [link] = await actions.share_links(owner)

    refusals: list[Refused] = []
    for share_id in [link.id, str(link.id)]:  # another user's own link, as a number and as the page sends it
        with pytest.raises(Refused) as foreign:
            await actions.revoke_share(stranger, share_id)
        refusals.append(foreign.value)
    for share_id in MALFORMED_IDS:
        with pytest.raises(Refused) as malformed:
            await actions.revoke_share(owner, share_id)
        refusals.append(malformed.value)

    assert {(r.kind, r.message) for r in refusals} == {(RefusalKind.NOT_FOUND, refusals[0].message)}
    assert "not found" in refusals[0].message
    assert await actions.shares.snapshot(token) is not None  # still live
    assert await actions.share_links(stranger) == []
    assert (link.title, link.token, link.conversation_id) == ("Shared notes", token, turn.conversation_id)

    await actions.revoke_share(owner, str(link.id))

    assert await actions.shares.snapshot(token) is None
    assert await actions.share_links(owner) == []
    with pytest.raises(Refused) as again:
        await actions.revoke_share(owner, link.id)
    assert again.value.kind == RefusalKind.NOT_FOUND


# -- the files of a share, served through its link -------------------------------------------------


@pytest.fixture
def vision_settings(settings: Settings) -> Settings:
    return settings.model_copy(update=dict(model="fake-large", vision_models=("fake-large",)))


@pytest.fixture
def anonymous_api(
    vision_settings: Settings, monkeypatch: pytest.MonkeyPatch, fake: FakeLLMServer
) -> Iterator[httpx.AsyncClient]:
    """The real API app, in process, configured through the environment like the backend; no key is sent."""
    from chatbot_app.api.app import create_api

    monkeypatch.setenv("CHATBOT_API_KEYS", "sk-shares-" + "k" * 24)
    monkeypatch.setenv("CHATBOT_DATABASE_URL", vision_settings.database_url)
    monkeypatch.setenv("GROQ_API_KEY", vision_settings.groq_api_key or "")
    monkeypatch.setenv("GROQ_BASE_URL", fake.base_url)
    monkeypatch.setenv("CHATBOT_LOCAL_MODEL", "off")
    with services_from_environment():
        yield httpx.AsyncClient(transport=httpx.ASGITransport(app=create_api()), base_url="http://testserver")


NOTES = b"Pelicans eat fish."
PHOTO = make_image(64, 48, "PNG")


async def test_a_shares_files_are_served_through_its_link_until_it_is_revoked(
    vision_settings: Settings, engine: Engine, anonymous_api: httpx.AsyncClient
) -> None:
    files = [
        prepare_attachment("notes.txt", NOTES, AttachmentLimits()),
        prepare_attachment("p.png", PHOTO, AttachmentLimits()),
    ]
    actions = make_services(vision_settings).actions
    owner = Caller(OWNER)
    turn = await actions.chat.start_turn(OWNER, None, "Read these", attachments=files)
    await run_reply(actions.chat, turn)
    token = await actions.share(owner, turn.conversation_id)
    # Not in the share: a file sent after it was made, and one of another conversation of the same owner.
    later = await actions.chat.start_turn(
        OWNER,
        turn.conversation_id,
        "one more",
        attachments=[prepare_attachment("later.txt", b"later", AttachmentLimits())],
    )
    await run_reply(actions.chat, later)
    other = await actions.chat.start_turn(
        OWNER, None, "elsewhere", attachments=[prepare_attachment("other.txt", b"elsewhere", AttachmentLimits())]
    )
    await run_reply(actions.chat, other)
    other_token = await actions.share(owner, other.conversation_id)
    with Session(engine) as session:
        own_links = [row.token for row in session.exec(select(Attachment).order_by(Attachment.id)).all()]

    async with anonymous_api as client:
        notes = await client.get(f"/api/shared/{token}/files/0")
        photo = await client.get(f"/api/shared/{token}/files/1")
        beyond = await client.get(f"/api/shared/{token}/files/2")  # later.txt is not in this share
        other_file = await client.get(f"/api/shared/{other_token}/files/0")
        unknown = await client.get("/api/shared/" + "A" * 43 + "/files/0")
        by_file_link = await client.get(f"/api/shared/{own_links[0]}/files/0")
        negative = await client.get(f"/api/shared/{token}/files/-1")
        await actions.revoke_share(owner, (await actions.share_links(owner, turn.conversation_id))[0].id)
        revoked = await client.get(f"/api/shared/{token}/files/0")

    assert notes.status_code == 200 and notes.content == NOTES
    assert notes.headers["content-disposition"] == "attachment; filename*=UTF-8''notes.txt"
    assert notes.headers["cache-control"] == "no-store"  # a revoked link's files must not show from a cache
    assert notes.headers["x-content-type-options"] == "nosniff"
    assert photo.status_code == 200 and photo.headers["content-type"].startswith("image/")  # re-encoded when stored
    assert photo.headers["content-disposition"].startswith("inline;")
    assert other_file.status_code == 200 and other_file.content == b"elsewhere"
    assert beyond.status_code == unknown.status_code == by_file_link.status_code == revoked.status_code == 404
    assert negative.status_code == 422


async def test_a_link_made_before_files_were_numbered_serves_them_by_their_old_links(
    settings: Settings, engine: Engine, anonymous_api: httpx.AsyncClient
) -> None:
    actions = make_services(settings).actions
    turn = await actions.chat.start_turn(
        OWNER, None, "old", attachments=[prepare_attachment("old.txt", b"old notes", AttachmentLimits())]
    )
    token = await actions.share(Caller(OWNER), turn.conversation_id)
    with Session(engine) as session:
        [attachment] = session.exec(select(Attachment)).all()
        link = session.exec(select(ShareLink)).one()
        old_link = attachment.token
        link.snapshot = link.snapshot.replace(f'"attachment": {attachment.id}', f'"url": "/api/attachments/{old_link}"')
        session.add(link)
        session.commit()

    snapshot = await actions.shares.snapshot(token)
    async with anonymous_api as client:
        served = await client.get(f"/api/shared/{token}/files/0")

    assert snapshot is not None
    assert snapshot["messages"][0]["files"][0]["url"] == f"/api/shared/{token}/files/0"
    assert old_link not in str(snapshot)
    assert served.status_code == 200 and served.content == b"old notes"
