"""The engine, a session scope that commits or rolls back as one unit, and a runner for async callers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import TypeVar

from sqlalchemy import Engine, event, make_url
from sqlmodel import Session, create_engine

#: How long a SQLite write waits for another's lock before failing with "database is locked".
SQLITE_BUSY_TIMEOUT_S = 30.0

#: Ids per IN (...) list: far under SQLite's limit on bound parameters, however many ids a caller has.
IDS_PER_QUERY = 500


def make_engine(url: str, busy_timeout_s: float = SQLITE_BUSY_TIMEOUT_S) -> Engine:
    """An engine for `url`; SQLite gets WAL (readers never wait for the writer), a busy timeout
    (writers queue for the lock rather than fail) and enforced foreign keys.

    A SQLite URL's own `?timeout=<seconds>` (SQLAlchemy's pysqlite option) replaces `busy_timeout_s`.
    """
    if url.startswith("sqlite"):
        connect_args: dict[str, object] = {"check_same_thread": False}
        if "timeout" not in make_url(url).query:  # connect_args would override the URL's own
            connect_args["timeout"] = busy_timeout_s
        engine = create_engine(url, connect_args=connect_args)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


@lru_cache(maxsize=4)
def get_engine(url: str) -> Engine:
    return make_engine(url)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session whose work is committed on success and rolled back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


R = TypeVar("R")


class Database:
    """Blocking database work, run off the event loop: each call is one transaction on a worker thread."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def run(self, work: Callable[[Session], R]) -> R:
        """Run `work(session)` in one transaction (commit on success, rollback on error)."""

        def run() -> R:
            with session_scope(self.engine) as session:
                return work(session)

        return await asyncio.to_thread(run)
