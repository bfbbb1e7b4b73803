"""A fake Groq/OpenAI-compatible chat server on loopback, for tests and benchmarks.

It speaks the real wire protocol (SSE chunks, `x_groq.usage` in the last chunk, OpenAI-style
error bodies), so the real `groq` and `openai` SDKs drive it unmodified. When a request asks for
usage with `stream_options: {"include_usage": true}` (as the OpenAI provider does), one more chunk
follows the last, as OpenAI sends it: no choices and a top-level `usage`. Behaviour is scripted
per request from Python: delays, token counts, HTTP errors with retry-after, and connection cuts.

Its "model" is deterministic: it answers "Your name is X." when asked for a name that an earlier
user message gave ("My name is X."), and otherwise echoes the last user message.

Tools, in Groq's (and OpenAI's) wire format: when a request offers `tools` and its last user message has
lines `call <name> <json-args>`, the reply calls those functions (streamed in pieces, finish_reason
"tool_calls"); when the last messages are `tool` results, it answers "Tool results: " and their contents.
Groq's compound systems (COMPOUND_MODELS, when the server offers them) report the tools they ran
(`executed_tools`: one web search of the last user message by default, none when the request's
`compound_custom.tools.enabled_tools` leaves `web_search` out) before their answer.
A model's entry in /models can carry more fields (`model_fields`), as some OpenAI-compatible servers say
there what a model can do (`supported_parameters`, `capabilities`).
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import math
import re
import socket
import threading
import time
import wave
from array import array
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

DEFAULT_MODELS = ("fake-large", "fake-small")
#: Groq's agentic systems, which run tools themselves; served only when a test sets `compound_models`.
COMPOUND_MODELS = ("groq/compound", "groq/compound-mini")
#: What a compound model's default web search finds, as (title, url).
FAKE_SEARCH_RESULTS = (
    ("Fake result one", "https://example.com/one"),
    ("Fake result two", "https://example.com/two"),
)
_FILLER = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu"]


@dataclass
class Hold:
    """Holds a stream open after `after_tokens` tokens until released: a test decides when it goes on.

    `reached` is set once the stream holds (every token before the hold point is written), so a test
    waits for that, not for a guessed time. Released streams go on at their pace; so does a stream
    whose server stops or resets.
    """

    after_tokens: int = 0
    reached: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    # Wakes each stream waiting in the server's loop (release comes from another thread).
    _wakers: list[Callable[[], object]] = field(default_factory=list)

    def release(self) -> None:
        self.released.set()
        for wake in list(self._wakers):
            wake()

    async def wait_released(self) -> None:
        """In the server's loop: until released (cancelled with the stream if its client goes)."""
        loop, released = asyncio.get_running_loop(), asyncio.Event()
        wake = functools.partial(loop.call_soon_threadsafe, released.set)
        self._wakers.append(wake)
        try:
            if not self.released.is_set():  # checked after joining the wakers: a release cannot slip between
                await released.wait()
        finally:
            self._wakers.remove(wake)


