"""The fake server's scripts aimed at a prompt: one session's fake serves every app, and a late request of
another test (a title after a stopped reply, say) must not take the script a test set for its own."""

from __future__ import annotations

from groq import AsyncGroq

from tests.conftest import TEST_API_KEY
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer


async def ask(client: AsyncGroq, prompt: str) -> str:
    completion = await client.chat.completions.create(
        model="fake-large", messages=[{"role": "user", "content": prompt}]
    )
    return completion.choices[0].message.content or ""


async def test_an_aimed_script_waits_for_its_prompt_and_an_unaimed_one_serves_the_rest(fake: FakeLLMServer) -> None:
    fake.default = Behaviour(text="default answer")
    fake.enqueue_batch(Behaviour(text="Otter Facts", for_prompt="about otters"), Behaviour(text="first come"))
    client = AsyncGroq(api_key=TEST_API_KEY, base_url=fake.base_url)
    try:
        assert await ask(client, "A late title request of another test") == "first come"
        assert await ask(client, "Another stray request") == "default answer"  # the aimed one stays
        assert await ask(client, "Tell me about otters") == "Otter Facts"
        assert await ask(client, "Tell me about otters") == "default answer"  # taken once
    finally:
        await client.close()
