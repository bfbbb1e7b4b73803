"""GET /api/exports/{token}: an export streamed as a download, from a short-lived link the page made.

The link's token is its only credential (services/export_links.py), as an attachment's token is: the
browser follows it as a plain download, which carries no key. The file is read and sent in pieces.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response, StreamingResponse

from chatbot_app.services.library import ExportStream
from chatbot_app.services.wiring import services

router = APIRouter(tags=["media"])


@router.get(
    "/api/exports/{token}",
    summary="Download an export from a link the app made",
    response_class=Response,
    responses={200: {"description": "The export, streamed."}, 404: {"description": "Expired, or not valid."}},
)
async def download_export(token: str) -> StreamingResponse:
    return streamed(await services().actions.export_by_link(token))


def streamed(export: ExportStream, filename: str | None = None) -> StreamingResponse:
    """The export as a download, sent as it is read."""
    headers = {
        "Content-Disposition": f'attachment; filename="{filename or export.filename}"',
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }
    return StreamingResponse(export.chunks, media_type=export.media_type, headers=headers)
