"""A second process for the dead-reply tests: start one reply job, then run until killed.

Usage: python reply_runner.py DATABASE_URL REDIS_URL PREFIX GROQ_BASE_URL OWNER
Prints one JSON line once the job has started: its reply id and conversation id.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from chatbot_app.config import Settings
from chatbot_app.providers import ProviderRegistry
from chatbot_app.services.chat_service import ChatService
from chatbot_app.services.reply_jobs import ReplyJobs
from chatbot_app.services.reply_liveness import RedisLiveness
from chatbot_app.services.reply_log import RedisReplyLog
from chatbot_app.storage.database import make_engine
from tests.conftest import TEST_API_KEY


async def main(database_url: str, redis_url: str, prefix: str, groq_base_url: str, owner: str) -> None:
    settings = Settings(
        groq_api_key=TEST_API_KEY,
        groq_base_url=groq_base_url,
        database_url=database_url,
        frame_interval_ms=20,
        local_model="off",
    )
    service = ChatService(settings, make_engine(database_url), ProviderRegistry.from_settings(settings))
    log = RedisReplyLog(redis_url, prefix=prefix)
    jobs = ReplyJobs(service, log, liveness=RedisLiveness(redis_url, prefix=prefix))
    turn = await service.start_turn(owner, None, "Tell me a long story.")
    await jobs.start(turn)
    print(json.dumps({"reply_id": turn.reply_id, "conversation_id": turn.conversation_id}), flush=True)
    await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
