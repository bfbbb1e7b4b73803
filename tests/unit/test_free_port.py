"""The harness's free ports: never the same one twice in a session (nginx and a backend once got the same)."""

from __future__ import annotations

from tests.e2e.live_app import free_port


def test_no_port_is_given_twice() -> None:
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
