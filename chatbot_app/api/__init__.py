"""The REST API: /api (health, chat, conversations) and /v1 (OpenAI-compatible), inside the Reflex backend."""

from chatbot_app.api.app import create_api

__all__ = ["create_api"]
