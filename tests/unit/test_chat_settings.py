"""The checks on each generation setting a client sends, and how a conversation's settings resolve."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from chatbot_app.config import Settings
from chatbot_app.services.chat_settings import (
    BUILTIN_PRESETS,
    MAX_PRESET_NAME_CHARS,
    MAX_SYSTEM_PROMPT_CHARS,
    ChatSettings,
    ResolvedSettings,
    check_max_tokens,
    check_preset_name,
    check_system_prompt,
    check_temperature,
    check_top_p,
    model_choice,
    parse_model_choice,
    resolve,
)
from chatbot_app.services.validation import InvalidInput

# What a client can send that is not a number at all.
NOT_NUMBERS: list[object] = [None, True, False, "", "warm", "nan", "inf", float("nan"), float("inf"), -float("inf")]
NOT_NUMBERS += [{}, {"value": 1}, [], [0.5, 0.7], object()]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(0, 0.0), (0.7, 0.7), (2, 2.0), ("1.5", 1.5), ([0.4], 0.4), ((1.1,), 1.1), (0.123456, 0.12)],
)
def test_a_valid_temperature_is_accepted_and_rounded(raw: object, expected: float) -> None:
    assert check_temperature(raw) == expected


@pytest.mark.parametrize("raw", [-0.01, 2.01, 100, [3]])
def test_a_temperature_out_of_range_names_the_range(raw: object) -> None:
    with pytest.raises(InvalidInput, match=r"^Temperature must be between 0 and 2; .* is out of range\.$"):
        check_temperature(raw)


@pytest.mark.parametrize(
    ("raw", "expected"), [(1, 1.0), (0.01, 0.01), (0.9, 0.9), ("0.5", 0.5), ([0.95], 0.95), (0.333, 0.33)]
)
def test_a_valid_top_p_is_accepted_and_rounded(raw: object, expected: float) -> None:
    assert check_top_p(raw) == expected


@pytest.mark.parametrize("raw", [0, 0.0, -0.5, 1.01, 2, [0]])
def test_a_top_p_out_of_range_names_the_range(raw: object) -> None:
    # 0 keeps no tokens at all, so it is out of range too.
    with pytest.raises(InvalidInput, match=r"^Top P must be above 0 and at most 1; .* is out of range\.$"):
        check_top_p(raw)


@pytest.mark.parametrize(
    ("raw", "expected"), [(1, 1), (77, 77), (77.0, 77), ("256", 256), ([512], 512), (32768, 32768)]
)
def test_a_valid_max_tokens_is_accepted_as_a_whole_number(raw: object, expected: int) -> None:
    value = check_max_tokens(raw)

    assert value == expected
    assert type(value) is int


@pytest.mark.parametrize("raw", [0, -5, 32769, 1.5, "2.5", [0]])
def test_a_max_tokens_that_is_not_a_whole_number_in_range_names_the_range(raw: object) -> None:
    with pytest.raises(InvalidInput, match=r"^Max tokens must be a whole number from 1 to 32,768; .* is not\.$"):
        check_max_tokens(raw)


@pytest.mark.parametrize(
    ("check", "name"), [(check_temperature, "Temperature"), (check_top_p, "Top P"), (check_max_tokens, "Max tokens")]
)
@pytest.mark.parametrize("raw", NOT_NUMBERS, ids=repr)
def test_a_number_setting_refuses_what_is_not_a_finite_number_and_names_itself(
    check: Callable[[object], float], name: str, raw: object
) -> None:
    with pytest.raises(InvalidInput, match=f"^{name} must be a number\\.$"):
        check(raw)


def test_invalid_input_is_a_value_error() -> None:
    assert issubclass(InvalidInput, ValueError)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("Be brief.", "Be brief."), ("  Be brief.\n", "Be brief."), ("", ""), ("x" * MAX_SYSTEM_PROMPT_CHARS, None)],
)
def test_a_system_prompt_is_trimmed_text(raw: str, expected: str | None) -> None:
    assert check_system_prompt(raw) == (raw if expected is None else expected)


@pytest.mark.parametrize("raw", [None, 1, 1.5, True, ["Be brief."], {"prompt": "x"}, b"Be brief."], ids=repr)
def test_a_system_prompt_that_is_not_text_is_refused(raw: object) -> None:
    with pytest.raises(InvalidInput, match=r"^The system prompt must be text\.$"):
        check_system_prompt(raw)


def test_a_system_prompt_over_the_limit_names_the_limit() -> None:
    with pytest.raises(InvalidInput, match=r"^The system prompt is limited to 8,000 characters\.$"):
        check_system_prompt("x" * (MAX_SYSTEM_PROMPT_CHARS + 1))


@pytest.mark.parametrize("raw", ["Be\x00 brief.", "Be brief \ud800"], ids=["nul", "lone-surrogate"])
def test_a_system_prompt_the_databases_cannot_store_is_refused(raw: str) -> None:
    # PostgreSQL rejects NUL in text and neither database can encode a lone surrogate.
    with pytest.raises(InvalidInput, match=r"^The system prompt contains characters that cannot be saved\.$"):
        check_system_prompt(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("Pirate", "Pirate"), ("  Polite   pirate \n", "Polite pirate"), ("p" * MAX_PRESET_NAME_CHARS, None)],
)
def test_a_preset_name_is_accepted_with_its_spaces_collapsed(raw: str, expected: str | None) -> None:
    assert check_preset_name(raw) == (raw if expected is None else expected)


@pytest.mark.parametrize("raw", [None, "", "   \n", 7, ["Pirate"], {}], ids=repr)
def test_a_missing_preset_name_asks_for_one(raw: object) -> None:
    with pytest.raises(InvalidInput, match=r"^Give the preset a name\.$"):
        check_preset_name(raw)


def test_a_preset_name_over_the_limit_names_the_limit() -> None:
    with pytest.raises(InvalidInput, match=r"^Preset names are limited to 80 characters\.$"):
        check_preset_name("p" * (MAX_PRESET_NAME_CHARS + 1))


@pytest.mark.parametrize("raw", ["Pir\x00ate", "Pirate \udfff"], ids=["nul", "lone-surrogate"])
def test_a_preset_name_the_databases_cannot_store_is_refused(raw: str) -> None:
    with pytest.raises(InvalidInput, match=r"^That preset name contains characters that cannot be saved\.$"):
        check_preset_name(raw)


@pytest.mark.parametrize("name", [*BUILTIN_PRESETS, "  Code   reviewer "])
def test_a_built_in_preset_name_cannot_be_taken(name: str) -> None:
    with pytest.raises(InvalidInput, match=r"is a built-in preset; choose another name\.$"):
        check_preset_name(name)


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("groq:openai/gpt-oss-120b", ("groq", "openai/gpt-oss-120b")),
        ("local:SmolLM2-135M-Instruct.Q4_1", ("local", "SmolLM2-135M-Instruct.Q4_1")),
        ("openai:library/qwen2.5:7b", ("openai", "library/qwen2.5:7b")),  # Ollama tags keep their colon
    ],
)
def test_a_model_choice_is_split_into_provider_and_model(choice: str, expected: tuple[str, str]) -> None:
    assert parse_model_choice(choice) == expected
    assert model_choice(*expected) == choice


@pytest.mark.parametrize("choice", [None, "", "llama", ":llama", "groq:", ":", 42, ["groq:llama"], {}], ids=repr)
def test_a_malformed_model_choice_asks_for_a_model(choice: object) -> None:
    with pytest.raises(InvalidInput, match=r"^Choose a model from the list\.$"):
        parse_model_choice(choice)


APP = Settings(temperature=0.3, max_reply_tokens=99, top_p=0.8, system_prompt="App prompt.")


def test_resolve_fills_every_unset_setting_with_the_app_default() -> None:
    assert resolve(ChatSettings(), APP) == ResolvedSettings(
        temperature=0.3, max_tokens=99, top_p=0.8, system_prompt="App prompt."
    )


def test_resolve_keeps_what_the_conversation_chose_even_zero() -> None:
    chosen = ChatSettings(temperature=0.0, max_tokens=5, top_p=0.5, system_prompt="Mine.")

    assert resolve(chosen, APP) == ResolvedSettings(temperature=0.0, max_tokens=5, top_p=0.5, system_prompt="Mine.")


def test_resolve_treats_an_empty_system_prompt_as_unset() -> None:
    assert resolve(ChatSettings(system_prompt=""), APP).system_prompt == "App prompt."


def test_with_choice_sets_provider_and_model_and_keeps_the_rest() -> None:
    chosen = ChatSettings(provider="groq", model="old", temperature=1.2, max_tokens=10, top_p=0.7, system_prompt="S.")

    assert chosen.with_choice("openai:gpt-x") == ChatSettings(
        provider="openai", model="gpt-x", temperature=1.2, max_tokens=10, top_p=0.7, system_prompt="S."
    )
    assert chosen.model == "old"  # settings are immutable: a new value, not a change


def test_with_choice_refuses_a_malformed_choice() -> None:
    with pytest.raises(InvalidInput, match="Choose a model"):
        ChatSettings().with_choice("no-provider")


def test_an_integer_too_large_for_a_float_is_refused_with_a_message() -> None:
    with pytest.raises(InvalidInput, match="must be a number"):
        check_temperature(10**400)
