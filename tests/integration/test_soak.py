"""A bounded soak on loopback: 20 concurrent sessions, 1,000 messages, random provider faults.

It ends with every user message stored and every reply either complete or carrying its
partial text with an error status, and prints the counts.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from chatbot_app.config import Settings
from chatbot_app.services.reply_jobs import ReplyJobs
from chatbot_app.services.reply_log import MemoryReplyLog
from chatbot_app.services.retry import RetryPolicy
from chatbot_app.storage.models import Message
from tests.conftest import make_service
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer
from tests.replies import run_reply

SESSIONS = 20
MESSAGES = 1_000
FAULTS = [
    (0.70, Behaviour(tokens=12)),
    (0.10, Behaviour(status=429, retry_after="0.01")),
    (0.06, Behaviour(status=503)),
    (0.06, Behaviour(tokens=30, cut_after_tokens=8)),
    (0.04, Behaviour(status=401)),
    (0.04, Behaviour(tokens=12, first_token_delay_s=0.05)),
]


def random_faults(seed: int) -> object:
    rng = random.Random(seed)
    weights, behaviours = zip(*FAULTS, strict=True)
    return lambda: rng.choices(behaviours, weights)[0]


@pytest.mark.parametrize("seed", [7])
async def test_soak_stores_every_message_and_finishes_every_reply(
    settings: Settings, engine: Engine, fake: FakeLLMServer, seed: int, record_property: pytest.RecordProperty
) -> None:
    fake.chooser = random_faults(seed)  # type: ignore[assignment]
    service = make_service(settings, engine, retry=RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.02))
    finals: Counter[str] = Counter()
    jobs = ReplyJobs(service, MemoryReplyLog())

    async def session(number: int) -> None:
        owner = f"soak-owner-{number:02d}-" + "x" * 16
        conversation_id = None
        for turn_number in range(MESSAGES // SESSIONS):
            turn = await service.start_turn(owner, conversation_id, f"message {turn_number} from session {number}")
            conversation_id = turn.conversation_id
            reply, _ = await run_reply(service, turn, jobs=jobs)
            assert reply.finished is not None
            finals[f"{reply.finished.status}:{reply.finished.error_kind or '-'}"] += 1

    await asyncio.gather(*(session(n) for n in range(SESSIONS)))

    with Session(engine) as session_:
        users = session_.exec(select(func.count()).where(Message.role == "user")).one()
        by_status = dict(session_.exec(select(Message.status, func.count()).group_by(Message.status)).all())
        empty_complete = session_.exec(
            select(func.count()).where(Message.role == "assistant", Message.status == "complete", Message.content == "")
        ).one()
        cut_without_text = session_.exec(
            select(func.count()).where(Message.error_kind == "connection", Message.content == "")
        ).one()
    print(f"\nsoak: {users} user messages stored; replies by status {by_status}; finals {dict(finals)}")
    record_property("soak_counts", {"users": users, "replies": by_status, "finals": dict(finals)})

    assert users == MESSAGES
    assert sum(finals.values()) == MESSAGES
    assert set(by_status) <= {"complete", "error"}  # nothing left `streaming`
    assert by_status["complete"] + by_status.get("error", 0) == 2 * MESSAGES  # user rows are `complete` too
    assert empty_complete == 0
    assert finals["error:connection"] > 0 and cut_without_text == 0  # cuts mid-stream kept their partial text
