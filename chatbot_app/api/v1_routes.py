"""/v1: enough of OpenAI's API for the `openai` SDK and the tools built on it.

Stateless like OpenAI: `messages` is the whole context, and nothing is stored. The provider is
called directly, through the same registry, model names and checks as the rest of the app.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from chatbot_app.api.auth import ClientAddress, Owner
from chatbot_app.api.errors import ApiError, openai_error_event, provider_error
from chatbot_app.api.inputs import UnknownModel, openai_context, resolve_model, sampling
from chatbot_app.api.schemas import OpenAIChatRequest, OpenAIModel, OpenAIModelList
from chatbot_app.api.streaming import STREAM_HEADERS, ClosingStreamingResponse, detached, sse
from chatbot_app.providers.base import (
    GenerationOptions,
    ProviderError,
    ProviderEvent,
    TextDelta,
    Usage,
)
from chatbot_app.services.actions import Caller
from chatbot_app.services.chat_settings import model_choice
from chatbot_app.services.validation import InvalidInput
from chatbot_app.services.wiring import services

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["openai-compatible"])


@router.get("/models", summary="The models you can ask for, as provider:model ids")
async def list_models(_owner: Owner) -> OpenAIModelList:
    groups, _ = await services().chat.model_menu()
    return OpenAIModelList(
        data=[
            OpenAIModel(id=model_choice(group.provider, model), owned_by=group.provider)
            for group in groups
            if group.error is None
            for model in group.models
        ]
    )


def _usage(usage: Usage | None) -> dict[str, int]:
    prompt = (usage.prompt_tokens if usage else None) or 0
    completion = (usage.completion_tokens if usage else None) or 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _finish_reason(usage: Usage | None, options: GenerationOptions) -> str:
    reached = (
        usage is not None and usage.completion_tokens is not None and usage.completion_tokens >= options.max_tokens
    )
    return "length" if reached else "stop"


@router.post(
    "/chat/completions",
    summary="Chat completion, streamed (SSE) or whole",
    response_class=Response,
    responses={
        200: {
            "description": "A `chat.completion`, or with `stream: true` `chat.completion.chunk` events and `[DONE]`.",
            "content": {"application/json": {}, "text/event-stream": {}},
        },
        401: {"description": "No key, a wrong key, or no keys configured."},
        404: {"description": "Unknown model."},
        422: {"description": "The body is invalid."},
        429: {"description": "Too many requests from this key or client address, or too many replies at once."},
    },
)
async def chat_completions(body: OpenAIChatRequest, owner: Owner, address: ClientAddress) -> Response:
    service = services().chat
    try:
        if body.n not in (None, 1):
            raise InvalidInput("n: only one choice per request is supported.")
        context = openai_context(body.messages, service.settings.max_message_chars)
        limit = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        given = sampling(body.temperature, body.top_p, limit)
        name, model = await resolve_model(service, body.model)
    except UnknownModel as exc:
        raise ApiError(404, str(exc), code="model_not_found", param="model") from None
    except InvalidInput as exc:
        raise ApiError(422, str(exc), code="invalid_request") from None
    try:
        provider = service.providers.get(name)
    except ProviderError as exc:
        raise provider_error(exc) from None
    defaults = service.settings
    options = GenerationOptions(
        model,
        given.get("temperature", defaults.temperature),
        given.get("max_tokens", defaults.max_reply_tokens),
        given.get("top_p", defaults.top_p),
    )
    completion_id, created = f"chatcmpl-{secrets.token_hex(12)}", int(time.time())
    caller, actions = Caller(owner, address), services().actions

    if not body.stream:
        try:
            completion = await actions.complete(caller, provider, context, options)
        except ProviderError as exc:
            log.info("v1 completion failed: provider=%s kind=%s", provider.name, exc.kind)
            raise provider_error(exc, provider.name) from None
        return JSONResponse(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": body.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": completion.text},
                        "finish_reason": _finish_reason(completion.usage, options),
                        "logprobs": None,
                    }
                ],
                "usage": _usage(completion.usage),
            }
        )

    items = detached(await actions.stream(caller, provider, context, options))
    try:  # wait for the first item, so that a request failing at once gets a proper status
        first = [await anext(items)]
    except StopAsyncIteration:
        first = []
    except ProviderError as exc:
        log.info("v1 stream failed: provider=%s kind=%s", provider.name, exc.kind)
        raise provider_error(exc, provider.name) from None
    include_usage = body.stream_options is not None and body.stream_options.include_usage
    chunks = _chunks(first, items, completion_id, created, body.model, options, include_usage, provider.name)
    return ClosingStreamingResponse(chunks, media_type="text/event-stream", headers=STREAM_HEADERS)


async def _chunks(
    first: list[ProviderEvent],
    rest: AsyncGenerator[ProviderEvent, None],
    completion_id: str,
    created: int,
    model: str,
    options: GenerationOptions,
    include_usage: bool,
    provider_name: str,
) -> AsyncIterator[str]:
    """OpenAI's stream: a role chunk, content chunks, a finish chunk, the usage chunk if asked, [DONE]."""

    def chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> str:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]
        payload = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": choices,
            **extra,
        }
        return sse(payload)

    usage: Usage | None = None
    try:
        yield chunk({"role": "assistant", "content": ""})
        try:
            async for event in _chained(first, rest):
                match event:
                    case TextDelta(text) if text:
                        yield chunk({"content": text})
                    case Usage():
                        usage = event
        except ProviderError as exc:  # after the response started: OpenAI's in-stream error event
            log.info("v1 stream failed mid-way: kind=%s", exc.kind)
            yield sse(openai_error_event(exc, provider_name))
            yield sse("[DONE]")
            return
        yield chunk({}, _finish_reason(usage, options))
        if include_usage:
            yield chunk(None, usage=_usage(usage))
        yield sse("[DONE]")
    finally:
        await rest.aclose()


async def _chained(first: list[ProviderEvent], rest: AsyncIterator[ProviderEvent]) -> AsyncIterator[ProviderEvent]:
    for event in first:
        yield event
    async for event in rest:
        yield event
