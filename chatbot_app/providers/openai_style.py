"""What the Groq and OpenAI SDKs share: the same chat API, model list and error shapes.

Subclasses name their SDK's client and exception module, and say where usage arrives.
Streams are read from the SDK's raw response and parsed with orjson (`parser="raw"`): the
SDK still does auth, base URL, timeouts and HTTP status errors, but builds no object per chunk.
`parser="sdk"` reads the SDK's chunk objects instead, for comparison (bench/provider_parse_bench.py).
The SDKs talk HTTP through their aiohttp client (`transport="aiohttp"`), whose C parser reads a stream of
small chunks for about 60% of the CPU of their default httpx client (`transport="httpx"`).
"""

from __future__ import annotations

import abc
import contextlib
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from types import ModuleType
from typing import Any, Literal

import httpx
import orjson

from chatbot_app.providers.base import (
    ChatMessage,
    ChatProvider,
    Completion,
    ErrorKind,
    ExecutedTool,
    GenerationOptions,
    ProviderError,
    ProviderEvent,
    ReasoningDelta,
    TextDelta,
    ToolCall,
    Usage,
    classify_status,
)
from chatbot_app.providers.server_sent_events import server_sent_events

MODEL_LIST_TTL_S = 600.0
# Ids that are not chat models (speech, moderation, embeddings); they never go in a model list.
_NON_CHAT_MARKERS = ("whisper", "tts", "guard", "playai", "distil", "embed", "moderation", "dall-e", "audio")

#: How a stream's chunks are read: raw bytes parsed with orjson, or the SDK's pydantic chunk objects.
StreamParser = Literal["raw", "sdk"]
#: The SDK's HTTP client: its DefaultAioHttpClient, or its default httpx one.
HttpTransport = Literal["aiohttp", "httpx"]


