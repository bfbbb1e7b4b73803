"""Fixtures shared by every test layer: the fake LLM server, migrated databases, a ChatService.

Real peers only: PostgreSQL on 127.0.0.1:5432, SQLite files, and a fake Groq-compatible
HTTP server on loopback that the real `groq` SDK talks to.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from alembic.config import Config
from sqlalchemy import Engine, create_engine, text

from alembic import command
from chatbot_app.config import PROJECT_ROOT, Settings, get_settings
from chatbot_app.providers import ProviderRegistry
from chatbot_app.services.chat_service import ChatService
from chatbot_app.services.retry import RetryPolicy
from chatbot_app.services.wiring import Services, build_services, installed
from chatbot_app.storage.database import make_engine
from chatbot_app.storage.models import utcnow
from tests.fakes.fake_llm_server import FakeLLMServer
from tests.fakes.mcp_fixture import mcp_fake, mcp_server  # noqa: F401 (the real MCP server on loopback)

IN_CI = os.environ.get("CI", "").lower() == "true"
POSTGRES_ADMIN_URL = os.environ.get("CHATBOT_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
TEST_API_KEY = "gsk-test-" + "k" * 24


class Clock:
    """A clock the test moves forward (services take a `clock` callable)."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


def skip_or_fail(reason: str) -> None:
    """Under CI=true a missing peer is a failure; on a developer's machine it is a skip."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: required, not skipped)")
    pytest.skip(reason)


def migrate(url: str) -> None:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.attributes["database_url"] = url
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[FakeLLMServer]:
    server = FakeLLMServer().start()
    yield server
    server.stop()


@pytest.fixture
def fake(fake_llm: FakeLLMServer) -> Iterator[FakeLLMServer]:
    """The session's fake server, with a clean script and request log for this test."""
    fake_llm.reset()
    yield fake_llm
    fake_llm.reset()


@contextlib.contextmanager
def new_database(kind: str, directory: Path, prefix: str = "chatbot_test") -> Iterator[str]:
    """A new, empty database: a SQLite file in `directory`, or a PostgreSQL database dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{directory / f'{prefix}.db'}"
        return
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # any failure to connect means "no PostgreSQL here"
        admin.dispose()
        skip_or_fail(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {type(exc).__name__}")
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated to head, dropped afterwards."""
    with new_database("postgresql", tmp_path_factory.getbasetemp()) as url:
        migrate(url)
        yield url


def empty_tables(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM message"))
        connection.execute(text("DELETE FROM conversation"))
        connection.execute(text("DELETE FROM prompt_preset"))
        accounts = ("daily_usage", "token_reservation", "token_ledger", "api_key", "user_session", "share_link")
        for table in (*accounts, "app_user", "server_setting", "mcp_server"):
            connection.execute(text(f"DELETE FROM {table}"))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs once on SQLite and once on PostgreSQL, both migrated to head."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'test.db'}"
        migrate(url)
        return url
    url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    empty_tables(engine)
    engine.dispose()
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def settings(fake: FakeLLMServer, database_url: str) -> Settings:
    return Settings(
        groq_api_key=TEST_API_KEY,
        groq_base_url=fake.base_url,
        database_url=database_url,
        frame_interval_ms=20,
        local_model="off",  # the local model has its own tests; here Groq (the fake) answers
    )


#: Services made during the running test; tests/integration/conftest.py closes their providers after it.
OPEN_SERVICES: list[ChatService] = []


def make_service(settings: Settings, engine: Engine, retry: RetryPolicy | None = None) -> ChatService:
    """A ChatService with the providers `settings` configure; their connections close when the test ends."""
    service = ChatService(settings, engine, ProviderRegistry.from_settings(settings), retry=retry)
    OPEN_SERVICES.append(service)
    return service


@pytest.fixture
def service(settings: Settings, engine: Engine) -> ChatService:
    return make_service(settings, engine)


def make_services(settings: Settings) -> Services:
    """Every service, wired as the app wires them (services.wiring); their connections close when the test ends."""
    built = build_services(settings)
    OPEN_SERVICES.append(built.chat)
    return built


@contextlib.contextmanager
def services_from_environment() -> Iterator[Services]:
    """Settings read afresh from the (monkeypatched) environment, and services built and installed from them,
    as the backend does at start-up: for tests that drive the API or handlers in this process."""
    get_settings.cache_clear()
    try:
        with installed(make_services(get_settings())) as built:
            yield built
    finally:
        get_settings.cache_clear()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Fast layers first; browser tests last (Playwright's sync loop must not overlap async tests)."""
    items.sort(key=lambda item: item.get_closest_marker("e2e") is not None)
