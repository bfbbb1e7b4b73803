"""The caller's conversations: list, read, delete, export. Another key's look exactly like unknown ones."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response, StreamingResponse

from chatbot_app.api.auth import ClientAddress, Owner
from chatbot_app.api.errors import ApiError
from chatbot_app.api.export_routes import streamed
from chatbot_app.api.schemas import (
    ConversationOut,
    ConversationPageOut,
    ConversationSettingsOut,
    ConversationSummaryOut,
    ForkRequest,
    LeafRequest,
    MessageOut,
)
from chatbot_app.services.actions import CONVERSATION_NOT_FOUND, Caller
from chatbot_app.services.chat_service import ConversationNotFound
from chatbot_app.services.error_messages import describe_error
from chatbot_app.services.library import MAX_PAGE, PAGE_SIZE, check_page
from chatbot_app.services.validation import InvalidInput, is_conversation_id
from chatbot_app.services.wiring import services
from chatbot_app.storage.models import Message, MessageStatus

router = APIRouter(prefix="/api/conversations", tags=["conversations"])

NOT_FOUND = CONVERSATION_NOT_FOUND
_NOT_FOUND_DOC = {404: {"description": "Conversation not found (unknown, or another key's)."}}


def _checked_id(conversation_id: str) -> str:
    if not is_conversation_id(conversation_id):
        raise ApiError(404, NOT_FOUND)  # a malformed id names no conversation
    return conversation_id


def _message(m: Message, versions: list[int]) -> MessageOut:
    """The stored message, with a failed reply's error in words and its place among its versions."""
    error = describe_error(m.error_kind, m.provider) if m.status == MessageStatus.ERROR else None
    versions = versions or [m.id or 0]
    place = versions.index(m.id) + 1 if m.id in versions else 1
    return MessageOut.model_validate({**m.model_dump(), "error": error, "sibling_ids": versions, "version": place})


async def _read(owner: str, conversation_id: str) -> ConversationOut:
    conversation, messages, versions = await services().chat.read_path(owner, conversation_id)
    return ConversationOut(
        **ConversationSummaryOut.model_validate(conversation).model_dump(),
        settings=ConversationSettingsOut.model_validate(conversation),
        messages=[_message(m, versions.get(m.id or 0, [])) for m in messages],
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
    result = await services().library.page(owner, page)
    return ConversationPageOut(
        page=page,
        has_more=result.has_more,
        conversations=[ConversationSummaryOut.model_validate(c) for c in result.conversations],
    )


@router.get(
    "/{conversation_id}",
    summary="Read a conversation: its current path, each message with its versions",
    responses=_NOT_FOUND_DOC,
)
async def read_conversation(conversation_id: str, owner: Owner) -> ConversationOut:
    try:
        return await _read(owner, _checked_id(conversation_id))
    except ConversationNotFound:
        raise ApiError(404, NOT_FOUND) from None


@router.put(
    "/{conversation_id}/leaf",
    summary="Switch the branch shown: the newest path through a message becomes the current one",
    responses={404: {"description": "Conversation or message not found (unknown, or another key's)."}},
)
async def switch_branch(
    conversation_id: str, body: LeafRequest, owner: Owner, address: ClientAddress
) -> ConversationOut:
    """Stored, so the UI (every tab and device) shows the same branch; a reply being written elsewhere goes on."""
    await services().actions.show_branch(Caller(owner, address), conversation_id, body.message_id)
    try:
        return await _read(owner, conversation_id)
    except ConversationNotFound:  # deleted meanwhile
        raise ApiError(404, NOT_FOUND) from None


@router.post(
    "/{conversation_id}/fork",
    summary="Branch in new chat: a new conversation with a copy of the path up to a message, files included",
    status_code=201,
    responses={
        404: {"description": "Conversation or message not found (unknown, or another key's)."},
        429: {"description": "Over a rate limit or the daily quota (a question is answered in the copy)."},
    },
)
async def fork_conversation(
    conversation_id: str, body: ForkRequest, owner: Owner, address: ClientAddress
) -> ConversationOut:
    """As the UI's "Branch in new chat"; a copy that ends on a question has its reply running (`streaming`)."""
    new_id = await services().actions.fork(Caller(owner, address), conversation_id, body.message_id)
    try:
        return await _read(owner, new_id)
    except ConversationNotFound:  # deleted meanwhile
        raise ApiError(404, NOT_FOUND) from None


@router.delete(
    "/{conversation_id}",
    summary="Delete a conversation and its messages",
    status_code=204,
    response_class=Response,
    responses=_NOT_FOUND_DOC,
)
async def delete_conversation(conversation_id: str, owner: Owner, address: ClientAddress) -> Response:
    """A reply still being written there is stopped (and stored) first, as in the UI."""
    await services().actions.delete(Caller(owner, address), conversation_id)
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
    address: ClientAddress,
    export_format: Annotated[Literal["md", "json"], Query(alias="format")] = "json",
) -> StreamingResponse:
    export = await services().actions.export(Caller(owner, address), conversation_id, export_format)
    return streamed(export, f"conversation-{conversation_id}.{export_format}")
