"""The environment of a production backend under benchmark: the fake Groq server answers, no local model."""

from __future__ import annotations

from tests.conftest import TEST_API_KEY
from tests.e2e.live_app import app_environment


def bench_environment(database_url: str, fake_base_url: str, **extra: str) -> dict[str, str]:
    """`reflex run --env prod`'s environment for a benchmark, with `extra` settings on top."""
    return app_environment(
        CHATBOT_DATABASE_URL=database_url,
        GROQ_API_KEY=TEST_API_KEY,
        GROQ_BASE_URL=fake_base_url,
        CHATBOT_MODEL="fake-large",
        CHATBOT_LOCAL_MODEL="off",
        **extra,
    )
