"""Quotas wired into the reply paths, over real HTTP: each reply's tokens are counted for its user (the
ReplyJobs usage hook), and past the day's quota /api and /v1 answer 429 without calling the provider.

Reuses test_accounts_api's production backend fixture (CHATBOT_AUTH=local), with its own database.
"""

from __future__ import annotations

import asyncio

import openai
import pytest

from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer
from tests.integration.test_accounts_api import Server, client, server, sign_up

__all__ = ["server"]  # the fixture, imported for this module


def test_usage_is_counted_per_user_and_a_spent_quota_stops_the_next_reply(server: Server, fake: FakeLLMServer) -> None:
    _, admin = sign_up(server, "boss@example.com")  # the first account of this database: the admin
    _, user = sign_up(server, "spender@example.com")
    _, key = asyncio.run(server.accounts.create_api_key(user.id, "script"))  # type: ignore[arg-type]

    fake.enqueue_batch(Behaviour(text="Counted."))
    with client(server, key) as api:
        assert api.post("/api/chat_batch", json={"message": "Count this"}).status_code == 200
    [row] = asyncio.run(server.accounts.usage(user.id))  # type: ignore[arg-type]
    assert (row.model, row.messages) == ("fake-large", 1)
    assert row.prompt_tokens > 0 and row.completion_tokens > 0
    # /v1 calls the provider itself: it counts too, whole or streamed.
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0) as sdk:
        fake.enqueue_batch(Behaviour(text="Whole."))
        sdk.chat.completions.create(model="groq:fake-large", messages=[{"role": "user", "content": "Hi"}])
        fake.enqueue_stream(Behaviour(text="Streamed."))
        stream = sdk.chat.completions.create(
            model="groq:fake-large", messages=[{"role": "user", "content": "Hi"}], stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Streamed."
    [row] = asyncio.run(server.accounts.usage(user.id))  # type: ignore[arg-type]
    assert row.messages == 3

    asyncio.run(server.accounts.set_quota(admin.id, user.id, 1))  # type: ignore[arg-type]
    before = len(fake.chat_requests())
    with client(server, key) as api:
        answer = api.post("/api/chat_batch", json={"message": "One more"})
    assert answer.status_code == 429
    assert "You have used today's 1 tokens" in answer.json()["detail"]
    with (
        openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0) as sdk,
        pytest.raises(openai.RateLimitError, match="today's 1 tokens"),
    ):
        sdk.chat.completions.create(model="groq:fake-large", messages=[{"role": "user", "content": "Hi"}])
    assert len(fake.chat_requests()) == before  # nothing reached the provider

    asyncio.run(server.accounts.set_quota(admin.id, user.id, None))  # back to the default: unlimited
    fake.enqueue_batch(Behaviour(text="Again."))
    with client(server, key) as api:
        assert api.post("/api/chat_batch", json={"message": "And now?"}).status_code == 200
