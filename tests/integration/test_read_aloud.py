"""Read aloud: the speech service through the real groq and openai SDKs against the fake server, one WAV stream
of pieces, and the action on both databases — who may listen, what it counts against the limits and the quota,
and what hostile input gets."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from chatbot_app.config import Settings
from chatbot_app.providers.base import ErrorKind, ProviderError
from chatbot_app.services.actions import READ_ALOUD_UNAVAILABLE, Caller
from chatbot_app.services.chat_service import Turn
from chatbot_app.services.chat_settings import ChatSettings
from chatbot_app.services.export_links import ExportLinks, ExportTicket
from chatbot_app.services.quota import Spent, speech_tokens
from chatbot_app.services.refusals import RefusalKind, Refused
from chatbot_app.services.speech import (
    UNKNOWN_SIZE,
    Speaker,
    joined_wav,
    speaker_from_settings,
    speech_links,
    text_to_speech_configured,
    wav_parts,
)
from chatbot_app.services.spoken_text import FIRST_PIECE_CHARS
from chatbot_app.services.wiring import Services
from chatbot_app.storage.models import TokenLedger, User
from tests.conftest import TEST_API_KEY, make_services, services_from_environment
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer, Hold, spoken_wav

PASSWORD = "correct horse battery"
REPLY = (
    "## Plan\n\nFirst, install it with **pip**. Then read [the guide](https://x.test/guide).\n\n"
    "```python\nimport this\n```\n\n"
    + " ".join(f"Step {i} is short and clear, so the voice keeps going." for i in range(12))
)


# -- the speech service, through both SDKs ----------------------------------------------------------------


@pytest.fixture(params=["groq", "openai"])
def speaker(request: pytest.FixtureRequest, fake: FakeLLMServer) -> Iterator[Speaker]:
    """The speaker each configuration gives: Groq's with a Groq key, else the OpenAI-compatible server's."""
    if request.param == "groq":
        settings = Settings(groq_api_key=TEST_API_KEY, groq_base_url=fake.base_url, local_model="off")
    else:
        settings = Settings(openai_base_url=fake.openai_base_url, openai_speech_model="tts-1", local_model="off")
    built = speaker_from_settings(settings)
    assert built is not None and built.provider == request.param
    yield built


async def test_the_speaker_sends_the_text_and_voice_and_gets_wav(speaker: Speaker, fake: FakeLLMServer) -> None:
    audio = await speaker.synthesize("Hello there.", speaker.voice_for("no-such-voice"))

    assert audio == spoken_wav("Hello there.")
    [request] = fake.speech_requests()
    expected_path = "/openai/v1/audio/speech" if speaker.provider == "groq" else "/v1/audio/speech"
    assert request.path == expected_path
    model = "canopylabs/orpheus-v1-english" if speaker.provider == "groq" else "tts-1"
    assert request.body == {
        "model": model,
        "voice": speaker.voices[0],
        "input": "Hello there.",
        "response_format": "wav",
    }
    assert speaker.voice_for(speaker.voices[-1]) == speaker.voices[-1]


@pytest.mark.parametrize(("status", "kind"), [(400, ErrorKind.BAD_REQUEST), (401, ErrorKind.AUTH)])
async def test_a_failure_is_classified(speaker: Speaker, fake: FakeLLMServer, status: int, kind: ErrorKind) -> None:
    fake.enqueue(Behaviour(status=status, error_message="no"))

    with pytest.raises(ProviderError) as failure:
        await speaker.synthesize("Hello.", speaker.voices[0])

    assert failure.value.kind == kind


def test_no_service_configured_means_no_read_aloud() -> None:
    for settings in (Settings(local_model="off"), Settings(openai_base_url="http://127.0.0.1:9/v1")):
        assert speaker_from_settings(settings) is None and not text_to_speech_configured(settings)
    assert text_to_speech_configured(Settings(openai_base_url="http://127.0.0.1:9/v1", openai_speech_model="m"))


# -- one WAV stream of pieces ---------------------------------------------------------------------------------


async def _made(text: str) -> bytes:
    return spoken_wav(text)


async def test_pieces_become_one_wav_stream_of_unknown_length_in_order() -> None:
    pieces = ["One.", "Two, three.", "Four five six."]

    chunks = [chunk async for chunk in joined_wav(spoken_wav(pieces[0]), pieces[1:], _made)]

    stream = b"".join(chunks)
    assert len(chunks) == 3
    assert struct.unpack_from("<I", stream, 4)[0] == UNKNOWN_SIZE  # a browser plays it as it arrives
    whole = wav_parts(stream)
    assert whole.fmt == wav_parts(spoken_wav("x")).fmt
    assert whole.frames == b"".join(wav_parts(spoken_wav(p)).frames for p in pieces)


async def test_a_failed_or_foreign_piece_ends_the_stream_there() -> None:
    async def failing(text: str) -> bytes:
        if text == "Three.":
            raise ProviderError(ErrorKind.SERVER, "HTTP 500")
        return spoken_wav(text)

    async def other_format(text: str) -> bytes:
        wav = spoken_wav(text)
        return wav[:24] + struct.pack("<I", 16_000) + wav[28:]  # another sample rate

    failed = [c async for c in joined_wav(spoken_wav("One."), ["Two.", "Three.", "Four."], failing)]
    foreign = [c async for c in joined_wav(spoken_wav("One."), ["Two."], other_format)]

    assert len(failed) == 2 and len(foreign) == 1
    with pytest.raises(ValueError, match="not a WAV"):
        wav_parts(b"ID3 an mp3")


async def test_the_next_piece_is_made_while_one_plays_and_dropped_when_the_listener_leaves() -> None:
    asked = {text: asyncio.Event() for text in ("Two.", "Three.")}
    cancelled = asyncio.Event()

    async def slow(text: str) -> bytes:
        asked[text].set()
        if text == "Three.":
            try:
                await asyncio.Event().wait()  # never answers by itself
            except asyncio.CancelledError:
                cancelled.set()
                raise
        return spoken_wav(text)

    stream = joined_wav(spoken_wav("One."), ["Two.", "Three."], slow)
    await anext(stream)
    await asyncio.wait_for(asked["Two."].wait(), 5)  # asked for while the first piece is sent
    assert not asked["Three."].is_set()
    await anext(stream)
    await asyncio.wait_for(asked["Three."].wait(), 5)

    await stream.aclose()

    assert cancelled.is_set()


# -- the action: Actions.read_aloud and the link it makes -----------------------------------------------------


@pytest.fixture
def built(settings: Settings) -> Services:
    return make_services(
        settings.model_copy(
            update=dict(auth_methods=("local",), allow_signup=True, daily_tokens_per_user=100_000, secret_key="s" * 32)
        )
    )


async def a_user(built: Services, email: str) -> tuple[User, Caller]:
    user = await built.accounts.sign_up(email, PASSWORD)
    return user, Caller(user.owner_id, "192.0.2.60")


async def a_turn(built: Services, caller: Caller, fake: FakeLLMServer, text: str = REPLY) -> Turn:
    """A new conversation of the caller's, whose finished reply says `text`."""
    fake.enqueue_stream(Behaviour(text=text))
    started = await built.actions.send(caller, None, "Tell me the plan", title=False)
    await built.replies.join(started.turn.reply_id)
    return started.turn