@dataclass
class Behaviour:
    """How the server answers one request. Fields left as None use the server defaults."""

    text: str | None = None
    # Stream exactly these pieces, one per token (e.g. a code fence cut in the middle); overrides `text`.
    chunks: list[str] | None = None
    tokens: int | None = None  # pad/cut the reply to this many word tokens
    tokens_per_s: float | None = None  # None: as fast as possible
    first_token_delay_s: float = 0.0
    status: int | None = None  # answer with this HTTP error instead of a reply
    error_message: str = "injected failure"
    retry_after: str | None = None
    cut_after_tokens: int | None = None  # drop the connection after this many tokens
    # Groq's reasoning models (gpt-oss, qwen3 with reasoning_format=parsed): this text streams first, as
    # `delta.reasoning` word tokens, then the reply as `delta.content`; both count as completion tokens.
    reasoning: str | None = None
    # Send an in-stream error event with `error_message` after this many tokens, then end: as OpenAI-style
    # servers do ({"error": {...}}, "openai"), or as Groq stops a stream early ({"x_groq": {"error": ...}}).
    stream_error_after_tokens: int | None = None
    stream_error_style: Literal["openai", "x_groq"] = "openai"
    # Called with the request body, in the server's thread, before the request is answered.
    on_request: Callable[[dict[str, Any]], None] | None = None
    # Hold the stream open at a point until the test releases it (a batch answer: before it is sent).
    hold: Hold | None = None
    # Taken only by a request whose messages contain this text, and before any other script: the fake
    # serves every app of the session, and another test's late title request must not take this one's.
    for_prompt: str | None = None
    # Call these functions, (name, arguments as JSON text), in one turn after any `text`; streamed as Groq
    # sends them (arguments in pieces). None: the default rule (lines "call <name> <json>" when tools are
    # offered); [] calls nothing.
    tool_calls: list[tuple[str, str]] | None = None
    # What a compound model ran, in Groq's `executed_tools` shape; None: a web search of the last user message.
    executed_tools: list[dict[str, Any]] | None = None


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeLLMServer:
    """Start with `start()`; `base_url` is for GROQ_BASE_URL, `openai_base_url` for the openai SDK."""

    models: tuple[str, ...] = DEFAULT_MODELS
    # Compound systems it also serves and lists (e.g. COMPOUND_MODELS); none by default, since tests pin
    # the model list. `reset` turns them off again.
    compound_models: tuple[str, ...] = ()
    # More fields of chosen models' entries in /models, e.g. {"fake-small": {"supported_parameters": ["tools"]}}.
    # `reset` clears them.
    model_fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    default: Behaviour = field(default_factory=Behaviour)
    # When set, unscripted requests take their behaviour from this (e.g. random faults for a soak test).
    chooser: Callable[[], Behaviour] | None = None
    host: str = "127.0.0.1"
    port: int = 0
    # A paced stream writes every token due at once, at most this often: one write per token at 30 streams
    # x 1,000 tok/s would make the fake, not the app, the bottleneck. The SSE events stay one per token.
    write_interval_s: float = 0.005
    requests: list[RecordedRequest] = field(default_factory=list)
    # Monotonic times of each stream's first and last token, keyed by request number (for benchmarks).
    token_times: dict[int, tuple[float, float]] = field(default_factory=dict)
    #: When the last chunk of a streamed answer's tool calls was written (wall clock), by request number.
    calls_sent_at: dict[int, float] = field(default_factory=dict)
    # Request numbers of streams the client abandoned before the last chunk; `abort_seen` is set on each.
    aborted: list[int] = field(default_factory=list)
    abort_seen: threading.Event = field(default_factory=threading.Event)
    # What each chat request really cost, as a provider would bill it: request number -> (prompt tokens, completion
    # tokens sent). A stream the client abandoned counts what was sent before it went.
    billed: dict[int, tuple[int, int]] = field(default_factory=dict)
    #: The usage each streamed answer reported, by request number (what the client is told it spent).
    reported_usage: dict[int, dict[str, Any]] = field(default_factory=dict)
    _queue: deque[Behaviour] = field(default_factory=deque)
    _stream_queue: deque[Behaviour] = field(default_factory=deque)
    _batch_queue: deque[Behaviour] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # Every hold handed out, released on reset and stop so that no stream waits past its test.
    _holds: list[Hold] = field(default_factory=list)
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    # -- control ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.base_url}/v1"

    def enqueue(self, *behaviours: Behaviour) -> None:
        """Script the next requests, in order; later requests fall back to `default`."""
        with self._lock:
            self._queue.extend(behaviours)

    def enqueue_stream(self, *behaviours: Behaviour) -> None:
        """Script the next *streamed* requests (replies) only.

        The app makes batch requests of its own in the background (titles, summaries); scripting
        replies and those separately keeps a late title request from taking a reply's script.
        """
        with self._lock:
            self._stream_queue.extend(behaviours)

    def enqueue_batch(self, *behaviours: Behaviour) -> None:
        """Script the next non-streamed requests (titles, summaries, batch replies) only."""
        with self._lock:
            self._batch_queue.extend(behaviours)

    def reset(self) -> None:
        self._release_holds()
        with self._lock:
            self._queue.clear()
            self._stream_queue.clear()
            self._batch_queue.clear()
            self.requests.clear()
            self.token_times.clear()
            self.aborted.clear()
            self.abort_seen.clear()
            self.billed.clear()
            self.reported_usage.clear()
            self.calls_sent_at.clear()
        self.default = Behaviour()
        self.chooser = None
        self.compound_models = ()
        self.model_fields = {}

    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def speech_requests(self) -> list[RecordedRequest]:
        """Text-to-speech requests (Read aloud), in the order they arrived."""
        return [r for r in self.requests if r.path.endswith("/audio/speech")]

    def streamed_requests(self) -> list[RecordedRequest]:
        """Chat requests that asked for a stream (replies; titles and summaries are batch requests)."""
        return [r for r in self.chat_requests() if r.body.get("stream")]

    def wait_for_chat_requests(self, count: int, timeout_s: float = 20.0) -> None:
        """Block until `count` chat requests have arrived (the app makes some in the background)."""
        deadline = time.monotonic() + timeout_s
        while len(self.chat_requests()) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"expected {count} chat requests, got {len(self.chat_requests())}")
            time.sleep(0.02)

    def _next(self, stream: bool, body: dict[str, Any] | None = None) -> Behaviour:
        with self._lock:
            kind_queue = self._stream_queue if stream else self._batch_queue
            # The request's messages as text, only when some script is aimed at a prompt.
            prompt = (
                json.dumps((body or {}).get("messages", ""), ensure_ascii=False)
                if any(b.for_prompt for b in kind_queue)
                else ""
            )
            if aimed := next((b for b in kind_queue if b.for_prompt and b.for_prompt in prompt), None):
                kind_queue.remove(aimed)
                behaviour = aimed
            elif unaimed := next((b for b in kind_queue if not b.for_prompt), None):
                kind_queue.remove(unaimed)
                behaviour = unaimed
            elif self._queue:
                behaviour = self._queue.popleft()
            else:
                behaviour = self.chooser() if self.chooser is not None else self.default
            if behaviour.hold is not None:
                self._holds.append(behaviour.hold)
            return behaviour

    def start(self) -> FakeLLMServer:
        if not self.port:
            with socket.socket() as s:
                s.bind((self.host, 0))
                self.port = s.getsockname()[1]
        config = uvicorn.Config(self._app(), host=self.host, port=self.port, log_level="critical", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="fake-llm-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake LLM server did not start")
            time.sleep(0.01)
        return self

    def _release_holds(self) -> None:
        with self._lock:
            holds, self._holds = self._holds, []
        for hold in holds:
            hold.release()

    def stop(self) -> None:
        self._release_holds()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    # -- HTTP ------------------------------------------------------------------------------

    def _app(self) -> Starlette:
        routes = []
        for prefix in ("/openai/v1", "/v1"):
            routes += [
                Route(f"{prefix}/chat/completions", self._chat, methods=["POST"]),
                Route(f"{prefix}/models", self._models, methods=["GET"]),
            ]
        routes += transcription_routes(self) + speech_routes(self)
        return Starlette(routes=routes)

    async def _models(self, request: Request) -> Response:
        self.requests.append(RecordedRequest(request.url.path, dict(request.headers), {}))
        entry = {"object": "model", "created": 0, "owned_by": "fake", "active": True}
        data = [{"id": m} | entry | self.model_fields.get(m, {}) for m in (*self.models, *self.compound_models)]
        return JSONResponse({"object": "list", "data": data})

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(RecordedRequest(request.url.path, dict(request.headers), body))
        number = len(self.requests)
        behaviour = self._next(bool(body.get("stream")), body)
        if behaviour.on_request is not None:
            behaviour.on_request(body)
        if behaviour.status is not None:
            headers = {"retry-after": behaviour.retry_after} if behaviour.retry_after else {}
            error = {"message": behaviour.error_message, "type": "invalid_request_error", "code": None}
            return JSONResponse({"error": error}, status_code=behaviour.status, headers=headers)
        model = body.get("model", "")
        if model not in self.models and model not in self.compound_models:
            error = {
                "message": f"The model `{model}` does not exist",
                "type": "invalid_request_error",
                "code": "model_not_found",
            }
            return JSONResponse({"error": error}, status_code=404)
        turn = _ToolTurn.of(number, body, behaviour, compound=model in self.compound_models)
        # A turn that calls tools says nothing unless its text is scripted.
        quiet = turn.calls and behaviour.text is None and behaviour.chunks is None
        tokens = [] if quiet else reply_tokens(body.get("messages", []), behaviour)
        if body.get("max_tokens"):
            tokens = tokens[: int(body["max_tokens"])]
        prompt_tokens = sum(len(str(m.get("content", ""))) // 4 + 4 for m in body.get("messages", []))
        if body.get("stream"):
            return _SSEResponse(
                self._sse(number, body, tokens, prompt_tokens, behaviour, turn), media_type="text/event-stream"
            )
        if behaviour.hold is not None:
            behaviour.hold.reached.set()
            await behaviour.hold.wait_released()
        await asyncio.sleep(behaviour.first_token_delay_s)
        completion = len(tokens) + turn.tokens
        self.billed[number] = (prompt_tokens, completion)
        message: dict[str, Any] = {"role": "assistant", "content": "".join(tokens) if tokens or not quiet else None}
        if turn.calls:
            message["tool_calls"] = turn.wire_calls()
        if turn.executed:
            message["executed_tools"] = turn.executed
        return JSONResponse(
            {
                "id": f"chatcmpl-{number}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": turn.finish_reason}],
                "usage": _usage(prompt_tokens, completion),
            }
        )

    async def _sse(
        self,
        number: int,
        body: dict[str, Any],
        tokens: list[str],
        prompt_tokens: int,
        behaviour: Behaviour,
        turn: _ToolTurn,
    ) -> AsyncIterator[bytes]:
        frame = _ChunkFrame(number, body["model"])
        reasoning = reply_tokens([], Behaviour(text=behaviour.reasoning)) if behaviour.reasoning else []
        # Pre-encoded: the per-token cost is one bytes join, whatever the payload's shape.
        events = [frame.delta("reasoning", t) for t in reasoning] + [frame.delta("content", t) for t in tokens]
        if turn.executed or turn.calls:  # the tools a compound model ran come first, the calls last
            events = turn.executed_events(frame) + events + turn.call_events(frame)
        cut, failing = behaviour.cut_after_tokens, behaviour.stream_error_after_tokens
        # Where the stream stops early, if it does: a connection cut, or an error event.
        limit = min(n for n in (len(events), cut, failing) if n is not None)
        sent = 0
        try:
            yield frame.delta("content", "", role=True)
            await asyncio.sleep(behaviour.first_token_delay_s)
            started = time.monotonic()
            first: float | None = None
            hold = behaviour.hold
            held_at = min(hold.after_tokens, limit) if hold is not None else limit
            async for count, write in self._paced(events[:held_at], behaviour.tokens_per_s, started):
                first = first or time.monotonic()
                yield write
                sent += count
            if hold is not None:
                hold.reached.set()
                await hold.wait_released()
                async for count, write in self._paced(events[held_at:limit], behaviour.tokens_per_s, time.monotonic()):
                    first = first or time.monotonic()
                    yield write
                    sent += count
            if turn.calls:  # the calls' chunks come last: the last argument chunk has just been written
                self.calls_sent_at[number] = time.time()
            if cut is not None and limit == cut:
                raise ConnectionAbortedError("injected connection cut")
            if failing is not None and limit == failing:
                yield frame.error(behaviour.error_message, behaviour.stream_error_style)
                return
            self.token_times[number] = (first or time.monotonic(), time.monotonic())
            completion = len(reasoning) + len(tokens) + turn.tokens
            usage = _usage(prompt_tokens, completion) | {"completion_time": round(time.monotonic() - started, 4)}
            self.reported_usage[number] = usage
            yield frame.last(turn.finish_reason, x_groq={"id": f"req_{number}", "usage": usage})
            if (body.get("stream_options") or {}).get("include_usage"):
                # What OpenAI sends when asked: one more chunk, with no choices and a top-level `usage`.
                yield frame.usage_only(_usage(prompt_tokens, completion))
            yield b"data: [DONE]\n\n"
        except (asyncio.CancelledError, GeneratorExit):
            # The client went away mid-stream (cancelled while pacing, or closed by _SSEResponse).
            self.aborted.append(number)
            self.abort_seen.set()
            raise
        finally:
            self.billed[number] = (prompt_tokens, sent)

    async def _paced(
        self, events: list[bytes], tokens_per_s: float | None, started: float
    ) -> AsyncIterator[tuple[int, bytes]]:
        """The events at `tokens_per_s` (all at once when None), each write carrying every event then due (and
        how many events it carries)."""
        sent = 0
        while sent < len(events):
            due = len(events)
            if tokens_per_s:
                # Pace against the start time so sleep granularity does not slow the rate down.
                due = min(due, int((time.monotonic() - started) * tokens_per_s) + 1)
            if due > sent:
                yield due - sent, b"".join(events[sent:due])
                sent = due
            if sent < len(events) and tokens_per_s:
                await asyncio.sleep(max(started + sent / tokens_per_s - time.monotonic(), self.write_interval_s))


