"""/v1: enough of OpenAI's API for the `openai` SDK and the tools built on it.

Stateless like OpenAI: `messages` is the whole context, and nothing is stored. The provider is
called directly, through the same registry, model names and checks as the rest of the app.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import replace
from typing import Any

import orjson
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from chatbot_app.api.auth import ClientAddress, Owner
from chatbot_app.api.errors import ApiError, openai_error_event, provider_error
from chatbot_app.api.inputs import MAX_CONTEXT_CHARS, UnknownModel, openai_context, resolve_model, sampling
from chatbot_app.api.schemas import (
    MAX_TOOLS,
    MAX_TOOLS_BYTES,
    TOOL_CHOICES,
    OpenAIChatRequest,
    OpenAIMessage,
    OpenAIModel,
    OpenAIModelList,
)
from chatbot_app.api.streaming import STREAM_HEADERS, ClosingStreamingResponse, detached, sse
from chatbot_app.providers.base import (
    ChatMessage,
    GenerationOptions,
    ProviderError,
    ProviderEvent,
    TextDelta,
    ToolCall,
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


def _finish_reason(usage: Usage | None, options: GenerationOptions, calls: Sequence[ToolCall]) -> str:
    if calls:
        return "tool_calls"
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
        400: {"description": "`tools`, `tool_choice` or `parallel_tool_calls` is invalid, or a tool message is."},
        401: {"description": "No key, a wrong key, or no keys configured."},
        404: {"description": "Unknown model."},
        422: {"description": "The body is invalid."},
        429: {"description": "Too many requests from this key or client address, or too many replies at once."},
    },
)
async def chat_completions(body: OpenAIChatRequest, owner: Owner, address: ClientAddress) -> Response:
    service = services().chat
    tools = _tool_options(body)
    try:
        if body.n not in (None, 1):
            raise InvalidInput("n: only one choice per request is supported.")
        context = _with_tool_turns(body.messages, openai_context(body.messages, service.settings.max_message_chars))
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
        **tools,
    )
    completion_id, created = f"chatcmpl-{secrets.token_hex(12)}", int(time.time())
    caller, actions = Caller(owner, address), services().actions

    if not body.stream:
        try:
            completion = await actions.complete(caller, provider, context, options)
        except ProviderError as exc:
            log.info("v1 completion failed: provider=%s kind=%s", provider.name, exc.kind)
            raise provider_error(exc, provider.name) from None
        message: dict[str, Any] = {"role": "assistant", "content": completion.text}
        if completion.tool_calls:  # as OpenAI answers a turn that only calls: no content
            message = {
                "role": "assistant",
                "content": completion.text or None,
                "tool_calls": [call.as_dict() for call in completion.tool_calls],
            }
        return JSONResponse(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": body.model,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "finish_reason": _finish_reason(completion.usage, options, completion.tool_calls),
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
    """OpenAI's stream: a role chunk, content chunks, a chunk per tool call, a finish chunk, the usage chunk if
    asked, [DONE]."""

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
    calls: list[ToolCall] = []
    try:
        yield chunk({"role": "assistant", "content": ""})
        try:
            async for event in _chained(first, rest):
                match event:
                    case TextDelta(text) if text:
                        yield chunk({"content": text})
                    case ToolCall():
                        # Whole (the provider put its pieces together), under its index as OpenAI streams it.
                        yield chunk({"tool_calls": [{"index": len(calls)} | event.as_dict()]})
                        calls.append(event)
                    case Usage():
                        usage = event
        except ProviderError as exc:  # after the response started: OpenAI's in-stream error event
            log.info("v1 stream failed mid-way: kind=%s", exc.kind)
            yield sse(openai_error_event(exc, provider_name))
            yield sse("[DONE]")
            return
        yield chunk({}, _finish_reason(usage, options, calls))
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


def _bad_request(message: str, param: str) -> ApiError:
    return ApiError(400, message, code="invalid_request", param=param)


def _json_size(value: Any) -> int:
    """Bytes of `value` as JSON; more than any limit when it cannot be JSON (too deep, an integer too large)."""
    try:
        return len(orjson.dumps(value))
    except orjson.JSONEncodeError:
        return MAX_CONTEXT_CHARS + 1


def _tool_options(body: OpenAIChatRequest) -> dict[str, Any]:
    """The client's own tools, choice and parallelism, checked (a 400 as OpenAI answers one), for GenerationOptions.

    The tools go to the provider as given: the client runs its functions, and the app adds none of its own.
    """
    tools, choice, parallel = body.tools, body.tool_choice, body.parallel_tool_calls
    if tools is not None:
        if (
            not isinstance(tools, list)
            or len(tools) > MAX_TOOLS
            or not all(isinstance(tool, dict) and isinstance(tool.get("type"), str) for tool in tools)
        ):
            raise _bad_request(f'tools must be a list of at most {MAX_TOOLS} objects, each with a "type".', "tools")
        if _json_size(tools) > MAX_TOOLS_BYTES:
            raise _bad_request(f"tools is limited to {MAX_TOOLS_BYTES // 1024} kB of JSON.", "tools")
    if choice is not None and not (
        choice in TOOL_CHOICES
        if isinstance(choice, str)
        else isinstance(choice, dict) and isinstance(choice.get("type"), str) and _json_size(choice) <= 4096
    ):
        raise _bad_request('tool_choice must be "none", "auto", "required", or an object naming a tool.', "tool_choice")
    if parallel is not None and not isinstance(parallel, bool):
        raise _bad_request("parallel_tool_calls must be true or false.", "parallel_tool_calls")
    return {"tools": tuple(tools or ()), "tool_choice": choice, "parallel_tool_calls": parallel}


def _with_tool_turns(messages: list[OpenAIMessage], context: list[ChatMessage]) -> list[ChatMessage]:
    """The context with its tool turns: `openai_context` keeps each message's text (one for one); this adds back
    an assistant message's calls and a tool message's call id."""
    turns: list[ChatMessage] = []
    size = 0
    for number, (message, turn) in enumerate(zip(messages, context, strict=True)):
        if message.role == "assistant" and message.tool_calls:
            if len(message.tool_calls) > MAX_TOOLS:
                raise _bad_request(f"messages[{number}]: at most {MAX_TOOLS} tool calls in one message.", "messages")
            calls = tuple(ToolCall(c.id, c.function.name, c.function.arguments) for c in message.tool_calls)
            size += sum(len(c.id) + len(c.name) + len(c.arguments) for c in calls)
            turn = replace(turn, tool_calls=calls)
        elif message.role == "tool":
            if not message.tool_call_id:
                raise _bad_request(
                    f"messages[{number}]: a tool message needs the tool_call_id of the call it answers.", "messages"
                )
            size += len(message.tool_call_id)
            turn = replace(turn, tool_call_id=message.tool_call_id)
        turns.append(turn)
    # The calls' arguments are context too, beyond the text openai_context has bounded.
    if size + sum(len(t.content) for t in turns) > MAX_CONTEXT_CHARS:
        raise _bad_request(f"The messages and their tool calls exceed {MAX_CONTEXT_CHARS:,} characters.", "messages")
    return turns