async def a_reply(built: Services, caller: Caller, fake: FakeLLMServer, text: str = REPLY) -> int:
    """A finished reply of the caller's that says `text`: its id."""
    return (await a_turn(built, caller, fake, text)).reply_id


def ledger(engine: Engine, user: User) -> tuple[int, int]:
    with Session(engine) as session:
        rows = session.exec(select(TokenLedger).where(TokenLedger.user_id == user.id)).all()
        return sum(r.used_tokens for r in rows), sum(r.reserved_tokens for r in rows)


async def listen(built: Services, path: str) -> bytes:
    audio = await built.actions.speech_by_link(path.rsplit("/", 1)[1])
    return b"".join([chunk async for chunk in audio])


async def test_a_reply_is_read_in_pieces_in_the_conversations_voice_and_counted(
    built: Services, engine: Engine, fake: FakeLLMServer
) -> None:
    user, caller = await a_user(built, "ada@example.com")
    turn = await a_turn(built, caller, fake)
    reply_id = turn.reply_id
    await built.chat.save_settings(caller.owner_id, turn.conversation_id, ChatSettings(voice="troy"))
    before = ledger(engine, user)[0]

    path = await built.actions.read_aloud(caller, reply_id)
    audio = await listen(built, path)

    requests = fake.speech_requests()
    said = [r.body["input"] for r in requests]
    assert path.startswith("/api/speech/")
    assert said[0].startswith("Plan. First,") and len(said) > 2
    assert len(said[0]) <= FIRST_PIECE_CHARS  # the first piece is short: the sound starts at once
    assert all(len(s) <= 200 for s in said)
    assert "A code block in Python." in " ".join(said) and "import" not in " ".join(said)
    assert "**" not in " ".join(said) and "https" not in " ".join(said)
    assert {r.body["voice"] for r in requests} == {"troy"}
    assert wav_parts(audio).frames == b"".join(wav_parts(spoken_wav(s)).frames for s in said)
    used, reserved = ledger(engine, user)
    assert used - before == speech_tokens(sum(len(s) for s in said)) and reserved == 0


