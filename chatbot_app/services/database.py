"""Blocking database work, run off the event loop: each call is one transaction on a worker thread."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Engine
from sqlmodel import Session

from chatbot_app.storage.database import session_scope

R = TypeVar("R")


class Database:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def run(self, work: Callable[[Session], R]) -> R:
        """Run `work(session)` in one transaction (commit on success, rollback on error)."""

        def run() -> R:
            with session_scope(self.engine) as session:
                return work(session)

        return await asyncio.to_thread(run)
