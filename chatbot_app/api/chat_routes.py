"""POST /api/chat (streamed) and POST /api/chat_batch: one turn, stored exactly as the UI stores it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from chatbot_app.api.auth import Owner
from chatbot_app.api.errors import ApiError
from chatbot_app.api.inputs import chat_overrides, conversation_id, resolve_model
from chatbot_app.api.schemas import ChatRequest
from chatbot_app.api.streaming import STREAM_HEADERS, ClosingStreamingResponse, detached, sse
from chatbot_app.services.chat_service import ChatService, ConversationNotFound, ReplyFrame, Turn
from chatbot_app.services.chat_settings import ChatSettings
from chatbot_app.services.default_service import get_chat_service
from chatbot_app.services.error_messages import describe_error
from chatbot_app.services.validation import InvalidInput, clean_message
from chatbot_app.storage.models import MessageStatus

router = APIRouter(tags=["chat"])

CONVERSATION_HEADER = "X-Conversation-Id"
_ID_HEADER_DOC = {
    CONVERSATION_HEADER: {"description": "The conversation the turn belongs to.", "schema": {"type": "string"}}
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No key, a wrong key, or no keys configured."},
    404: {"description": "Conversation not found (unknown, or another key's)."},
    422: {"description": "The body is invalid; `detail` says how."},
    429: {"description": "Too many messages from this key in the last minute."},
}


async def start(service: ChatService, owner: str, body: ChatRequest) -> Turn:
    """Check the body like the UI checks its form, then commit the user's message and an empty reply."""
    try:
        text = clean_message(body.message, service.settings.max_message_chars)
        existing = conversation_id(body.conversation_id)
        overrides = chat_overrides(body)
        if body.model is not None:
            overrides["provider"], overrides["model"] = await resolve_model(service, body.model)
    except InvalidInput as exc:
        raise ApiError(422, str(exc)) from None
    if not await service.allow_message(owner):  # the same per-identity limit as the UI
        limit = service.settings.rate_limit_per_minute
        raise ApiError(429, f"Too many messages: the limit is {limit} a minute. Wait a moment, then try again.")
    try:
        chat: ChatSettings | None = None
        if overrides:  # the conversation's settings change for this turn and the next ones
            base = ChatSettings() if existing is None else await service.conversation_settings(owner, existing)
            chat = replace(base, **overrides)
        return await service.start_turn(owner, existing, text, chat)
    except ConversationNotFound:
        raise ApiError(404, "Conversation not found") from None


def done_event(turn: Turn, frame: ReplyFrame) -> dict[str, Any]:
    failed = frame.status == MessageStatus.ERROR
    return {
        "status": frame.status,
        "conversation_id": turn.conversation_id,
        "message_id": turn.reply_id,
        "provider": frame.provider,
        "model": frame.model,
        "usage": {"prompt_tokens": frame.prompt_tokens, "completion_tokens": frame.completion_tokens},
        "first_token_ms": frame.first_token_ms,
        "duration_ms": frame.duration_ms,
        "error_kind": frame.error_kind,
        "error": (frame.error or describe_error(frame.error_kind)) if failed else None,
    }


async def text_chunks(frames: AsyncGenerator[ReplyFrame, None]) -> AsyncIterator[str]:
    """The reply as plain text: each frame's new suffix; a failure's description ends it."""
    sent = 0
    async with contextlib.aclosing(frames):
        async for frame in frames:
            if len(frame.text) > sent:
                yield frame.text[sent:]
                sent = len(frame.text)
            if frame.done and frame.status == MessageStatus.ERROR:
                yield ("\n\n" if sent else "") + (frame.error or describe_error(frame.error_kind))


async def sse_events(turn: Turn, frames: AsyncGenerator[ReplyFrame, None]) -> AsyncIterator[str]:
    """`data: {"delta": ...}` per frame, then `event: done` with status and usage.

    While a failed request waits to be retried, `event: notice` says so (as the UI shows it).
    """
    sent = 0
    async with contextlib.aclosing(frames):
        async for frame in frames:
            if frame.notice and not frame.done:
                yield sse({"notice": frame.notice}, event="notice")
            if len(frame.text) > sent:
                yield sse({"delta": frame.text[sent:]})
                sent = len(frame.text)
            if frame.done:
                yield sse(done_event(turn, frame), event="done")


@router.post(
    "/api/chat",
    summary="Send a message; stream the reply",
    response_class=Response,
    responses={
        200: {
            "description": (
                "The reply as it is written: text/plain chunks, or server-sent events when the request's "
                'Accept includes text/event-stream (`data: {"delta": "..."}`, `event: notice` while a failed '
                "request waits to be retried, then `event: done` with status and usage). A provider failure "
                "ends the stream with its description."
            ),
            "content": {"text/plain": {}, "text/event-stream": {}},
            "headers": _ID_HEADER_DOC,
        },
        **_ERRORS,
    },
)
async def chat(body: ChatRequest, request: Request, owner: Owner) -> Response:
    service = get_chat_service()
    turn = await start(service, owner, body)
    frames = detached(service.stream_reply(turn), latest_only=True)
    headers = {**STREAM_HEADERS, CONVERSATION_HEADER: turn.conversation_id}
    if "text/event-stream" in request.headers.get("accept", ""):
        return ClosingStreamingResponse(sse_events(turn, frames), media_type="text/event-stream", headers=headers)
    return ClosingStreamingResponse(text_chunks(frames), media_type="text/plain; charset=utf-8", headers=headers)


@router.post(
    "/api/chat_batch",
    summary="Send a message; get the whole reply at once",
    response_class=PlainTextResponse,
    responses={
        200: {"description": "The whole reply.", "content": {"text/plain": {}}, "headers": _ID_HEADER_DOC},
        502: {"description": "The provider failed; the body says how.", "content": {"text/plain": {}}},
        **_ERRORS,
    },
)
async def chat_batch(body: ChatRequest, owner: Owner) -> PlainTextResponse:
    service = get_chat_service()
    turn = await start(service, owner, body)
    final: ReplyFrame | None = None
    async with contextlib.aclosing(service.stream_reply(turn, batch=True)) as frames:
        async for frame in frames:
            final = frame
    assert final is not None and final.done
    headers = {CONVERSATION_HEADER: turn.conversation_id}
    if final.status == MessageStatus.ERROR:
        return PlainTextResponse(final.error or describe_error(final.error_kind), status_code=502, headers=headers)
    return PlainTextResponse(final.text, headers=headers)
