"""The migrations build exactly the schema the SQLModel tables describe, and can be undone and redone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlmodel import SQLModel

import chatbot_app.storage.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from alembic import command
from chatbot_app.config import PROJECT_ROOT
from chatbot_app.storage.database import make_engine
from chatbot_app.storage.search import include_name
from tests.conftest import new_database

APP_TABLES = set(SQLModel.metadata.tables)
HEAD = ScriptDirectory.from_config(Config(str(PROJECT_ROOT / "alembic.ini"))).get_current_head()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all: a new SQLite file, or a new PostgreSQL database dropped afterwards."""
    with new_database(request.param, tmp_path, "chatbot_migrate") as url:
        yield url


def alembic_config(url: str) -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.attributes["database_url"] = url
    config.attributes["configure_logger"] = False
    return config


def schema_differences(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            # include_name: the full-text search objects are not in the models (see alembic/env.py).
            opts = {"compare_type": True, "include_name": include_name}
            context = MigrationContext.configure(connection, opts=opts)
            return list(compare_metadata(context, SQLModel.metadata))
    finally:
        engine.dispose()


def current_state(url: str) -> tuple[set[str], str | None]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            tables = set(inspect(connection).get_table_names())
            return tables & APP_TABLES, MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def test_an_empty_database_migrated_to_head_matches_the_models(empty_database_url: str) -> None:
    assert current_state(empty_database_url) == (set(), None)

    command.upgrade(alembic_config(empty_database_url), "head")

    assert current_state(empty_database_url) == (APP_TABLES, HEAD)
    assert schema_differences(empty_database_url) == []


def test_downgrade_to_base_then_upgrade_to_head_again(empty_database_url: str) -> None:
    config = alembic_config(empty_database_url)
    command.upgrade(config, "head")

    command.downgrade(config, "base")
    assert current_state(empty_database_url) == (set(), None)

    command.upgrade(config, "head")
    assert current_state(empty_database_url) == (APP_TABLES, HEAD)
    assert schema_differences(empty_database_url) == []


def test_upgrading_a_database_already_at_head_changes_nothing(empty_database_url: str) -> None:
    config = alembic_config(empty_database_url)
    command.upgrade(config, "head")

    command.upgrade(config, "head")

    assert current_state(empty_database_url) == (APP_TABLES, HEAD)
    assert schema_differences(empty_database_url) == []
