"""A model the provider reports as retired or unknown gets the plain message plus the models available now."""

from __future__ import annotations

from sqlalchemy import Engine

from chatbot_app.config import Settings
from chatbot_app.services.chat_settings import ChatSettings
from chatbot_app.services.error_messages import describe_error
from tests.conftest import make_service
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer
from tests.replies import run_reply

OWNER = "retiree-" + "r" * 20
NOT_AVAILABLE = "That model is not available (it may have been retired). Choose another model."


async def test_an_unknown_model_is_answered_with_the_models_available_now(
    settings: Settings, engine: Engine, fake: FakeLLMServer
) -> None:
    service = make_service(settings, engine)

    turn = await service.start_turn(OWNER, None, "hi", ChatSettings(provider="groq", model="gone-model-1"))
    final = (await run_reply(service, turn))[0].finished
    assert final is not None

    assert (final.status, final.error_kind) == ("error", "model_not_found")
    assert final.error == f"{NOT_AVAILABLE} Available now: fake-large, fake-small."


async def test_a_decommissioned_model_gets_the_same_message(
    settings: Settings, engine: Engine, fake: FakeLLMServer
) -> None:
    service = make_service(settings.model_copy(update=dict(model="fake-large")), engine)
    fake.enqueue_stream(
        Behaviour(
            status=400, error_message="The model `fake-large` has been decommissioned and is no longer supported."
        )
    )

    turn = await service.start_turn(OWNER, None, "hi")
    final = (await run_reply(service, turn))[0].finished
    assert final is not None

    assert final.error == f"{NOT_AVAILABLE} Available now: fake-large, fake-small."


def test_the_list_of_models_is_kept_short() -> None:
    models = [f"model-{n}" for n in range(12)]

    message = describe_error("model_not_found", available_models=models)

    assert message.endswith(
        "Available now: model-0, model-1, model-2, model-3, model-4, model-5, model-6, model-7 and 4 more."
    )
    assert describe_error("rate_limit", available_models=models) == describe_error("rate_limit")
