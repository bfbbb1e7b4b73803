"""A minimal Reflex websocket client that speaks to the backend as the browser's `state.js` does.

One websocket per client, Engine.IO v4 carrying Socket.IO v5 on the `/_event` namespace, the
same path and namespace the compiled frontend uses (`io(env.EVENT, {path: "/_event"})`):

- connect to `/_event/?EIO=4&transport=websocket&token=<tab token>` with the Reflex version as
  the websocket subprotocol;
- send the namespace CONNECT packet with the hydrate event in its `auth` payload (`state.js`
  `bootAuth`): `{"event": {"name": "<root state>.hydrate_and_load", "payload": {}, "router_data":
  {...}}}`; no compiled-state hashes are sent, so the backend answers with the full state;
- answer the server's pings;
- for every `event` update received, hand the delta to a callback, remember synced local-storage
  vars (as the browser writes them to localStorage), and do what `queueEvents` does with the
  update's events: send backend events back with the current `router_data`, and follow
  `_redirect` as a client-side navigation (`onLoadInternalEvent`: `update_vars_internal` with the
  synced storage values, then `on_load_internal`).

Every received websocket message is counted: its payload bytes plus the frame header the server
put on the wire (no compression is negotiated unless the server offers it; `compression` says).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import websockets
from reflex_base.constants.state import FIELD_MARKER
from websockets.asyncio.client import ClientConnection

ROOT_STATE = "reflex___state____state"
HYDRATE = f"{ROOT_STATE}.hydrate_and_load"
ON_LOAD_INTERNAL = f"{ROOT_STATE}.reflex___state____on_load_internal_state.on_load_internal"
UPDATE_VARS_INTERNAL = f"{ROOT_STATE}.reflex___state____update_vars_internal_state.update_vars_internal"
IS_HYDRATED = "is_hydrated_rx_state_"
NAMESPACE = "/_event"
T = TypeVar("T")

#: Called with (receipt time from time.monotonic(), wire bytes, update) for each `event` update.
UpdateCallback = Callable[[float, int, dict[str, Any]], None]


def in_thread(work: Callable[[], Awaitable[T]]) -> T:
    """Run async test code on a loop of its own: the browser tests' sync Playwright owns this thread's loop."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work()).result(timeout=300)  # type: ignore[arg-type]


def ws_frame_bytes(payload_bytes: int) -> int:
    """Bytes of one unmasked server-to-client websocket frame carrying `payload_bytes`."""
    header = 2 if payload_bytes < 126 else 4 if payload_bytes < 65_536 else 10
    return header + payload_bytes


