"""GET /api/attachments/{token} (a stored file, to its owner) and POST /api/transcribe (speech to text)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Request, UploadFile
from fastapi.params import File, Form
from fastapi.responses import JSONResponse, Response

from chatbot_app.api.auth import ClientAddress, Owner
from chatbot_app.api.errors import ApiError
from chatbot_app.providers.base import ProviderError
from chatbot_app.services.default_service import get_attachment_store, get_chat_service, get_transcriber
from chatbot_app.services.error_messages import describe_error
from chatbot_app.services.transcription import TranscriptionRejected

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
    attachment = await get_attachment_store().by_token(token, owner if isinstance(owner, str) else None)
    if attachment is None:
        raise ApiError(404, "Attachment not found")
    is_image = attachment.media_type.startswith("image/")
    disposition = "inline" if is_image else "attachment"
    headers = {
        "Content-Disposition": f"{disposition}; filename*=UTF-8''{quote(attachment.filename)}",
        "X-Content-Type-Options": "nosniff",
        # Never run as a page of this site, even if a browser were to render it.
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Cache-Control": "private, max-age=3600",
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
    transcriber = get_transcriber()
    if transcriber is None:
        raise ApiError(503, "Speech to text is off: set GROQ_API_KEY, or CHATBOT_OPENAI_TRANSCRIPTION_MODEL.")
    if refusal := await get_chat_service().admit(owner, address):  # the same limits as chat
        raise ApiError(429, refusal.message)
    data = await file.read(transcriber.max_bytes + 1)
    try:
        text = await transcriber.transcribe(file.filename or "audio", data, language)
    except TranscriptionRejected as exc:
        raise ApiError(413 if len(data) > transcriber.max_bytes else 422, str(exc)) from None
    except ProviderError as exc:
        return JSONResponse({"detail": describe_error(exc.kind)}, status_code=502)  # type: ignore[return-value]
    return {"text": text}