async def test_a_link_plays_once_and_only_the_owners_replies(built: Services, fake: FakeLLMServer) -> None:
    _, caller = await a_user(built, "ada@example.com")
    _, stranger = await a_user(built, "eve@example.com")
    reply_id = await a_reply(built, caller, fake, "Short and sweet.")
    path = await built.actions.read_aloud(caller, reply_id)
    await listen(built, path)

    with pytest.raises(Refused) as used_again:
        await listen(built, path)
    with pytest.raises(Refused) as foreign:
        await built.actions.read_aloud(stranger, reply_id)

    assert used_again.value.kind == foreign.value.kind == RefusalKind.NOT_FOUND
    assert len(fake.speech_requests()) == 1


async def test_hostile_reply_ids_are_refused_before_any_work(built: Services, fake: FakeLLMServer) -> None:
    _, caller = await a_user(built, "ada@example.com")
    reply_id = await a_reply(built, caller, fake, "Hello.")

    for hostile in (str(reply_id), True, 0, -3, 2**70, float(reply_id), None, [reply_id], {"id": reply_id}, "1 OR 1"):
        with pytest.raises(Refused) as refused:
            await built.actions.read_aloud(caller, hostile)
        assert refused.value.kind == RefusalKind.NOT_FOUND
    assert not fake.speech_requests()


async def test_forged_altered_foreign_and_malformed_links_are_refused(built: Services, fake: FakeLLMServer) -> None:
    _, caller = await a_user(built, "ada@example.com")
    reply_id = await a_reply(built, caller, fake, "Hello.")
    token = (await built.actions.read_aloud(caller, reply_id)).rsplit("/", 1)[1]
    export_token = await ExportLinks(built.settings).token(ExportTicket(caller.owner_id, None, "json"))
    other_deployment = await speech_links(Settings(secret_key="o" * 32)).seal([caller.owner_id, reply_id])
    wrong_fields = await speech_links(built.settings).seal([caller.owner_id, str(reply_id)])

    for bad in (
        token[:-2] + ("AA" if token[-2:] != "AA" else "BB"),
        export_token,  # a token of another kind of link
        other_deployment,
        wrong_fields,
        "x" * 5000,
        "",
        None,
        12,
    ):
        with pytest.raises(Refused) as refused:
            await built.actions.speech_by_link(bad)
        assert refused.value.kind == RefusalKind.NOT_FOUND
    assert not fake.speech_requests()
    assert await listen(built, f"/api/speech/{token}")  # the real one still plays


