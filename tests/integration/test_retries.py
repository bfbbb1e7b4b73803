"""Provider faults before the first token are retried with a visible hint; later ones are not."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from chatbot_app.config import Settings
from chatbot_app.services.chat_service import ChatService
from chatbot_app.services.reply_jobs import ReplyResult
from chatbot_app.services.retry import RetryPolicy
from chatbot_app.storage.models import Message
from tests.conftest import make_service
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer
from tests.replies import notices, run_reply

OWNER = "owner-" + "r" * 20
FAST = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.02)


@pytest.fixture
def retrying(settings: Settings, engine: Engine) -> ChatService:
    return make_service(settings, engine, retry=FAST)


async def reply(service: ChatService, text: str = "Hello") -> tuple[ReplyResult, list[str], int]:
    """The reply as a follower saw it, the retry hints it showed, and its id."""
    turn = await service.start_turn(OWNER, None, text)
    result, events = await run_reply(service, turn)
    assert result.finished is not None
    return result, notices(events), turn.reply_id


async def test_a_rate_limit_is_retried_after_retry_after_with_a_hint(
    retrying: ChatService, fake: FakeLLMServer
) -> None:
    fake.enqueue(Behaviour(status=429, retry_after="0.05"), Behaviour(text="Made it."))

    result, hints, _ = await reply(retrying)

    assert hints == ["The provider is rate-limiting requests; retrying in 0 s (try 2 of 3)…"]
    assert result.finished.status == "complete" and result.text == "Made it."
    assert len(fake.chat_requests()) == 2


async def test_server_errors_are_retried_a_bounded_number_of_times(
    retrying: ChatService, fake: FakeLLMServer, engine: Engine
) -> None:
    fake.enqueue(*[Behaviour(status=503)] * 5)

    result, hints, reply_id = await reply(retrying)

    assert len(fake.chat_requests()) == 3
    assert [hint.split(";")[0] for hint in hints] == ["The provider had an error"] * 2
    assert (result.finished.status, result.finished.error_kind) == ("error", "server")
    with Session(engine) as session:
        assert session.get(Message, reply_id).status == "error"


async def test_a_connection_refused_is_retried_then_reported(settings: Settings, engine: Engine) -> None:
    closed = Settings(groq_api_key="gsk-x", groq_base_url="http://127.0.0.1:9", model="fake-large", local_model="off")
    service = make_service(closed, engine, retry=FAST)

    result, hints, _ = await reply(service)

    assert len(hints) == 2
    assert result.finished.error_kind == "connection"


@pytest.mark.parametrize(
    ("behaviour", "kind"),
    [
        (Behaviour(status=401), "auth"),
        (Behaviour(status=429, retry_after="600"), "rate_limit"),  # too long to wait for: say so instead
        (Behaviour(status=400, error_message="context_length_exceeded"), "context_too_long"),
    ],
)
async def test_failures_that_a_retry_cannot_fix_are_reported_at_once(
    retrying: ChatService, fake: FakeLLMServer, behaviour: Behaviour, kind: str
) -> None:
    fake.enqueue(behaviour)

    result, hints, _ = await reply(retrying)

    assert len(fake.chat_requests()) == 1
    assert hints == []
    assert result.finished.error_kind == kind


async def test_a_cut_after_tokens_were_shown_is_not_retried_and_keeps_the_text(
    retrying: ChatService, fake: FakeLLMServer, engine: Engine
) -> None:
    fake.enqueue(Behaviour(tokens=50, cut_after_tokens=10))

    result, _, reply_id = await reply(retrying)

    assert len(fake.chat_requests()) == 1
    assert result.finished.status == "error" and result.finished.error_kind == "connection"
    with Session(engine) as session:
        stored = session.get(Message, reply_id)
        assert stored.status == "error" and stored.content == result.text != ""
