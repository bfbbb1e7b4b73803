"""Integration fixtures: what a test opened against real peers is closed after it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.conftest import OPEN_SERVICES


@pytest.fixture(autouse=True)
async def close_services() -> AsyncIterator[None]:
    """Close the provider connections of the services a test made (in its own event loop)."""
    yield
    while OPEN_SERVICES:
        await OPEN_SERVICES.pop().providers.aclose()