async def test_a_reply_being_written_or_without_words_is_not_read(built: Services, fake: FakeLLMServer) -> None:
    _, caller = await a_user(built, "ada@example.com")
    silent = await a_reply(built, caller, fake, "---\n\n***")
    fake.enqueue_stream(Behaviour(tokens=400, tokens_per_s=20))
    writing = await built.actions.send(caller, None, "Go on", title=False)

    with pytest.raises(Refused) as nothing:
        await built.actions.read_aloud(caller, silent)
    with pytest.raises(Refused) as unfinished:
        await built.actions.read_aloud(caller, writing.turn.reply_id)

    assert nothing.value.kind == RefusalKind.INVALID
    assert unfinished.value.kind == RefusalKind.NOT_FOUND
    await built.actions.stop(caller, writing.turn.reply_id)


async def test_only_the_start_of_a_very_long_reply_is_read(
    settings: Settings, engine: Engine, fake: FakeLLMServer
) -> None:
    built = make_services(settings.model_copy(update=dict(speech_max_chars=300, speech_chunk_chars=120)))
    caller = Caller("anonymous-reader-" + "a" * 20, "192.0.2.61")
    reply_id = await a_reply(built, caller, fake, "A sentence of a long reply. " * 400)

    await listen(built, await built.actions.read_aloud(caller, reply_id))

    said = [r.body["input"] for r in fake.speech_requests()]
    assert sum(len(s) for s in said) <= 300 and all(len(s) <= 120 for s in said)


async def test_read_aloud_counts_against_the_chat_limits(settings: Settings, fake: FakeLLMServer) -> None:
    built = make_services(settings.model_copy(update=dict(rate_limit_per_minute=2)))
    caller = Caller("anonymous-reader-" + "b" * 20, "192.0.2.62")
    reply_id = await a_reply(built, caller, fake, "Hello.")  # the message counts one

    await built.actions.read_aloud(caller, reply_id)
    with pytest.raises(Refused) as refused:
        await built.actions.read_aloud(caller, reply_id)

    assert refused.value.kind == RefusalKind.RATE_LIMIT


async def test_a_long_reply_counts_one_message_per_thousand_characters_read(
    settings: Settings, fake: FakeLLMServer
) -> None:
    built = make_services(settings.model_copy(update=dict(rate_limit_per_minute=4, speech_max_chars=6000)))
    caller = Caller("anonymous-reader-" + "e" * 20, "192.0.2.65")
    reply_id = await a_reply(built, caller, fake, "A sentence of a long reply. " * 80)  # the message counts one
    assert 2000 < len("A sentence of a long reply. " * 80) <= 3000

    await built.actions.read_aloud(caller, reply_id)  # 3 messages' worth: all that was left
    with pytest.raises(Refused) as refused:
        await built.actions.read_aloud(caller, reply_id)

    assert refused.value.kind == RefusalKind.RATE_LIMIT


async def test_with_its_links_unreachable_a_link_is_refused_as_unavailable(
    built: Services, fake: FakeLLMServer
) -> None:
    _, caller = await a_user(built, "ruth@example.com")
    path = await built.actions.read_aloud(caller, await a_reply(built, caller, fake))
    unreachable = make_services(
        built.settings.model_copy(update=dict(secret_key=None, redis_url="redis://127.0.0.1:1"))
    )

    with pytest.raises(Refused) as refused:
        await unreachable.actions.speech_by_link(path.rsplit("/", 1)[1])

    assert str(refused.value) == READ_ALOUD_UNAVAILABLE