class OpenAIStyleProvider(ChatProvider):
    """A provider whose SDK follows the OpenAI chat-completions API."""

    #: The SDK module, for its exception classes (APIError, APIStatusError, ...).
    sdk: ModuleType
    #: The HTTP library the SDK is built on (httpx, or httpx2 for openai 3.x): a raw stream raises its errors.
    http: ModuleType = httpx

    def __init__(self, client: Any, fallback_models: Sequence[str] = (), parser: StreamParser = "raw") -> None:
        self._client = client
        self._parser = parser
        self._fallback_models = list(fallback_models)
        self._models: list[str] = []
        self._models_at = 0.0
        self._tool_models: frozenset[str] = frozenset()

    @abc.abstractmethod
    def _usage(self, chunk: Any) -> Usage | None:
        """The usage an SDK chunk object carries, if any (it comes with the last one)."""

    @abc.abstractmethod
    def _payload_usage(self, payload: dict[str, Any]) -> Usage | None:
        """The usage a parsed chunk carries, if any: the raw-parser twin of `_usage`."""

    @classmethod
    def http_client(cls, transport: HttpTransport) -> Any | None:
        """The `http_client` for the SDK's constructor: its aiohttp client, or None for its httpx default.

        Both raise httpx (or httpx2) errors, which `translate` classifies the same way.
        """
        return cls.sdk.DefaultAioHttpClient() if transport == "aiohttp" else None

    async def aclose(self) -> None:
        await self._client.close()

    def _stream_arguments(self) -> dict[str, Any]:
        return {}

    def _request(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": options.model,
            "messages": [m.as_dict() for m in messages],
            "temperature": options.temperature,
            "max_tokens": options.max_tokens,
            "top_p": options.top_p,
        }
        # Only with tools: APIs refuse an empty `tools`, and a `tool_choice` without tools.
        if options.tools:
            request["tools"] = list(options.tools)
            if options.tool_choice is not None:
                request["tool_choice"] = options.tool_choice
            if options.parallel_tool_calls is not None:
                request["parallel_tool_calls"] = options.parallel_tool_calls
        if options.compound_tools is not None:  # Groq's own parameter: the SDKs send it as extra body
            request["extra_body"] = {"compound_custom": {"tools": {"enabled_tools": list(options.compound_tools)}}}
        return request

    async def stream(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> AsyncIterator[ProviderEvent]:
        read = self._stream_sdk_objects if self._parser == "sdk" else self._stream_raw
        # aclosing: when our reader closes this iterator, the inner one (and the connection) closes now, not at GC.
        try:
            async with contextlib.aclosing(read(messages, options)) as events:
                async for event in events:
                    yield event
        except (self.sdk.APIError, self.http.HTTPError) as exc:
            # HTTP status errors, timeouts, refused connections and cuts mid-stream (httpx's RemoteProtocolError).
            raise self.translate(exc) from exc

    async def _stream_raw(
        self, messages: Sequence[ChatMessage], options: GenerationOptions
    ) -> AsyncIterator[ProviderEvent]:
        """The stream read from the SDK's raw response: one orjson parse per chunk, no SDK objects.

        The SDK raises its APIStatusError on a non-2xx answer before any byte is read; leaving the
        `async with` (the reply ended, failed, or its reader closed this iterator) closes the connection.
        """
        request = self._request(messages, options) | {"stream": True} | self._stream_arguments()
        calls, executed = _ToolCalls(), _ExecutedTools()
        async with (
            self._client.chat.completions.with_streaming_response.create(**request) as response,
            contextlib.aclosing(server_sent_events(response.iter_bytes())) as events,
        ):
            async for sse in events:
                if sse.data.startswith(b"[DONE]"):
                    break
                payload = _parsed(sse.data)
                if sse.event == "error" or payload.get("error"):
                    raise self._stream_error(payload, response.http_request)
                if choices := payload.get("choices"):
                    delta = choices[0].get("delta") or {}
                    # Groq names it `reasoning`; vLLM and others `reasoning_content`.
                    if reasoning := delta.get("reasoning") or delta.get("reasoning_content"):
                        yield ReasoningDelta(reasoning)
                    if content := delta.get("content"):
                        yield TextDelta(content)
                    # Rare keys, looked up once each: the tool code runs only for chunks that carry them.
                    if pieces := delta.get("tool_calls"):
                        calls.add(pieces)
                    if ran := delta.get("executed_tools"):
                        for tool in executed.add(ran):
                            yield tool
                if (usage := self._payload_usage(payload)) is not None:
                    # Groq's usage comes in the chunk that finishes the turn: the calls go first.
                    for event in (*executed.rest(), *calls.done()):
                        yield event
                    yield usage
            for event in (*executed.rest(), *calls.done()):
                yield event

    def _stream_error(self, payload: dict[str, Any], request: Any) -> Exception:
        """An error sent inside the stream, as the SDK reports it: an APIError with the server's message."""
        error = payload.get("error")
        message = error.get("message") if isinstance(error, dict) else None
        if not isinstance(message, str) or not message:
            message = "An error occurred during streaming"
        return self.sdk.APIError(message, request, body=error)

    async def _stream_sdk_objects(
        self, messages: Sequence[ChatMessage], options: GenerationOptions
    ) -> AsyncIterator[ProviderEvent]:
        """The stream as the SDK's chunk objects (a pydantic model per chunk): kept to measure against."""
        response = await self._client.chat.completions.create(
            **self._request(messages, options), stream=True, **self._stream_arguments()
        )
        calls, executed = _ToolCalls(), _ExecutedTools()
        async with response:
            async for chunk in response:
                if chunk.choices:
                    delta = chunk.choices[0].delta
                    if reasoning := getattr(delta, "reasoning", None) or getattr(delta, "reasoning_content", None):
                        yield ReasoningDelta(reasoning)
                    if delta.content:
                        yield TextDelta(delta.content)
                    if delta.tool_calls:
                        calls.add(delta.tool_calls)
                    # A declared field of Groq's delta; an extra (plain dicts) in the openai SDK's.
                    if ran := getattr(delta, "executed_tools", None):
                        for tool in executed.add(ran):
                            yield tool
                if (usage := self._usage(chunk)) is not None:
                    for event in (*executed.rest(), *calls.done()):
                        yield event
                    yield usage
            for event in (*executed.rest(), *calls.done()):
                yield event

    async def complete(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> Completion:
        """One non-streaming request: the whole reply in one response."""
        try:
            response = await self._client.chat.completions.create(**self._request(messages, options), stream=False)
        except (self.sdk.APIError, self.http.HTTPError) as exc:
            raise self.translate(exc) from exc
        usage = response.usage
        message = response.choices[0].message if response.choices else None
        # Function calls only (openai's SDK also knows "custom" tools, which are never offered here).
        calls = tuple(
            ToolCall(c.id, c.function.name, c.function.arguments)
            for c in (message.tool_calls if message is not None else None) or ()
            if getattr(c, "function", None) is not None
        )
        return Completion(
            (message.content or "") if message is not None else "",
            Usage(usage.prompt_tokens, usage.completion_tokens, getattr(usage, "completion_time", None))
            if usage
            else None,
            calls,
        )

    async def list_models(self) -> list[str]:
        """The provider's current chat models, cached for MODEL_LIST_TTL_S.

        If the list cannot be fetched, the configured fallback list is used when there is one.
        """
        if self._models and time.monotonic() - self._models_at < MODEL_LIST_TTL_S:
            return self._models
        try:
            page = await self._client.models.list()
        except (self.sdk.APIError, self.http.HTTPError) as exc:
            if self._fallback_models:
                return self._fallback_models
            raise self.translate(exc) from exc
        chat_models = [
            m
            for m in page.data
            if getattr(m, "active", True) is not False and not any(k in m.id.lower() for k in _NON_CHAT_MARKERS)
        ]
        ids = sorted(m.id for m in chat_models)
        self._tool_models = frozenset(m.id for m in chat_models if _says_it_calls_tools(m))
        self._models, self._models_at = ids, time.monotonic()
        return ids

    @property
    def catalog_tool_models(self) -> frozenset[str]:
        return self._tool_models

    def translate(self, exc: Exception) -> ProviderError:
        """The SDK's (or httpx's) exception as a classified ProviderError."""
        if _refused_or_reset(exc):  # aiohttp's transport reports a refused connection as a ConnectTimeout
            return ProviderError(ErrorKind.CONNECTION, str(exc) or "no connection")
        if isinstance(exc, self.sdk.APITimeoutError | self.http.TimeoutException):
            return ProviderError(ErrorKind.TIMEOUT, str(exc) or "timed out")
        if isinstance(exc, self.sdk.APIConnectionError):
            return ProviderError(ErrorKind.CONNECTION, str(exc))
        if isinstance(exc, self.sdk.APIStatusError):
            return ProviderError(
                classify_status(exc.status_code, str(exc.message)),
                f"HTTP {exc.status_code}: {exc.message}",
                retry_after_s=_seconds(exc.response.headers.get("retry-after")),
            )
        if isinstance(exc, self.http.HTTPError):
            # A connection cut mid-stream surfaces as httpx (e.g. RemoteProtocolError), not as an SDK error.
            return ProviderError(ErrorKind.CONNECTION, f"{type(exc).__name__}: {exc}")
        if isinstance(exc, self.sdk.APIError):
            # An error event inside a 200 stream: no status, so its message alone says what kind it is.
            message = str(exc.message)
            return ProviderError(classify_status(500, message), f"error in stream: {message}")
        return ProviderError(ErrorKind.SERVER, str(exc))


def _says_it_calls_tools(entry: Any) -> bool:
    """Whether a model list entry says the model calls tools: OpenRouter's `supported_parameters` naming
    "tools", or `capabilities` as a list naming "tools" or a map with "tools" or "function_calling" true.

    The SDKs keep such unknown fields as extras, unchecked: any other shape says nothing.
    """
    supported = getattr(entry, "supported_parameters", None)
    if isinstance(supported, list) and "tools" in supported:
        return True
    capabilities = getattr(entry, "capabilities", None)
    if isinstance(capabilities, list):
        return "tools" in capabilities or "function_calling" in capabilities
    if isinstance(capabilities, dict):
        return capabilities.get("tools") is True or capabilities.get("function_calling") is True
    return False


def _field(item: Any, name: str) -> Any:
    """A field of a parsed chunk's object (a dict) or of an SDK object (an attribute); None when absent."""
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)


class _ToolCalls:
    """Function calls put together from a stream's `delta.tool_calls` pieces.

    Each piece names its call by `index`; the call's first piece has its `id` and `function.name`, and
    `function.arguments` comes in parts.
    """

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: dict[int, list[str]] = {}  # index -> [id, name, arguments so far]

    def add(self, pieces: Iterable[Any]) -> None:
        for piece in pieces:
            index = _field(piece, "index")
            if not isinstance(index, int):
                # Left out by some servers: a piece with an id starts a call, one without goes on with the last.
                last = max(self._calls, default=-1)
                index = last + 1 if _field(piece, "id") or last < 0 else last
            call = self._calls.setdefault(index, ["", "", ""])
            if call_id := _field(piece, "id"):
                call[0] = call_id
            if function := _field(piece, "function"):
                if name := _field(function, "name"):
                    call[1] = name  # whole in the first piece (some servers repeat it)
                if arguments := _field(function, "arguments"):
                    call[2] += arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()

    def done(self) -> list[ToolCall]:
        """The calls in index order (each once: they are forgotten), with an id made up where a server gave none."""
        calls = [
            ToolCall(call_id or f"call_{index}", name, arguments)
            for index, (call_id, name, arguments) in sorted(self._calls.items())
        ]
        self._calls.clear()
        return calls


class _ExecutedTools:
    """The tools Groq's compound models ran (`delta.executed_tools`), each yielded once.

    A tool can appear in several chunks under the same `index`: when it starts (no `output` yet) and
    when it has run. It is yielded when its output arrives; one that never gets an output, at the end.
    """

    __slots__ = ("_done", "_waiting")

    def __init__(self) -> None:
        self._done: set[int] = set()
        self._waiting: dict[int, Any] = {}

    def add(self, items: Iterable[Any]) -> list[ExecutedTool]:
        ready: list[ExecutedTool] = []
        for item in items:
            index = _field(item, "index")
            if not isinstance(index, int):  # nothing to tell repeats apart by
                ready.append(_executed_tool(item))
            elif index in self._done:
                continue
            elif _field(item, "output") is None:
                self._waiting[index] = item
            else:
                self._waiting.pop(index, None)
                self._done.add(index)
                ready.append(_executed_tool(item))
        return ready

    def rest(self) -> list[ExecutedTool]:
        """The tools seen without an output, in index order (each once)."""
        rest = [_executed_tool(item) for _, item in sorted(self._waiting.items())]
        self._done.update(self._waiting)
        self._waiting.clear()
        return rest


def _executed_tool(item: Any) -> ExecutedTool:
    """One of `executed_tools`, parsed or an SDK object: its type, arguments, output, and the pages it found."""
    arguments = _field(item, "arguments")
    if not isinstance(arguments, str):
        arguments = "" if arguments is None else orjson.dumps(arguments).decode()
    output = _field(item, "output")
    output = output if isinstance(output, str) else ""
    # Web search results, and the pages a browsing tool visited (both carry title and url).
    found = [*(_field(_field(item, "search_results"), "results") or ()), *(_field(item, "browser_results") or ())]
    sources = tuple(
        (str(_field(r, "title") or url), str(url)) for r in found if isinstance(url := _field(r, "url"), str) and url
    )
    return ExecutedTool(str(_field(item, "type") or "tool"), arguments, output, sources)


def _parsed(data: bytes) -> dict[str, Any]:
    """One chunk's JSON object; anything else is the server's fault."""
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        payload = None
    if not isinstance(payload, dict):
        raise ProviderError(ErrorKind.SERVER, f"malformed stream chunk: {data[:200]!r}")
    return payload


def _refused_or_reset(exc: BaseException) -> bool:
    """Whether the OS refused or reset the connection somewhere under this exception (its causes)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ConnectionError):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
