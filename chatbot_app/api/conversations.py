"""The caller's conversations: list, read, delete, export. Another key's look exactly like unknown ones."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from chatbot_app.api.auth import Owner
from chatbot_app.api.errors import ApiError
from chatbot_app.api.schemas import (
    ConversationOut,
    ConversationPageOut,
    ConversationSettingsOut,
    ConversationSummaryOut,
    MessageOut,
)
from chatbot_app.services.chat_service import ConversationNotFound
from chatbot_app.services.default_service import get_chat_service, get_library
from chatbot_app.services.error_messages import describe_error
from chatbot_app.services.library import MAX_PAGE, PAGE_SIZE, check_page
from chatbot_app.services.validation import InvalidInput, is_conversation_id
from chatbot_app.storage.models import Conversation, Message, MessageStatus

router = APIRouter(prefix="/api/conversations", tags=["conversations"])

NOT_FOUND = "Conversation not found"
_NOT_FOUND_DOC = {404: {"description": "Conversation not found (unknown, or another key's)."}}


def _utc(moment: datetime) -> datetime:
    """Stored times are UTC; SQLite gives them back without a zone."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _checked_id(conversation_id: str) -> str:
    if not is_conversation_id(conversation_id):
        raise ApiError(404, NOT_FOUND)  # a malformed id names no conversation
    return conversation_id


def _summary(c: Conversation) -> ConversationSummaryOut:
    return ConversationSummaryOut(
        id=c.id,
        title=c.title,
        pinned=c.pinned,
        summary=c.summary,
        created_at=_utc(c.created_at),
        updated_at=_utc(c.updated_at),
    )


def _message(m: Message) -> MessageOut:
    assert m.id is not None
    return MessageOut(
        id=m.id,
        role=m.role,
        content=m.content,
        status=m.status,
        error_kind=m.error_kind,
        error=describe_error(m.error_kind, m.provider) if m.status == MessageStatus.ERROR else None,
        provider=m.provider,
        model=m.model,
        prompt_tokens=m.prompt_tokens,
        completion_tokens=m.completion_tokens,
        first_token_ms=m.first_token_ms,
        duration_ms=m.duration_ms,
        created_at=_utc(m.created_at),
    )


@router.get("", summary="List conversations, pinned first, then newest activity first")
async def list_conversations(
    owner: Owner,
    page: Annotated[
        int,
        Query(
            description=f"0-based page of {PAGE_SIZE} conversations.",
            json_schema_extra={"minimum": 0, "maximum": MAX_PAGE},
        ),
    ] = 0,
) -> ConversationPageOut:
    try:
        page = check_page(page)
    except InvalidInput as exc:
        raise ApiError(422, str(exc)) from None
    result = await get_library().page(owner, page)
    return ConversationPageOut(
        page=page, has_more=result.has_more, conversations=[_summary(c) for c in result.conversations]
    )


@router.get("/{conversation_id}", summary="Read a conversation with all its messages", responses=_NOT_FOUND_DOC)
async def read_conversation(conversation_id: str, owner: Owner) -> ConversationOut:
    try:
        conversation, messages = await get_chat_service().load_conversation(owner, _checked_id(conversation_id))
    except ConversationNotFound:
        raise ApiError(404, NOT_FOUND) from None
    return ConversationOut(
        **_summary(conversation).model_dump(),
        settings=ConversationSettingsOut(
            provider=conversation.provider,
            model=conversation.model,
            temperature=conversation.temperature,
            max_tokens=conversation.max_tokens,
            top_p=conversation.top_p,
            system_prompt=conversation.system_prompt,
        ),
        messages=[_message(m) for m in messages],
    )


@router.delete(
    "/{conversation_id}",
    summary="Delete a conversation and its messages",
    status_code=204,
    response_class=Response,
    responses=_NOT_FOUND_DOC,
)
async def delete_conversation(conversation_id: str, owner: Owner) -> Response:
    try:
        await get_library().delete(owner, _checked_id(conversation_id))
    except ConversationNotFound:
        raise ApiError(404, NOT_FOUND) from None
    return Response(status_code=204)


@router.get(
    "/{conversation_id}/export",
    summary="Export a conversation as Markdown or as the app's JSON (importable in the UI)",
    response_class=Response,
    responses={
        200: {"content": {"text/markdown": {}, "application/json": {}}, "description": "The export, as a download."},
        **_NOT_FOUND_DOC,
    },
)
async def export_conversation(
    conversation_id: str,
    owner: Owner,
    export_format: Annotated[Literal["md", "json"], Query(alias="format")] = "json",
) -> Response:
    library = get_library()
    checked = _checked_id(conversation_id)
    try:
        if export_format == "md":
            data, media_type = await library.export_markdown(owner, checked), "text/markdown; charset=utf-8"
        else:
            data, media_type = await library.export_json(owner, checked), "application/json"
    except ConversationNotFound:
        raise ApiError(404, NOT_FOUND) from None
    disposition = f'attachment; filename="conversation-{checked}.{export_format}"'
    return Response(data, media_type=media_type, headers={"Content-Disposition": disposition})
