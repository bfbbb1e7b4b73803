"""chatbot_app/origin_guard.py: which web origins may use the session cookie, and what is refused."""

from __future__ import annotations

import asyncio
from typing import Any

from chatbot_app.origin_guard import app_origins, origin_guard, origin_of, reflex_cors_origins


def test_origins_are_scheme_host_and_port() -> None:
    assert origin_of("https://Chat.Example.com/app/") == "https://chat.example.com"
    assert origin_of("http://localhost:3000") == "http://localhost:3000"
    assert origin_of("not a url") is None and origin_of(None) is None
    assert app_origins("https://chat.example.com", "https://api.example.com") == {
        "https://chat.example.com",
        "https://api.example.com",
    }
    assert reflex_cors_origins("https://chat.example.com", None, ["https://tools.example.com/"]) == [
        "https://chat.example.com",
        "https://tools.example.com",
    ]


def call(scope: dict[str, Any]) -> list[dict[str, Any]]:
    """Run the guard over a do-nothing app; what it sent (empty when it passed the request on)."""
    sent: list[dict[str, Any]] = []
    reached: list[bool] = []

    async def app(_scope: Any, _receive: Any, _send: Any) -> None:
        reached.append(True)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    guarded = origin_guard(frozenset({"https://chat.example.com"}))(app)
    asyncio.run(guarded(scope, receive, send))
    assert bool(reached) == (not sent)
    return sent


def scope(kind: str, path: str, origin: str | None) -> dict[str, Any]:
    headers = [(b"origin", origin.encode())] if origin else []
    return {"type": kind, "path": path, "headers": headers, "method": "GET"}


def test_a_websocket_from_another_origin_is_closed_before_it_is_accepted() -> None:
    [closed] = call(scope("websocket", "/_event/", "https://evil.example.com"))
    assert closed == {"type": "websocket.close", "code": 1008}
    assert call(scope("websocket", "/_event/", "https://chat.example.com")) == []
    assert call(scope("websocket", "/_event/", None)) == []


def test_cookie_routes_from_another_origin_get_403_and_the_rest_pass() -> None:
    start, _body = call(scope("http", "/auth/session", "https://chat.example.com.evil.example"))
    assert start["status"] == 403
    assert call(scope("http", "/_upload", "https://evil.example.com"))[0]["status"] == 403
    assert call(scope("http", "/auth/session", "https://chat.example.com/")) == []
    # The API has its own origin rule (CHATBOT_CORS_ORIGINS, with keys instead of the cookie).
    assert call(scope("http", "/api/conversations", "https://tools.example.com")) == []