class _ChunkFrame:
    """One stream's SSE events as bytes: the chunk envelope is encoded once, each delta spliced into it."""

    def __init__(self, number: int, model: str) -> None:
        envelope = {"id": f"chatcmpl-{number}", "object": "chat.completion.chunk", "created": int(time.time())}
        self._envelope = envelope | {"model": model}
        head = json.dumps(self._envelope)[:-1]  # without the closing brace
        self._head = f'data: {head}, "choices": [{{"index": 0, "delta": {{'.encode()
        self._tail = b'}, "finish_reason": null}]}\n\n'

    def delta(self, field: str, text: str, *, role: bool = False) -> bytes:
        """A chunk whose delta carries `text` in `field` ("content" or Groq's "reasoning")."""
        role_part = b'"role": "assistant", ' if role else b""
        return b"".join((self._head, role_part, _encoded_delta(field, text), self._tail))

    def delta_of(self, delta: dict[str, Any]) -> bytes:
        """A chunk whose delta is `delta` as given (tool calls, executed tools)."""
        return self._event({"choices": [{"index": 0, "delta": delta, "finish_reason": None}]})

    def last(self, finish_reason: str = "stop", **extra: Any) -> bytes:
        """The chunk that ends the reply: an empty delta, its finish_reason, and Groq's `x_groq` usage."""
        return self._event({"choices": [{"index": 0, "delta": {}, "finish_reason": finish_reason}], **extra})

    def usage_only(self, usage: dict[str, Any]) -> bytes:
        """OpenAI's usage chunk (stream_options.include_usage): no choices, a top-level `usage`."""
        return self._event({"choices": [], "usage": usage})

    def error(self, message: str, style: Literal["openai", "x_groq"]) -> bytes:
        """An error inside a 200 stream: OpenAI-style servers send an `error` object, Groq its `x_groq.error`."""
        if style == "x_groq":
            return self._event({"choices": [], "x_groq": {"id": "req_error", "error": message}})
        error = {"message": message, "type": "server_error", "code": None}
        return f"data: {json.dumps({'error': error})}\n\n".encode()

    def _event(self, fields: dict[str, Any]) -> bytes:
        return f"data: {json.dumps(self._envelope | fields)}\n\n".encode()