async def test_past_the_quota_nothing_is_synthesized(settings: Settings, engine: Engine, fake: FakeLLMServer) -> None:
    built = make_services(
        settings.model_copy(update=dict(auth_methods=("local",), allow_signup=True, daily_tokens_per_user=400))
    )
    user, caller = await a_user(built, "ada@example.com")
    reply_id = await a_reply(built, caller, fake, "Hi.")
    long_id = await a_reply(built, caller, fake, "This reply is longer than what is left of the day. " * 8)
    link = await built.actions.read_aloud(caller, reply_id)

    with pytest.raises(Refused) as at_the_click:
        await built.actions.read_aloud(caller, long_id)
    used, _ = ledger(engine, user)
    spend = 400 - used - 1  # all but one token of the day, spent elsewhere
    await built.quota.settle(await built.quota.reserve(caller.owner_id, spend, 0), Spent("other", spend, 0))
    with pytest.raises(Refused) as at_the_link:  # the day was spent between the click and the playing
        await listen(built, link)

    assert at_the_click.value.kind == at_the_link.value.kind == RefusalKind.QUOTA
    assert not fake.speech_requests()
    assert ledger(engine, user) == (399, 0)


async def test_a_listener_who_leaves_is_counted_for_what_was_synthesized(
    built: Services, engine: Engine, fake: FakeLLMServer
) -> None:
    user, caller = await a_user(built, "ada@example.com")
    reply_id = await a_reply(built, caller, fake)
    before = ledger(engine, user)[0]
    held = Hold()
    fake.enqueue_batch(Behaviour(), Behaviour(hold=held))  # the second piece is not made until released

    audio: AsyncIterator[bytes] = await built.actions.speech_by_link(
        (await built.actions.read_aloud(caller, reply_id)).rsplit("/", 1)[1]
    )
    first = await anext(audio)  # the sound starts while the next piece is being made
    await asyncio.to_thread(held.reached.wait, 10)
    await audio.aclose()  # the page's audio element went away

    [first_piece, _] = [r.body["input"] for r in fake.speech_requests()]
    assert wav_parts(first).frames == wav_parts(spoken_wav(first_piece)).frames
    assert ledger(engine, user) == (before + speech_tokens(len(first_piece)), 0)


async def test_a_failure_on_the_first_piece_is_an_error_and_counts_nothing(
    built: Services, engine: Engine, fake: FakeLLMServer
) -> None:
    user, caller = await a_user(built, "ada@example.com")
    reply_id = await a_reply(built, caller, fake, "Hello there.")
    before = ledger(engine, user)
    fake.enqueue_batch(Behaviour(status=400, error_message="bad voice"))

    with pytest.raises(ProviderError):
        await built.actions.speech_by_link((await built.actions.read_aloud(caller, reply_id)).rsplit("/", 1)[1])

    assert ledger(engine, user) == before


async def test_without_a_speech_service_read_aloud_is_unavailable(settings: Settings) -> None:
    built = make_services(settings.model_copy(update=dict(groq_api_key=None, openai_base_url="http://127.0.0.1:9/v1")))

    with pytest.raises(Refused) as refused:
        await built.actions.read_aloud(Caller("anonymous-" + "c" * 20), 1)

    assert refused.value.kind == RefusalKind.UNAVAILABLE


# -- the route -------------------------------------------------------------------------------------------------


async def test_the_route_streams_wav_once_per_link_without_a_key(
    fake: FakeLLMServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from chatbot_app.api.app import create_api
    from tests.conftest import migrate

    database_url = f"sqlite:///{tmp_path / 'api.db'}"
    migrate(database_url)
    for name, value in {
        "CHATBOT_API_KEYS": "k" * 20,
        "CHATBOT_DATABASE_URL": database_url,
        "GROQ_API_KEY": TEST_API_KEY,
        "GROQ_BASE_URL": fake.base_url,
        "CHATBOT_LOCAL_MODEL": "off",
    }.items():
        monkeypatch.setenv(name, value)
    with services_from_environment() as built:
        caller = Caller("anonymous-reader-" + "d" * 20, "192.0.2.63")
        path = await built.actions.read_aloud(caller, await a_reply(built, caller, fake, "Hello there. Bye."))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_api()), base_url="http://t") as client:
            played = await client.get(path)
            again = await client.get(path)
            forged = await client.get("/api/speech/" + "x" * 100)

    assert played.status_code == 200 and played.headers["content-type"] == "audio/wav"
    assert played.headers["cache-control"] == "no-store"
    assert wav_parts(played.content).frames
    assert again.status_code == forged.status_code == 404
