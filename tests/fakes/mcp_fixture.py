"""Pytest fixtures for the fake MCP server. Import them into a conftest.py to use them:

from tests.fakes.mcp_fixture import mcp_server, mcp_fake  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.mcp_server import FakeMcpServer


@pytest.fixture(scope="session")
def mcp_server() -> Iterator[FakeMcpServer]:
    """One fake MCP server for the session (its URL is `mcp_server.url`)."""
    server = FakeMcpServer().start()
    yield server
    server.stop()


@pytest.fixture
def mcp_fake(mcp_server: FakeMcpServer) -> Iterator[FakeMcpServer]:
    """The session's fake MCP server with an empty request log, running again if a test stopped it."""
    if not mcp_server.running:
        mcp_server.start()
    mcp_server.reset()
    yield mcp_server
    mcp_server.reset()
