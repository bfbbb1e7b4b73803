"""services/actions.py on both databases: what each action owns whichever door calls it — stopping the reply a
change replaces (and waiting until it is stored), who may stop a reply, and what the quota counts."""

from __future__ import annotations

import asyncio
import logging

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from chatbot_app.config import Settings
from chatbot_app.services.actions import Caller
from chatbot_app.services.quota import audio_tokens
from chatbot_app.services.refusals import RefusalKind, Refused
from chatbot_app.services.reply_log import Frame
from chatbot_app.services.wiring import Services
from chatbot_app.storage.models import Message, MessageStatus, TokenLedger, User
from tests.conftest import make_services
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer, audio_seconds
from tests.fakes.sample_files import make_wav

PASSWORD = "correct horse battery"
SLOW = Behaviour(tokens=400, tokens_per_s=20)  # 20 s: it is still streaming whatever the test does meanwhile


@pytest.fixture
def built(settings: Settings) -> Services:
    return make_services(
        settings.model_copy(update=dict(auth_methods=("local",), allow_signup=True, daily_tokens_per_user=100_000))
    )


async def a_user(built: Services, email: str) -> tuple[User, Caller]:
    user = await built.accounts.sign_up(email, PASSWORD)
    return user, Caller(user.owner_id, "192.0.2.50")


async def streaming(built: Services, reply_id: int) -> None:
    """Until the reply's first text is in its log."""
    async for _, events in built.replies.follow(reply_id):
        if any(isinstance(e, Frame) and e.text for e in events):
            return


def status_of(engine: Engine, reply_id: int) -> str | None:
    with Session(engine) as session:
        message = session.get(Message, reply_id)
        return None if message is None else message.status


def ledger(engine: Engine, user: User) -> tuple[int, int]:
    with Session(engine) as session:
        rows = session.exec(select(TokenLedger).where(TokenLedger.user_id == user.id)).all()
        return sum(r.used_tokens for r in rows), sum(r.reserved_tokens for r in rows)


async def test_disabling_a_user_stops_their_running_replies(
    built: Services, engine: Engine, fake: FakeLLMServer
) -> None:
    admin, _ = await a_user(built, "admin@example.com")
    user, caller = await a_user(built, "ada@example.com")
    fake.enqueue_stream(SLOW)
    started = await built.actions.send(caller, None, "Tell me a long story", title=False)
    await streaming(built, started.turn.reply_id)

    await built.actions.set_user_disabled(admin.id or 0, user.id or 0, True)

    assert status_of(engine, started.turn.reply_id) == MessageStatus.STOPPED  # stored before the call returned
    assert not built.replies.is_running_here(started.turn.reply_id)


async def test_the_last_admin_cannot_be_disabled_through_the_action(built: Services) -> None:
    admin, _ = await a_user(built, "admin@example.com")

    with pytest.raises(Refused) as refused:
        await built.actions.set_user_disabled(admin.id or 0, admin.id or 0, True)

    assert refused.value.kind == RefusalKind.FORBIDDEN


async def test_regenerating_stops_the_reply_it_replaces_and_waits_until_it_is_stored(
    built: Services, engine: Engine, fake: FakeLLMServer, caplog: pytest.LogCaptureFixture
) -> None:
    _, caller = await a_user(built, "ada@example.com")
    fake.enqueue_stream(SLOW)
    first = await built.actions.send(caller, None, "Answer slowly", title=False)
    reply_id = first.turn.reply_id
    await streaming(built, reply_id)
    caplog.set_level(logging.INFO, logger="chatbot_app.services.reply_jobs")

    again = await built.actions.regenerate(caller, first.turn.conversation_id)

    [ended] = [r for r in caplog.records if r.getMessage() == "provider_call" and r.request_id == f"reply-{reply_id}"]
    assert again.stopped_first
    # Its end was stored before its row was replaced (a row removed under a running job ends as a conflict).
    assert (ended.status, ended.conflict) == (MessageStatus.STOPPED, False)
    await built.replies.join(again.turn.reply_id)
    assert status_of(engine, again.turn.reply_id) == MessageStatus.COMPLETE


async def test_only_the_owner_can_stop_a_reply(built: Services, engine: Engine, fake: FakeLLMServer) -> None:
    _, owner = await a_user(built, "ada@example.com")
    _, intruder = await a_user(built, "mallory@example.com")
    fake.enqueue_stream(SLOW)
    started = await built.actions.send(owner, None, "Mine", title=False)
    await streaming(built, started.turn.reply_id)

    refusals = []
    for reply_id in (started.turn.reply_id, started.turn.user_message_id, "1", True, -1, 10**12):
        with pytest.raises(Refused) as refused:
            await built.actions.stop(intruder, reply_id)
        refusals.append(refused.value.kind)
    running = built.replies.is_running_here(started.turn.reply_id)
    await built.actions.stop(owner, started.turn.reply_id)
    await built.replies.join(started.turn.reply_id)

    assert refusals == [RefusalKind.NOT_FOUND] * 6 and running
    assert status_of(engine, started.turn.reply_id) == MessageStatus.STOPPED


async def test_a_stopped_reply_counts_what_was_streamed_and_releases_the_rest(
    built: Services, engine: Engine, fake: FakeLLMServer
) -> None:
    user, caller = await a_user(built, "ada@example.com")
    fake.enqueue_stream(SLOW)
    started = await built.actions.send(caller, None, "Count slowly", title=False)
    await streaming(built, started.turn.reply_id)
    held = ledger(engine, user)

    await built.actions.stop(caller, started.turn.reply_id)
    await built.replies.join(started.turn.reply_id)
    used, reserved = ledger(engine, user)

    assert held[0] == 0 and held[1] > 1024  # the prompt's bound and the whole max_tokens were held
    assert reserved == 0 and 0 < used < held[1]  # the stopped reply's estimate, not what was held


async def test_summaries_and_transcription_count_against_the_quota(
    built: Services, engine: Engine, fake: FakeLLMServer
) -> None:
    user, caller = await a_user(built, "ada@example.com")
    started = await built.actions.send(caller, None, "Something to summarize", title=False)
    await built.replies.join(started.turn.reply_id)
    after_reply = ledger(engine, user)[0]

    await built.actions.summarize(caller, started.turn.conversation_id)
    after_summary = ledger(engine, user)[0]
    text = await built.actions.transcribe(caller, "mic.wav", make_wav())
    after_voice = ledger(engine, user)[0]

    assert 0 < after_reply < after_summary
    assert text and after_voice - after_summary == audio_tokens(audio_seconds(make_wav()))


async def test_concurrent_sends_past_the_quota_are_refused_at_the_door_or_in_their_reply(
    settings: Settings, engine: Engine, fake: FakeLLMServer
) -> None:
    built = make_services(
        settings.model_copy(update=dict(auth_methods=("local",), allow_signup=True, daily_tokens_per_user=3_000))
    )
    user, caller = await a_user(built, "ada@example.com")

    async def send() -> str:
        try:
            started = await built.actions.send(caller, None, "hello", title=False)
        except Refused as refusal:
            return refusal.kind
        await built.replies.join(started.turn.reply_id)
        return status_of(engine, started.turn.reply_id) or ""

    outcomes = await asyncio.gather(*(send() for _ in range(12)))
    used, reserved = ledger(engine, user)

    assert used <= 3_000 and reserved == 0
    assert "complete" in outcomes and set(outcomes) <= {"complete", "error", RefusalKind.QUOTA}
