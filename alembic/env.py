"""Alembic environment: the URL comes from the app's Settings, the target from SQLModel's metadata."""

from logging.config import fileConfig

from sqlmodel import SQLModel

import chatbot_app.storage.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from alembic import context
from chatbot_app.config import get_settings
from chatbot_app.storage.database import make_engine
from chatbot_app.storage.search import include_name

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = SQLModel.metadata


def database_url() -> str:
    return config.attributes.get("database_url") or get_settings().database_url


def run_migrations_offline() -> None:
    context.configure(
        url=database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        include_name=include_name,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(database_url())
    with engine.connect() as connection:
        # No batch mode in drafts: on SQLite a batch rebuild drops the table, and with foreign keys
        # on that cascade-deletes every message. Write plain ALTERs (SQLite >= 3.35 has DROP COLUMN).
        # include_name keeps the full-text search objects (built by hand in 0003) out of autogenerate.
        context.configure(connection=connection, target_metadata=target_metadata, include_name=include_name)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
