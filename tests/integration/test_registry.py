"""ProviderRegistry.from_settings: which providers are configured, which answers by default, and their models."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from chatbot_app.config import load_settings
from chatbot_app.providers import ModelGroup, ProviderRegistry
from chatbot_app.providers.base import ErrorKind, ProviderError
from chatbot_app.providers.groq import GroqProvider
from chatbot_app.providers.local import LocalProvider, bundled_model_path
from chatbot_app.providers.openai_compat import OpenAICompatibleProvider
from tests.conftest import TEST_API_KEY
from tests.fakes.fake_llm_server import FakeLLMServer

OPENAI_KEY = "sk-test-" + "o" * 24
SMOLLM2 = "SmolLM2-135M-Instruct.Q4_1"


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that is bound but not listening: connections to it are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def registry(env: dict[str, str]) -> ProviderRegistry:
    """The registry the app would build from exactly these environment variables."""
    return ProviderRegistry.from_settings(load_settings(env))


def names(registry: ProviderRegistry) -> list[str]:
    return [p.name for p in registry.providers]


def test_the_smollm2_model_is_bundled() -> None:
    path = bundled_model_path()

    assert path is not None and path.is_file()
    assert path.name == f"{SMOLLM2}.gguf"


def test_auto_picks_groq_when_its_key_is_set() -> None:
    providers = registry({"GROQ_API_KEY": TEST_API_KEY, "OPENAI_API_KEY": OPENAI_KEY})

    assert names(providers) == ["groq", "openai", "local"]
    assert providers.default_name == "groq"
    assert isinstance(providers.get(), GroqProvider)


@pytest.mark.parametrize(
    "env",
    [{"OPENAI_BASE_URL": "http://127.0.0.1:11434/v1"}, {"OPENAI_API_KEY": OPENAI_KEY}],
    ids=["base-url", "key"],
)
def test_auto_picks_openai_without_a_groq_key(env: dict[str, str]) -> None:
    providers = registry(env)

    assert names(providers) == ["openai", "local"]
    assert isinstance(providers.get(), OpenAICompatibleProvider)


def test_auto_falls_back_to_the_bundled_local_model() -> None:
    providers = registry({})

    assert names(providers) == ["local"]
    local = providers.get()
    assert isinstance(local, LocalProvider)
    assert local.model_path == bundled_model_path()
    assert local.model_name == SMOLLM2


def test_local_settings_reach_the_local_provider() -> None:
    local = registry({"CHATBOT_LOCAL_CONTEXT": "1024"}).get("local")

    assert isinstance(local, LocalProvider)
    assert local.context_tokens == 1024


def test_a_local_model_path_to_an_existing_file_is_used() -> None:
    bundled = bundled_model_path()
    assert bundled is not None

    local = registry({"CHATBOT_LOCAL_MODEL": str(bundled)}).get()

    assert isinstance(local, LocalProvider)
    assert local.model_path == bundled


@pytest.mark.parametrize("local_model", ["off", "OFF", "/nonexistent/model.gguf"])
def test_with_nothing_configured_get_raises_not_configured(local_model: str) -> None:
    providers = registry({"CHATBOT_LOCAL_MODEL": local_model})

    assert providers.providers == []
    assert providers.default_name is None
    with pytest.raises(ProviderError) as caught:
        providers.get()
    assert caught.value.kind is ErrorKind.NOT_CONFIGURED


@pytest.mark.parametrize(("chosen", "kind"), [("openai", OpenAICompatibleProvider), ("local", LocalProvider)])
def test_an_explicit_provider_is_the_default_even_when_groq_is_configured(chosen: str, kind: type) -> None:
    providers = registry({"CHATBOT_PROVIDER": chosen, "GROQ_API_KEY": TEST_API_KEY, "OPENAI_API_KEY": OPENAI_KEY})

    assert providers.default_name == chosen
    assert isinstance(providers.get(), kind)
    assert isinstance(providers.get("groq"), GroqProvider)  # the others can still be chosen by name


def test_an_explicit_provider_that_is_not_configured_is_not_replaced_by_another() -> None:
    providers = registry({"CHATBOT_PROVIDER": "groq", "OPENAI_API_KEY": OPENAI_KEY, "CHATBOT_LOCAL_MODEL": "off"})

    assert providers.default_name is None
    with pytest.raises(ProviderError) as caught:
        providers.get()
    assert caught.value.kind is ErrorKind.NOT_CONFIGURED
    assert isinstance(providers.get("openai"), OpenAICompatibleProvider)


def test_an_unknown_provider_name_is_not_configured() -> None:
    with pytest.raises(ProviderError) as caught:
        registry({"GROQ_API_KEY": TEST_API_KEY}).get("mistral")

    assert caught.value.kind is ErrorKind.NOT_CONFIGURED
    assert "mistral" in caught.value.detail


async def test_model_groups_list_every_configured_providers_models(fake: FakeLLMServer) -> None:
    providers = registry(
        {"GROQ_API_KEY": TEST_API_KEY, "GROQ_BASE_URL": fake.base_url, "OPENAI_BASE_URL": fake.openai_base_url}
    )

    groups = await providers.model_groups()

    assert groups == [
        ModelGroup("groq", "Groq", ["fake-large", "fake-small"]),
        ModelGroup("openai", "OpenAI-compatible", ["fake-large", "fake-small"]),
        ModelGroup("local", "Local (offline)", [SMOLLM2]),
    ]
    assert sorted(r.path for r in fake.requests) == ["/openai/v1/models", "/v1/models"]


async def test_a_provider_that_cannot_be_reached_lists_no_models_while_the_others_do(
    fake: FakeLLMServer, closed_port: int
) -> None:
    providers = registry(
        {
            "GROQ_API_KEY": TEST_API_KEY,
            "GROQ_BASE_URL": fake.base_url,
            "OPENAI_BASE_URL": f"http://127.0.0.1:{closed_port}/v1",
            "CHATBOT_LOCAL_MODEL": "off",
        }
    )

    groups = await providers.model_groups()  # after the SDK's retries, about 1.5 s

    assert groups == [
        ModelGroup("groq", "Groq", ["fake-large", "fake-small"]),
        ModelGroup("openai", "OpenAI-compatible", [], error="connection"),
    ]
