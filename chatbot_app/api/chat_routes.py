"""POST /api/chat (streamed) and POST /api/chat_batch: one turn, stored exactly as the UI stores it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from chatbot_app.api.auth import ClientAddress, Owner
from chatbot_app.api.errors import ApiError
from chatbot_app.api.inputs import chat_overrides, conversation_id, resolve_model
from chatbot_app.api.schemas import ChatRequest, ToolAnswer
from chatbot_app.api.streaming import STREAM_HEADERS, ClosingStreamingResponse, sse
from chatbot_app.services.actions import Caller
from chatbot_app.services.chat_service import Turn
from chatbot_app.services.error_messages import describe_error
from chatbot_app.services.reply_jobs import ReplyJobs, ReplyResult, apply
from chatbot_app.services.reply_log import Finished, ToolUpdate
from chatbot_app.services.validation import InvalidInput
from chatbot_app.services.wiring import services
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
    429: {"description": "Too many messages from this key or this client address in the last minute."},
}


async def start(owner: str, address: str, body: ChatRequest, *, batch: bool = False) -> Turn:
    """Translate the body (as the UI's form is), then send through the one door: admission, storing, the job."""
    service = services().chat
    try:
        existing = conversation_id(body.conversation_id)
        overrides = chat_overrides(body)
        if body.model is not None:
            overrides["provider"], overrides["model"] = await resolve_model(service, body.model)
    except InvalidInput as exc:
        raise ApiError(422, str(exc)) from None
    started = await services().actions.send(
        Caller(owner, address),
        existing,
        body.message,
        overrides=overrides,
        batch=batch,
        title=False,
        parent_id=body.parent_id,
    )
    return started.turn


def done_event(turn: Turn, finished: Finished) -> dict[str, Any]:
    failed = finished.status == MessageStatus.ERROR
    return {
        "status": finished.status,
        "conversation_id": turn.conversation_id,
        "message_id": turn.reply_id,
        "provider": finished.provider,
        "model": finished.model,
        "usage": {"prompt_tokens": finished.prompt_tokens, "completion_tokens": finished.completion_tokens},
        "first_token_ms": finished.first_token_ms,
        "duration_ms": finished.duration_ms,
        "error_kind": finished.error_kind,
        "error": (finished.error or describe_error(finished.error_kind, finished.provider)) if failed else None,
    }


def tool_event(turn: Turn, update: ToolUpdate) -> dict[str, Any]:
    """A tool call's state, as `event: tool` carries it, with its reply's id: a call that waits is answered
    at /api/replies/{message_id}/tool_calls/{call_id}."""
    return {"message_id": turn.reply_id, **asdict(update), "sources": [list(pair) for pair in update.sources]}


async def followed(jobs: ReplyJobs, turn: Turn) -> AsyncIterator[tuple[str, ReplyResult]]:
    """(new text, reply so far) per log batch until the reply ends; a client that leaves stops its reply."""
    result = ReplyResult()
    try:
        async for _, events in jobs.follow(turn.reply_id, until_finished=True):
            sent = len(result.text)
            apply(result, events)
            yield result.text[sent:], result
    finally:
        if result.finished is None:
            jobs.stop_here(turn.reply_id)


async def text_chunks(jobs: ReplyJobs, turn: Turn) -> AsyncIterator[str]:
    """The reply as plain text: each frame's new text; a failure's description ends it."""
    async for new, reply in followed(jobs, turn):
        if new:
            yield new
        if reply.finished is not None and reply.finished.status == MessageStatus.ERROR:
            finished = reply.finished
            yield ("\n\n" if reply.text else "") + (
                finished.error or describe_error(finished.error_kind, finished.provider)
            )


async def sse_events(jobs: ReplyJobs, turn: Turn) -> AsyncIterator[str]:
    """`data: {"delta": ...}` per frame, then `event: done` with status and usage.

    While a failed request waits to be retried, `event: notice` says so (as the UI shows it).
    """
    notice = ""
    tools: dict[str, ToolUpdate] = {}
    async for new, reply in followed(jobs, turn):
        if reply.notice and reply.notice != notice:
            yield sse({"notice": reply.notice}, event="notice")
        notice = reply.notice
        for call_id, update in reply.tools.items():
            if tools.get(call_id) != update:
                tools[call_id] = update
                yield sse(tool_event(turn, update), event="tool")
        if new:
            yield sse({"delta": new})
        if reply.finished is not None:
            yield sse(done_event(turn, reply.finished), event="done")


@router.post(
    "/api/chat",
    summary="Send a message; stream the reply",
    response_class=Response,
    responses={
        200: {
            "description": (
                "The reply as it is written: text/plain chunks, or server-sent events when the request's "
                'Accept includes text/event-stream (`data: {"delta": "..."}`, `event: notice` while a failed '
                "request waits to be retried, `event: tool` for each change of a tool call's state, then `event: done` "
                "with status and usage). A provider failure "
                "ends the stream with its description."
            ),
            "content": {"text/plain": {}, "text/event-stream": {}},
            "headers": _ID_HEADER_DOC,
        },
        **_ERRORS,
    },
)
async def chat(body: ChatRequest, request: Request, owner: Owner, address: ClientAddress) -> Response:
    jobs = services().replies
    turn = await start(owner, address, body)
    headers = {**STREAM_HEADERS, CONVERSATION_HEADER: turn.conversation_id}
    if "text/event-stream" in request.headers.get("accept", ""):
        return ClosingStreamingResponse(sse_events(jobs, turn), media_type="text/event-stream", headers=headers)
    return ClosingStreamingResponse(text_chunks(jobs, turn), media_type="text/plain; charset=utf-8", headers=headers)


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
async def chat_batch(body: ChatRequest, owner: Owner, address: ClientAddress) -> PlainTextResponse:
    jobs = services().replies
    turn = await start(owner, address, body, batch=True)
    reply = ReplyResult()
    async for _, reply in followed(jobs, turn):  # noqa: B007  (the last one is the whole reply)
        pass
    assert reply.finished is not None
    headers = {CONVERSATION_HEADER: turn.conversation_id}
    if reply.finished.status == MessageStatus.ERROR:
        return PlainTextResponse(
            reply.finished.error or describe_error(reply.finished.error_kind, reply.finished.provider),
            status_code=502,
            headers=headers,
        )
    return PlainTextResponse(reply.text, headers=headers)


@router.post(
    "/api/replies/{reply_id}/tool_calls/{call_id}",
    summary="Approve or deny a tool call that waits for the user",
    status_code=204,
    response_class=Response,
    responses={
        204: {"description": "Answered: the reply's job runs the call (or tells the model it was denied)."},
        **_ERRORS,
    },
)
async def answer_tool_call(
    reply_id: int, call_id: str, body: ToolAnswer, owner: Owner, address: ClientAddress
) -> Response:
    """The same door as the page's Approve once and Deny: only the reply's owner, only a call that waits."""
    await services().actions.answer_tool_call(Caller(owner, address), reply_id, call_id, body.approve)
    return Response(status_code=204)
