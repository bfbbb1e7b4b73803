"""server_sent_events: SSE framing from raw bytes, however the network splits them."""

from __future__ import annotations

from collections.abc import AsyncIterator

from chatbot_app.providers.server_sent_events import ServerSentEvent, server_sent_events


async def events_of(*chunks: bytes) -> list[ServerSentEvent]:
    async def source() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    return [event async for event in server_sent_events(source())]


async def test_one_event_per_blank_line() -> None:
    assert await events_of(b'data: {"a": 1}\n\ndata: [DONE]\n\n') == [
        ServerSentEvent(None, b'{"a": 1}'),
        ServerSentEvent(None, b"[DONE]"),
    ]


async def test_events_split_anywhere_across_reads_come_out_whole() -> None:
    wire = b'data: {"a": 1}\r\n\r\nevent: error\ndata: {"error": {}}\n\n'
    whole = await events_of(wire)

    for cut in range(1, len(wire)):
        assert await events_of(wire[:cut], wire[cut:]) == whole
    assert await events_of(*(wire[i : i + 1] for i in range(len(wire)))) == whole
    assert whole == [ServerSentEvent(None, b'{"a": 1}'), ServerSentEvent("error", b'{"error": {}}')]


async def test_multi_line_data_is_joined_and_comments_ids_and_retries_are_dropped() -> None:
    wire = b": keep-alive\nid: 7\nretry: 100\ndata: first\ndata:second\n\n: another comment\n\n"

    assert await events_of(wire) == [ServerSentEvent(None, b"first\nsecond")]


async def test_a_last_event_without_its_blank_line_is_still_yielded() -> None:
    assert await events_of(b"data: one\n\ndata: two") == [ServerSentEvent(None, b"one"), ServerSentEvent(None, b"two")]
