"""The API as one FastAPI app, mounted into the Reflex backend (rx.App(api_transformer=...)).

Reflex mounts its own app at "" inside this one, so these routes are matched first and everything
else (the UI's websocket, /ping, uploads) reaches Reflex unchanged. There is no second server.
"""

from __future__ import annotations

from fastapi import FastAPI

from chatbot_app.api import auth_routes, chat_routes, conversations, export_routes, health, media_routes, v1_routes
from chatbot_app.api.auth import ApiGuard
from chatbot_app.api.errors import install_handlers

DESCRIPTION = """\
The chat app's REST API. Every endpoint except `GET /api/health` needs a key, sent as
`Authorization: Bearer <key>`: one of `CHATBOT_API_KEYS`, or (with accounts on) a user's personal
key. Conversations created with an operator key belong to that key: another key cannot see them.
A personal key acts as its user: it sees the user's conversations, as the UI does.

`/api/...` stores conversations exactly as the UI does; `/v1/...` is OpenAI-compatible and
stateless (point the `openai` SDK's `base_url` at `<backend>/v1`).
"""


def create_api() -> FastAPI:
    api = FastAPI(
        title="chatbot_app API",
        version="1.0.0",
        description=DESCRIPTION,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    for module in (health, chat_routes, conversations, media_routes, export_routes, v1_routes, auth_routes):
        api.include_router(module.router)
    install_handlers(api)
    api.add_middleware(ApiGuard)
    return api
