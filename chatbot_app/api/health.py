"""GET /api/health (is the process up) and GET /api/ready (can it answer: database and default provider)."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from chatbot_app.api.auth import Owner
from chatbot_app.api.schemas import HealthOut, ReadyOut
from chatbot_app.config import get_settings
from chatbot_app.providers.base import ProviderError
from chatbot_app.services.error_messages import describe_error
from chatbot_app.services.wiring import services
from chatbot_app.storage.database import Database, get_engine

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api", tags=["health"])

#: A readiness probe answers within this, whatever its peers do.
CHECK_TIMEOUT_S = 5.0


def _new_instance_id() -> str:
    return secrets.token_hex(6)


#: Names this process in /api/health, so that behind a load balancer one can tell who answered.
#: Random rather than a pid: pids repeat across machines and restarts.
INSTANCE_ID = _new_instance_id()


def _renew_instance_id() -> None:
    global INSTANCE_ID
    INSTANCE_ID = _new_instance_id()


# A server that imports the app and then forks its workers gives each worker an id of its own.
os.register_at_fork(after_in_child=_renew_instance_id)


@router.get("/health", summary="Liveness: the process answers (no key needed)")
async def health() -> HealthOut:
    return HealthOut(status="ok", instance=INSTANCE_ID)


async def _database() -> str:
    try:
        database = Database(get_engine(get_settings().database_url))
        await asyncio.wait_for(database.run(lambda s: s.execute(text("SELECT 1")).scalar_one()), CHECK_TIMEOUT_S)
    except TimeoutError:
        return f"error: no answer within {CHECK_TIMEOUT_S:g} s"
    except Exception as exc:  # the URL (and its password) stays out of the answer and the log
        log.warning("readiness: database check failed: %s", type(exc).__name__)
        return f"error: {type(exc).__name__}"
    return "ok"


async def _provider() -> str:
    try:
        provider = services().chat.providers.get()
        models = await asyncio.wait_for(provider.list_models(), CHECK_TIMEOUT_S)
    except TimeoutError:
        return f"error: no answer within {CHECK_TIMEOUT_S:g} s"
    except ProviderError as exc:
        return f"error: {exc.kind.value}: {describe_error(exc.kind)}"
    if not models:
        return f"error: {provider.name} lists no models"
    return "ok"


@router.get(
    "/ready",
    response_model=ReadyOut,
    summary="Readiness: the database answers SELECT 1 and the default provider lists its models",
    responses={503: {"model": ReadyOut, "description": "At least one check failed; its value says how."}},
)
async def ready(_owner: Owner) -> JSONResponse:
    database, provider = await asyncio.gather(_database(), _provider())
    result = ReadyOut(database=database, provider=provider)
    status = 200 if database == provider == "ok" else 503
    return JSONResponse(result.model_dump(), status_code=status)
