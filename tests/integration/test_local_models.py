"""The bundled offline models by name, and Gemma's chat template (its GGUF carries none)."""

from __future__ import annotations

from pathlib import Path

import pytest
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from chatbot_app.config import Settings
from chatbot_app.providers import local_model_path
from chatbot_app.providers.base import ChatMessage, GenerationOptions, TextDelta
from chatbot_app.providers.local import DEFAULT_LOCAL_MODEL, GEMMA3_TEMPLATE, LocalProvider, bundled_model_path


def test_models_are_chosen_by_name_by_path_or_turned_off(tmp_path: Path) -> None:
    gemma, smollm = bundled_model_path("gemma3"), bundled_model_path("smollm2")
    assert gemma is not None and gemma.name == "gemma-3-270m-q4_k_m.gguf"
    assert smollm is not None and smollm.name == "SmolLM2-135M-Instruct.Q4_1.gguf"

    assert local_model_path(Settings(local_model="")) == bundled_model_path(DEFAULT_LOCAL_MODEL)
    assert local_model_path(Settings(local_model="gemma3")) == gemma
    assert local_model_path(Settings(local_model="SmolLM2")) == smollm
    assert local_model_path(Settings(local_model=str(smollm))) == smollm
    assert local_model_path(Settings(local_model="off")) is None
    assert local_model_path(Settings(local_model=str(tmp_path / "missing.gguf"))) is None
    with pytest.raises(ValueError, match="unknown bundled model"):
        bundled_model_path("gpt-5")


def test_gemma_turns_are_written_as_gemma_expects_with_the_system_prompt_in_the_first_turn() -> None:
    formatter = Jinja2ChatFormatter(GEMMA3_TEMPLATE, eos_token="<end_of_turn>", bos_token="<bos>")
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "2+2?"},
    ]

    prompt = formatter(messages=messages)

    assert prompt.prompt == (
        "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello<end_of_turn>\n"
        "<start_of_turn>user\n2+2?<end_of_turn>\n"
        "<start_of_turn>model\n"
    )
    assert prompt.stop == ["<end_of_turn>"]


async def test_gemma_answers_through_its_own_template_not_llama_2s() -> None:
    path = bundled_model_path("gemma3")
    assert path is not None
    provider = LocalProvider(path)
    messages = [ChatMessage("system", "Be brief."), ChatMessage("user", "Say hi.")]

    events = [e async for e in provider.stream(messages, GenerationOptions(provider.model_name, 0.0, 6))]

    assert provider._model().chat_handler is not None  # the GGUF has no template: ours is used
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert "[INST]" not in text and "<<SYS>>" not in text