@functools.lru_cache(maxsize=4096)
def _encoded_delta(field: str, text: str) -> bytes:
    """`"field": "text"` as JSON bytes; replies repeat their word tokens, so most are encoded once."""
    return f'"{field}": {json.dumps(text)}'.encode()


@dataclass
class _ToolTurn:
    """The tools in one reply: the functions it calls, as (id, name, arguments), and what a compound model ran."""

    calls: list[tuple[str, str, str]]
    executed: list[dict[str, Any]]

    @classmethod
    def of(cls, number: int, body: dict[str, Any], behaviour: Behaviour, *, compound: bool) -> _ToolTurn:
        wanted = behaviour.tool_calls if behaviour.tool_calls is not None else requested_calls(body)
        calls = [(f"call_{number}_{i}", name, arguments) for i, (name, arguments) in enumerate(wanted)]
        executed: list[dict[str, Any]] = []
        if compound:
            messages = body.get("messages", [])
            ran = behaviour.executed_tools if behaviour.executed_tools is not None else web_search(messages)
            if not searches_the_web(body):
                ran = [tool for tool in ran if tool.get("type") != "search"]
            executed = [{"index": index} | tool for index, tool in enumerate(ran)]
        return cls(calls, executed)

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.calls else "stop"

    @property
    def tokens(self) -> int:
        """What the calls cost as completion tokens: one per streamed piece of arguments."""
        return sum(len(_pieces(arguments)) for _, _, arguments in self.calls)

    def wire_calls(self) -> list[dict[str, Any]]:
        """The calls as a whole message carries them."""
        return [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            for call_id, name, arguments in self.calls
        ]

    def call_events(self, frame: _ChunkFrame) -> list[bytes]:
        """Each call as Groq and OpenAI stream it: id and name first (no arguments yet), then the arguments in
        pieces, each piece naming its call by `index` only."""
        events = []
        for index, (call_id, name, arguments) in enumerate(self.calls):
            opening = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
            events.append(frame.delta_of({"tool_calls": [opening]}))
            events += [
                frame.delta_of({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                for piece in _pieces(arguments)
            ]
        return events

    def executed_events(self, frame: _ChunkFrame) -> list[bytes]:
        """Each tool a compound model ran, twice under its index: when it starts (no output yet) and when it is
        done, as Groq streams them."""
        events = []
        for tool in self.executed:
            started = {k: tool[k] for k in ("index", "type", "arguments") if k in tool}
            events += [frame.delta_of({"executed_tools": [started]}), frame.delta_of({"executed_tools": [tool]})]
        return events


def _pieces(arguments: str) -> list[str]:
    """A call's arguments cut in three pieces or fewer (never none), as a model streams them token by token."""
    size = max(1, math.ceil(len(arguments) / 3))
    return [arguments[i : i + size] for i in range(0, len(arguments), size)] or [""]


#: `call <name> <json-args>` in a user message, one call per line.
_CALL = re.compile(r"\bcall\s+([A-Za-z_][\w.-]*)\s+(\{.*\})")


def requested_calls(body: dict[str, Any]) -> list[tuple[str, str]]:
    """The calls an unscripted reply makes: when the request offers tools and its last message is the user's,
    each `call <name> <json-args>` in that message, in order."""
    messages = body.get("messages") or []
    if not body.get("tools") or not messages or messages[-1].get("role") != "user":
        return []
    return [(m.group(1), m.group(2)) for m in _CALL.finditer(_text_of(messages[-1].get("content", "")))]


def searches_the_web(body: dict[str, Any]) -> bool:
    """Whether a compound request lets the system search: Groq's default, unless `compound_custom.tools.
    enabled_tools` lists the tools allowed without `web_search`."""
    custom = body.get("compound_custom")
    tools = custom.get("tools") if isinstance(custom, dict) else None
    enabled = tools.get("enabled_tools") if isinstance(tools, dict) else None
    return not isinstance(enabled, list) or "web_search" in enabled


def web_search(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A compound model's default tool run: a web search of the last user message, finding FAKE_SEARCH_RESULTS."""
    user_texts = [_text_of(m.get("content", "")) for m in messages if m.get("role") == "user"]
    query = user_texts[-1] if user_texts else ""
    results = [
        {"title": title, "url": url, "content": f"What {title.lower()} says about {query}.", "score": 0.9}
        for title, url in FAKE_SEARCH_RESULTS
    ]
    output = "\n\n".join(f"Title: {r['title']}\nURL: {r['url']}\nContent: {r['content']}" for r in results)
    return [
        {
            "type": "search",
            "arguments": json.dumps({"query": query}),
            "output": output,
            "search_results": {"results": results},
        }
    ]


class _SSEResponse(StreamingResponse):
    """A StreamingResponse that always closes its body generator, so an abandoned stream is seen at once.

    When the client disconnects while a chunk is being sent, Starlette cancels the sender and leaves
    the generator suspended at its `yield`; closing it here makes `_sse` record the abort now rather
    than whenever the generator is garbage-collected.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()  # type: ignore[attr-defined]


def reply_tokens(messages: list[dict[str, Any]], behaviour: Behaviour) -> list[str]:
    """The deterministic reply, split into word tokens that keep their leading space (or the scripted chunks)."""
    if behaviour.chunks is not None:
        return list(behaviour.chunks)
    text = behaviour.text if behaviour.text is not None else _answer(messages)
    tokens = re.findall(r"\s*\S+", text) or [text]
    if behaviour.tokens is not None:
        while len(tokens) < behaviour.tokens:
            tokens.append(" " + _FILLER[len(tokens) % len(_FILLER)])
        tokens = tokens[: behaviour.tokens]
    return tokens


def _answer(messages: list[dict[str, Any]]) -> str:
    if messages and messages[-1].get("role") == "tool":  # after its calls: the results, so a test sees they came
        results: list[str] = []
        for message in reversed(messages):
            if message.get("role") != "tool":
                break
            results.insert(0, _text_of(message.get("content") or ""))
        return "Tool results: " + " | ".join(results)
    user_texts = [_text_of(m.get("content", "")) for m in messages if m.get("role") == "user"]
    last = user_texts[-1] if user_texts else ""
    if re.search(r"\bwhat\b.*\bmy name\b", last, re.IGNORECASE):
        for earlier in reversed(user_texts[:-1]):
            if match := re.search(r"\bmy name is (\w+)", earlier, re.IGNORECASE):
                return f"Your name is {match.group(1)}."
        return "I don't know your name yet."
    return f"You said: {last}"


def _text_of(content: Any) -> str:
    """A message's text: a plain string, or the text parts of a content-parts list (images left out)."""
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return str(content)


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


# -- speech to text (kept apart from the chat routes above) ----------------------------------------

#: What the fake "hears" in any audio: the transcript a test expects back.
FAKE_TRANSCRIPT = "This is what the fake server heard."


def audio_seconds(data: bytes) -> float:
    """A WAV file's duration from its header (bytes of data over bytes per second); 1 s for anything else."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE" and len(data) >= 44:
        byte_rate = int.from_bytes(data[28:32], "little")
        if byte_rate:
            return round((len(data) - 44) / byte_rate, 3)
    return 1.0


def transcription_routes(server: FakeLLMServer) -> list[Route]:
    """POST {prefix}/audio/transcriptions as Groq and OpenAI speak it: multipart in, `{"text": ...}` out."""

    async def transcribe(request: Request) -> Response:
        form = await request.form()
        upload = form.get("file")
        data = await upload.read() if upload is not None and not isinstance(upload, str) else b""
        body = {
            "model": form.get("model"),
            "response_format": form.get("response_format"),
            "language": form.get("language"),
            "filename": getattr(upload, "filename", None),
            "file": data,
        }
        server.requests.append(RecordedRequest(request.url.path, dict(request.headers), body))
        behaviour = server._next(stream=False)
        if behaviour.status is not None:
            error = {"message": behaviour.error_message, "type": "invalid_request_error", "code": None}
            return JSONResponse({"error": error}, status_code=behaviour.status)
        if not data:
            return JSONResponse({"error": {"message": "file is required", "type": "invalid_request_error"}}, 400)
        text = behaviour.text if behaviour.text is not None else FAKE_TRANSCRIPT
        if form.get("response_format") == "verbose_json":  # as Whisper answers it: with the audio's duration
            return JSONResponse({"text": text, "duration": audio_seconds(data), "language": "en", "segments": []})
        return JSONResponse({"text": text})

    return [Route(f"{prefix}/audio/transcriptions", transcribe, methods=["POST"]) for prefix in ("/openai/v1", "/v1")]


# -- text to speech ----------------------------------------------------------------------------------

#: The fake's voice: this many characters a second (a quick reader, so tests stay short), 24 kHz like Orpheus.
SPOKEN_CHARS_PER_S = 60
SPEECH_RATE = 24_000


def spoken_wav(text: str) -> bytes:
    """A real WAV for `text`: a tone of 16-bit mono samples, as long as the fake takes to say it."""
    seconds = max(0.2, len(text) / SPOKEN_CHARS_PER_S)
    pitch = 220 + 20 * (len(text) % 12)  # pieces of different lengths sound different
    samples = array(
        "h", (int(6000 * math.sin(2 * math.pi * pitch * i / SPEECH_RATE)) for i in range(int(seconds * SPEECH_RATE)))
    )
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SPEECH_RATE)
        wav.writeframes(samples.tobytes())
    return out.getvalue()


def speech_routes(server: FakeLLMServer) -> list[Route]:
    """POST {prefix}/audio/speech as Groq and OpenAI speak it: JSON in (model, voice, input), audio out.

    Scripted like the chat routes (as batch requests): an HTTP error, a delay, or a hold before the audio.
    """

    async def speak(request: Request) -> Response:
        body = await request.json()
        server.requests.append(RecordedRequest(request.url.path, dict(request.headers), body))
        behaviour = server._next(stream=False)
        if behaviour.on_request is not None:
            behaviour.on_request(body)
        if behaviour.hold is not None:  # the answer waits until the test releases it
            behaviour.hold.reached.set()
            await behaviour.hold.wait_released()
        if behaviour.first_token_delay_s:
            await asyncio.sleep(behaviour.first_token_delay_s)
        if behaviour.status is not None:
            error = {"message": behaviour.error_message, "type": "invalid_request_error", "code": None}
            return JSONResponse({"error": error}, status_code=behaviour.status)
        text = body.get("input")
        if not isinstance(text, str) or not text.strip() or not body.get("voice") or not body.get("model"):
            return JSONResponse({"error": {"message": "input, voice and model are required"}}, status_code=400)
        if body.get("response_format", "mp3") != "wav":
            return JSONResponse({"error": {"message": "the fake speaks wav only"}}, status_code=400)
        return Response(spoken_wav(text), media_type="audio/wav")

    return [Route(f"{prefix}/audio/speech", speak, methods=["POST"]) for prefix in ("/openai/v1", "/v1")]


if __name__ == "__main__":  # a manual demo server: GROQ_BASE_URL=http://127.0.0.1:8010 GROQ_API_KEY=fake
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8010)
    parser.add_argument("--tokens-per-s", type=float, default=200)
    args = parser.parse_args()
    server = FakeLLMServer(port=args.port, default=Behaviour(tokens_per_s=args.tokens_per_s)).start()
    print(f"fake LLM server on {server.base_url}", flush=True)
    threading.Event().wait()
