"""Errors as the client sees them: `{"detail": "..."}` under /api, OpenAI's `{"error": {...}}` under /v1.

Every message is plain words a person can act on; none repeats a key or a message's text.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from chatbot_app.providers.base import ErrorKind, ProviderError
from chatbot_app.services.error_messages import describe_error
from chatbot_app.services.refusals import RefusalKind, Refused

OPENAI_PREFIX = "/v1/"

#: The HTTP status a provider failure becomes when the whole answer is one response.
PROVIDER_STATUS: dict[str, int] = {
    ErrorKind.MODEL_NOT_FOUND: 404,
    ErrorKind.CONTEXT_TOO_LONG: 400,
    ErrorKind.CONTENT_REFUSED: 400,
    ErrorKind.BAD_REQUEST: 400,
    ErrorKind.RATE_LIMIT: 429,
    ErrorKind.BUSY: 429,
    ErrorKind.NOT_CONFIGURED: 503,
    ErrorKind.TIMEOUT: 504,
}
#: OpenAI's `code` for the kinds it has one for.
_OPENAI_CODES: dict[str, str] = {
    ErrorKind.MODEL_NOT_FOUND: "model_not_found",
    ErrorKind.CONTEXT_TOO_LONG: "context_length_exceeded",
    ErrorKind.RATE_LIMIT: "rate_limit_exceeded",
}
_OPENAI_TYPES: dict[int, str] = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


#: The HTTP status each kind of refused action becomes (services.refusals).
REFUSAL_STATUS: dict[RefusalKind, int] = {
    RefusalKind.NOT_FOUND: 404,
    RefusalKind.INVALID: 422,
    RefusalKind.TOO_LARGE: 413,
    RefusalKind.RATE_LIMIT: 429,
    RefusalKind.QUOTA: 429,
    RefusalKind.BUSY: 429,
    RefusalKind.UNAVAILABLE: 503,
    RefusalKind.FORBIDDEN: 403,
}
#: OpenAI's `code` for a refusal, where it has one.
_REFUSAL_CODES: dict[RefusalKind, str] = {
    RefusalKind.RATE_LIMIT: "rate_limit_exceeded",
    RefusalKind.BUSY: "rate_limit_exceeded",
    RefusalKind.QUOTA: "quota_exceeded",
    RefusalKind.INVALID: "invalid_request",
}


class ApiError(Exception):
    """Answer the request with `status` and `message` (in the body shape of its path)."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param


def error_body(path: str, status: int, message: str, code: str | None = None, param: str | None = None) -> dict:
    if path.startswith(OPENAI_PREFIX):
        kind = _OPENAI_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
        return {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return {"detail": message}


def error_response(
    path: str,
    status: int,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(path, status, message, code, param), status_code=status, headers=headers)


def refused(refusal: Refused) -> ApiError:
    """A refused action as an API error: its message, and the status of its kind."""
    return ApiError(REFUSAL_STATUS[refusal.kind], refusal.message, code=_REFUSAL_CODES.get(refusal.kind, refusal.code))


def provider_error(exc: ProviderError, provider: str | None = None) -> ApiError:
    """A provider failure as an API error: its human description (naming `provider`), and a status that says
    whose fault it was."""
    status = PROVIDER_STATUS.get(exc.kind, 502)
    return ApiError(status, describe_error(exc.kind, provider), code=_OPENAI_CODES.get(exc.kind, exc.kind.value))


def openai_error_event(exc: ProviderError, provider: str | None = None) -> dict[str, Any]:
    """What a /v1 stream sends when the provider fails after the response has started."""
    error = provider_error(exc, provider)
    return {"error": {"message": error.message, "type": "api_error", "param": None, "code": error.code}}


def describe_validation(errors: list[Any]) -> tuple[str, str | None]:
    """Pydantic/FastAPI validation errors as one sentence, and the first field they concern."""
    parts: list[str] = []
    first_field: str | None = None
    for error in errors[:5]:
        if error.get("type") == "json_invalid":
            return "The request body is not valid JSON.", None
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path", "header"))
        first_field = first_field or where or None
        message = str(error.get("msg", "is invalid"))
        if error.get("type") == "missing":
            parts.append(f"{where or 'The request body'} is required.")
        elif where:
            parts.append(f"{where}: {message}.")
        else:
            parts.append(f"The request body is invalid: {message}.")
    if len(errors) > 5:
        parts.append(f"({len(errors) - 5} more problems)")
    return " ".join(parts) or "The request is invalid.", first_field


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(request.url.path, exc.status, exc.message, code=exc.code, param=exc.param)

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused) -> JSONResponse:
        error = refused(exc)
        return error_response(request.url.path, error.status, error.message, code=error.code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # The errors' `input` is left out: it can be a whole message, and it is the client's own anyway.
        message, field = describe_validation(list(exc.errors()))
        return error_response(request.url.path, 422, message, code="invalid_request", param=field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(request.url.path, exc.status_code, str(exc.detail), headers=exc.headers)
