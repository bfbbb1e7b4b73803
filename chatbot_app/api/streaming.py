"""Streaming responses that end cleanly when the client goes away.

On a disconnect, Starlette cancels the response body (anyio cancellation, delivered again at
every await) or leaves it suspended. A reply being generated must instead be closed properly,
so the provider request ends and ChatService stores what was sent as `stopped`. So the source
runs in a task of its own (`detached`) that is cancelled once, like a plain asyncio task, and
the response always closes its body (`ClosingStreamingResponse`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from typing import Any, TypeVar

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

T = TypeVar("T")

#: Pumps still running; asyncio keeps only weak references to tasks.
_PUMPS: set[asyncio.Task[None]] = set()

#: Headers for any streamed answer: no caching, and no buffering by proxies such as nginx.
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def detached(source: AsyncGenerator[T, None], *, latest_only: bool = False) -> AsyncGenerator[T, None]:
    """Iterate `source` in its own task and yield what it yields; closing this early cancels that task.

    With `latest_only`, items not yet taken are replaced by newer ones (for snapshots such as
    ReplyFrame, where each one contains the ones before it), so a slow client never queues many.
    """
    queue: asyncio.Queue[tuple[bool, Any]] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for item in source:
                if latest_only:
                    while not queue.empty():
                        queue.get_nowait()
                queue.put_nowait((True, item))
        except Exception as exc:
            queue.put_nowait((False, exc))
        else:
            queue.put_nowait((False, None))
        finally:
            await source.aclose()

    task = asyncio.get_running_loop().create_task(pump())
    _PUMPS.add(task)
    task.add_done_callback(_PUMPS.discard)
    finished = False
    try:
        while True:
            is_item, value = await queue.get()
            if is_item:
                yield value
                continue
            finished = True
            if value is not None:
                raise value
            return
    finally:
        if not finished:
            task.cancel()


class ClosingStreamingResponse(StreamingResponse):
    """A StreamingResponse that closes its body iterator however the response ends."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()  # type: ignore[attr-defined]


def sse(data: Any, event: str | None = None) -> str:
    """One server-sent event; JSON never contains a raw newline, so `data` is one line."""
    head = f"event: {event}\n" if event else ""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"{head}data: {payload}\n\n"
