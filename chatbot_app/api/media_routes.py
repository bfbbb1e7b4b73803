"""GET /api/attachments/{token} (a stored file, to its owner), GET /api/shared/{token}/files/{n} (a file of a
share link's snapshot, to anyone holding the link), POST /api/transcribe (speech to text) and
GET /api/speech/{token} (a reply read aloud)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Request, UploadFile
from fastapi.params import File, Form, Path
from fastapi.responses import JSONResponse, Response, StreamingResponse

from chatbot_app.api.auth import ClientAddress, Owner
from chatbot_app.api.errors import ApiError
from chatbot_app.providers.base import ProviderError
from chatbot_app.services.actions import Caller
from chatbot_app.services.error_messages import describe_error
from chatbot_app.services.wiring import services
from chatbot_app.storage.models import Attachment

router = APIRouter(tags=["media"])


@router.get(
    "/api/attachments/{token}",
    summary="Download an attachment",
    response_class=Response,
    responses={200: {"description": "The file."}, 404: {"description": "No such attachment, or not yours."}},
)
async def download_attachment(token: str, request: Request) -> Response:
    """The token is the URL's only secret (the row id never appears); with an API key, the key must own it."""
    owner = request.scope.get("state", {}).get("owner_id")
    attachment = await services().attachments.by_token(token, owner if isinstance(owner, str) else None)
    if attachment is None:
        raise ApiError(404, "Attachment not found")
    return _file_response(attachment, "private, max-age=3600")


@router.get(
    "/api/shared/{share_token}/files/{number}",
    summary="Download a file of a shared conversation",
    response_class=Response,
    responses={
        200: {"description": "The file."},
        404: {"description": "No such link (or it was revoked), or no such file in its snapshot."},
    },
)
async def download_shared_file(share_token: str, number: Annotated[int, Path(ge=0, lt=10_000)]) -> Response:
    """The share link's token is the secret: no key. A revoked link's files answer 404 at once."""
    attachment = await services().shares.shared_file(share_token, number)
    if attachment is None:
        raise ApiError(404, "File not found")
    # Not kept by the browser: a revoked link's files must not show from its cache.
    return _file_response(attachment, "no-store")


def _file_response(attachment: Attachment, cache_control: str) -> Response:
    is_image = attachment.media_type.startswith("image/")
    disposition = "inline" if is_image else "attachment"
    headers = {
        "Content-Disposition": f"{disposition}; filename*=UTF-8''{quote(attachment.filename)}",
        "X-Content-Type-Options": "nosniff",
        # Never run as a page of this site, even if a browser were to render it.
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Cache-Control": cache_control,
    }
    return Response(attachment.data, media_type=attachment.media_type, headers=headers)


@router.post(
    "/api/transcribe",
    summary="Transcribe speech to text",
    responses={
        200: {"description": '`{"text": "..."}`'},
        413: {"description": "The audio is larger than CHATBOT_MAX_ATTACHMENT_BYTES."},
        422: {"description": "Not audio in a supported format."},
        429: {"description": "Too many requests from this key in the last minute."},
        503: {"description": "No speech-to-text service is configured."},
    },
)
async def transcribe(
    owner: Owner,
    address: ClientAddress,
    file: Annotated[UploadFile, File(description="flac, mp3, mp4, m4a, ogg, wav or webm")],
    language: Annotated[str | None, Form(max_length=8, pattern=r"^[a-z]{2,3}$")] = None,
) -> dict[str, Any]:
    data = await file.read(services().settings.max_attachment_bytes + 1)
    try:
        text = await services().actions.transcribe(Caller(owner, address), file.filename or "audio", data, language)
    except ProviderError as exc:
        return JSONResponse({"detail": describe_error(exc.kind)}, status_code=502)  # type: ignore[return-value]
    return {"text": text}


@router.get(
    "/api/speech/{token}",
    summary="Listen to a reply read aloud, from a link the app made",
    response_class=Response,
    responses={
        200: {
            "description": "The reply read aloud: one WAV stream, sent as it is synthesized.",
            "content": {"audio/wav": {}},
        },
        404: {"description": "Expired, used already, or not valid."},
        429: {"description": "The daily quota is spent."},
        502: {"description": "The speech service failed."},
        503: {"description": "No text-to-speech service is configured."},
    },
)
async def read_aloud(token: str) -> Response:
    """The link's token is its only credential, used once (the page's <audio> element carries no key)."""
    try:
        audio = await services().actions.speech_by_link(token)
    except ProviderError as exc:
        return JSONResponse({"detail": describe_error(exc.kind)}, status_code=502)
    # Sent as it is synthesized: a proxy must not hold it back (X-Accel-Buffering, as the streamed replies).
    headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "X-Accel-Buffering": "no"}
    return StreamingResponse(audio, media_type="audio/wav", headers=headers)
