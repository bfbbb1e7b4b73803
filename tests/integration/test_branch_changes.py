"""Word of a switched branch reaches every waiter on that conversation, in this process (memory) or another one
(Redis: two instances, as two backends), and a change announced while a tab was busy is not missed."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest

from chatbot_app.services.branch_changes import BranchChanges
from tests.integration.test_abuse_limits import REDIS_URL, _redis_or_skip


@pytest.fixture(params=["memory", "redis"])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[tuple[BranchChanges, BranchChanges]]:
    """(the process that announces, the process whose tab waits): one instance in memory, two with Redis."""
    if request.param == "memory":
        changes = BranchChanges()
        yield changes, changes
        await changes.aclose()
        return
    await _redis_or_skip()
    announcer, listener = BranchChanges(REDIS_URL), BranchChanges(REDIS_URL)
    yield announcer, listener
    await announcer.aclose()
    await listener.aclose()


async def subscribed(listener: BranchChanges, announcer: BranchChanges, conversation_id: str) -> None:
    """Until the listener hears announcements (a Redis subscription starts in the background)."""
    probe = f"probe-{secrets.token_hex(4)}"
    while not listener.seen(probe):
        await listener.wait(probe, 0, 0.05, asyncio.Event())
        await announcer.announce(probe)
    assert listener.seen(conversation_id) == 0


async def test_a_switch_wakes_the_waiters_of_that_conversation_only(pair: tuple[BranchChanges, BranchChanges]) -> None:
    announcer, listener = pair
    conversation, other = secrets.token_hex(8), secrets.token_hex(8)
    await subscribed(listener, announcer, conversation)
    waiting = asyncio.create_task(listener.wait(conversation, 0, 30, asyncio.Event()))
    elsewhere = asyncio.create_task(listener.wait(other, 0, 0.5, asyncio.Event()))
    await asyncio.sleep(0)  # both are waiting

    await announcer.announce(conversation)

    assert await waiting is True
    assert await elsewhere is False  # its own timeout: nothing changed there
    assert listener.seen(conversation) == 1


async def test_a_switch_announced_while_the_tab_was_busy_is_not_missed(
    pair: tuple[BranchChanges, BranchChanges],
) -> None:
    announcer, listener = pair
    conversation = secrets.token_hex(8)
    await subscribed(listener, announcer, conversation)
    seen = listener.seen(conversation)
    await announcer.announce(conversation)  # nobody waits right now
    async with asyncio.timeout(10):
        while listener.seen(conversation) == seen:
            await listener.wait(conversation, seen, 0.05, asyncio.Event())

    assert await listener.wait(conversation, seen, 30, asyncio.Event()) is True  # at once: it came after `seen`


async def test_the_waiters_own_event_wakes_it_without_a_change(pair: tuple[BranchChanges, BranchChanges]) -> None:
    _, listener = pair
    wake = asyncio.Event()
    waiting = asyncio.create_task(listener.wait(secrets.token_hex(8), 0, 30, wake))
    await asyncio.sleep(0)
    wake.set()  # a newer watcher of the same tab replaces this one

    assert await waiting is False