@dataclass
class ReflexClient:
    """One browser tab: a token, a websocket, the current path, and its synced local storage."""

    backend_url: str
    reflex_version: str
    #: Full var names ("<state>.<var>_rx_state_") of synced LocalStorage vars to remember and send.
    synced_storage: frozenset[str] = frozenset()
    on_update: UpdateCallback | None = None
    token: str = field(default_factory=lambda: str(uuid.uuid4()))
    #: Extra handshake headers, as a browser would send them (Cookie, Origin).
    headers: dict[str, str] = field(default_factory=dict)
    pathname: str = "/"
    local_storage: dict[str, str] = field(default_factory=dict)
    #: The latest value of every var an update carried: values[<state full name>][<var name>].
    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Frontend events the server asked for (name, payload), in order: downloads, set_value, scripts...
    frontend_events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    bytes_received: int = 0
    messages_received: int = 0
    hydrated: asyncio.Event = field(default_factory=asyncio.Event)
    _ws: ClientConnection | None = None
    _reader: asyncio.Task[None] | None = None
    _connected: asyncio.Future[None] | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def compression(self) -> str:
        """The negotiated websocket extensions ("" when frames travel uncompressed)."""
        if self._ws is None:
            return ""
        return ", ".join(type(e).__name__ for e in self._ws.protocol.extensions)

    def router_data(self) -> dict[str, Any]:
        return {"pathname": self.pathname, "asPath": self.pathname}

    async def connect(self, timeout_s: float = 30.0) -> None:
        """Open the websocket and the namespace, hydrating in the CONNECT packet as the browser does."""
        url = self.backend_url.replace("http", "ws", 1) + f"{NAMESPACE}/?EIO=4&transport=websocket&token={self.token}"
        self._ws = await websockets.connect(
            url,
            subprotocols=[self.reflex_version],  # type: ignore[list-item]
            max_size=None,
            ping_interval=None,  # Engine.IO has its own pings
            open_timeout=timeout_s,
            additional_headers=self.headers or None,
        )
        opening = str(await asyncio.wait_for(self._ws.recv(), timeout_s))
        if not opening.startswith("0{"):  # Engine.IO OPEN: 0{"sid": ..., "pingInterval": ...}
            raise ConnectionError(f"unexpected Engine.IO handshake: {opening[:200]!r}")
        self._connected = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read(), name=f"reflex-client-{self.token[:8]}")
        boot = {"name": HYDRATE, "payload": self._storage_payload(), "router_data": self.router_data()}
        await self._ws.send(f"40{NAMESPACE},{json.dumps({'event': boot})}")
        await asyncio.wait_for(asyncio.shield(self._connected), timeout_s)

    async def emit(self, name: str, payload: dict[str, Any] | None = None) -> None:
        """Send one backend event, with router data for the current path (state.js `applyEvent`)."""
        assert self._ws is not None, "connect() first"
        event = {"name": name, "payload": payload or {}, "router_data": self.router_data()}
        await self._ws.send(f"42{NAMESPACE},{json.dumps(['event', event])}")

    async def upload(
        self, handler: str, files: list[tuple[str, bytes, str]], headers: dict[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """POST files to an upload handler as this tab (state.js `uploadFiles`); returns the updates it answered.

        `files` are (name, bytes, content type) in the `files` multipart field, as the browser sends them.
        """
        return await upload_files(self.backend_url, self.token, handler, files, headers)

    async def call(self, state: type | str, handler: str, **payload: Any) -> None:
        """Call a state's event handler as the page would: `await tab.call(ReplyState, "send_message", ...)`."""
        name = state if isinstance(state, str) else state.get_full_name()  # type: ignore[attr-defined]
        await self.emit(f"{name}.{handler}", payload)

    def value(self, state: type | str, var: str, default: Any = None) -> Any:
        """The latest value of a state's var that an update carried."""
        name = state if isinstance(state, str) else state.get_full_name()  # type: ignore[attr-defined]
        return self.values.get(name, {}).get(var, default)

    async def until(self, condition: Callable[[], Any], timeout_s: float = 30.0) -> Any:
        """Wait until `condition()` is truthy (checked after every update); returns its value."""
        async with asyncio.timeout(timeout_s):
            while not (result := condition()):
                self._changed.clear()
                await self._changed.wait()
        return result

    async def close(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.send(f"41{NAMESPACE},")
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader

    def _storage_payload(self) -> dict[str, Any]:
        return {"vars": dict(self.local_storage)} if self.local_storage else {}

    async def _read(self) -> None:
        assert self._ws is not None and self._connected is not None
        try:
            while True:
                raw = await self._ws.recv(decode=False)
                at = time.monotonic()
                size = ws_frame_bytes(len(raw))
                self.bytes_received += size
                self.messages_received += 1
                await self._handle(raw, at, size)
        except Exception as exc:  # closed, or a malformed packet: connect() reports it if still waiting
            if not self._connected.done():
                self._connected.set_exception(ConnectionError(f"{type(exc).__name__}: {exc}"))
            if not isinstance(exc, websockets.ConnectionClosed):
                raise

    async def _handle(self, raw: bytes, at: float, size: int) -> None:
        assert self._ws is not None and self._connected is not None
        kind = raw[:1]
        if kind == b"2":  # Engine.IO ping
            await self._ws.send("3")
            return
        if kind != b"4":
            return
        packet_type, body = raw[1:2], raw[2:]
        if body.startswith(NAMESPACE.encode()):
            body = body[len(NAMESPACE) :].removeprefix(b",")
        if packet_type == b"0":  # CONNECT acknowledged
            if not self._connected.done():
                self._connected.set_result(None)
        elif packet_type == b"4":  # CONNECT_ERROR
            if not self._connected.done():
                self._connected.set_exception(ConnectionError(body.decode(errors="replace")))
        elif packet_type == b"2":  # EVENT: ["event", update]
            name, *args = json.loads(body)
            if name == "event" and args and isinstance(args[0], dict):
                await self._apply(args[0], at, size)

    async def _apply(self, update: dict[str, Any], at: float, size: int) -> None:
        delta = update.get("delta") or {}
        for state_name, fields in delta.items():
            for var, value in fields.items():
                full = f"{state_name}.{var}"
                if full in self.synced_storage and isinstance(value, str) and value:
                    self.local_storage[full] = value
                self.values.setdefault(state_name, {})[var.removesuffix(FIELD_MARKER)] = value
        if delta.get(ROOT_STATE, {}).get(IS_HYDRATED) is True:
            self.hydrated.set()
        if self.on_update is not None:
            self.on_update(at, size, update)
        for event in update.get("events") or []:
            name = event.get("name", "")
            if name.startswith("_"):
                self.frontend_events.append((name, event.get("payload") or {}))
            if name == "_redirect":
                self.pathname = str(event.get("payload", {}).get("path") or self.pathname)
                if self.local_storage:
                    await self.emit(UPDATE_VARS_INTERNAL, {"vars": dict(self.local_storage)})
                await self.emit(ON_LOAD_INTERNAL)
            elif not name.startswith("_"):
                await self.emit(name, event.get("payload") or {})
        self._changed.set()


async def upload_files(
    backend_url: str,
    token: str,
    handler: str,
    files: list[tuple[str, bytes, str]],
    headers: dict[str, str] | None = None,
    timeout_s: float = 120.0,
) -> list[dict[str, Any]]:
    """POST files to Reflex's `/_upload` for the tab `token` (no websocket needed: any client can);
    returns the state updates of its newline-delimited JSON answer. Raises for a status other than 200."""
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        response = await client.post(
            f"{backend_url}/_upload",
            headers={"reflex-client-token": token, "reflex-event-handler": handler, **(headers or {})},
            files=[("files", (name, data, content_type)) for name, data, content_type in files],
        )
    response.raise_for_status()
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]
