"""Share links: a read-only snapshot of a conversation, reachable by anyone holding its token.

The token is 256 random bits. A link is found by the token's SHA-256 digest; the token is also kept,
so that its owner can copy the link again from /account (the snapshot beside it is no less secret).
A snapshot holds the title and the finished messages (never a reply still being written, never
anything about the account). Its files are named by their place in the snapshot and served through
the link (/api/shared/<token>/files/<n>), never by the owner's own file links, so revoking the link
revokes them too. It is capped in size, a conversation has at most a few live links, and the links
go when their conversation is deleted.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from chatbot_app.services.chat_service import ConversationNotFound
from chatbot_app.services.refusals import RefusalKind, Refused
from chatbot_app.services.tools.search_files import NAME as SEARCH_FILES
from chatbot_app.storage import conversations as conversation_store
from chatbot_app.storage import shares as store
from chatbot_app.storage import tool_calls as tool_store
from chatbot_app.storage.database import Database
from chatbot_app.storage.models import Attachment, MessageStatus, ShareLink, ToolCallRecord, utcnow

#: The longest a share token can be: longer "tokens" are refused before any lookup.
MAX_TOKEN_CHARS = 128


def _shared_call(call: ToolCallRecord) -> dict[str, Any]:
    # search_files quotes the owner's files from any conversation: a link to this one must not publish them.
    private = call.name == SEARCH_FILES and call.server == ""
    return {
        "name": call.name,
        "server": call.server,
        "status": call.status,
        "arguments": call.arguments,
        "result": "(passages of the owner's files, not shared)" if private else call.error or call.result,
        "sources": json.loads(call.sources) if call.sources else [],
    }


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def is_token(token: object) -> bool:
    """Whether `token` could be a share token at all: anything else is refused before any lookup."""
    return isinstance(token, str) and 0 < len(token) <= MAX_TOKEN_CHARS


def shared_file_url(token: str, number: int) -> str:
    """The path that serves a shared file: the link's token and the file's place in the snapshot."""
    return f"/api/shared/{token}/files/{number}"


def _files_in_order(snapshot: dict[str, Any]) -> list[dict[str, Any]]:
    """The snapshot's files, message by message: a file's place in this list is its number."""
    return [f for m in snapshot.get("messages", []) for f in m.get("files", []) if isinstance(f, dict)]


@dataclass(frozen=True, slots=True)
class SharedLink:
    """A live link as its owner's list shows it; `token` is None for links made before tokens were kept."""

    id: int
    conversation_id: str
    title: str
    created_at: datetime
    token: str | None = None


class ShareLinks:
    def __init__(
        self,
        engine: Engine,
        *,
        max_bytes: int = 1024 * 1024,
        max_links: int = 10,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._db = Database(engine).run
        self.max_bytes = max_bytes
        self.max_links = max_links
        self.clock = clock

    async def create(self, owner_id: str, conversation_id: str) -> str:
        """A new link to the conversation as it is now; its token (shown once). Raises Refused."""
        token = secrets.token_urlsafe(32)

        def work(session: Session) -> None:
            conversation = conversation_store.get_conversation(session, conversation_id, owner_id)
            if conversation is None:
                raise ConversationNotFound(conversation_id)
            if store.live_link_count(session, conversation.id) >= self.max_links:
                raise Refused(
                    RefusalKind.INVALID,
                    f"This conversation already has {self.max_links} links. Revoke one (on your account page) first.",
                )
            shown = [
                m
                for m in conversation_store.latest_messages(session, conversation.id)
                if (m.content or m.role == "user") and m.status not in (MessageStatus.ERROR, MessageStatus.STREAMING)
            ]
            # Each message's files, by name and row id (never the file's own link, which outlives a revoke).
            files: dict[int, list[dict[str, Any]]] = {}
            for message_id, file_id, filename, media_type in store.files_of(
                session, conversation.id, [m.id for m in shown if m.id]
            ):
                files.setdefault(message_id, []).append(
                    {"filename": filename, "is_image": media_type.startswith("image/"), "attachment": file_id}
                )
            # Each reply's tool calls: what was asked and what came back (headers live in the environment only).
            calls = tool_store.calls_of(
                session, conversation.id, [m.id for m in shown if m.id and m.role == "assistant"]
            )
            messages = [
                {
                    "role": m.role,
                    "content": m.content,
                    "files": files.get(m.id or 0, []),
                    "tools": [_shared_call(call) for call in calls.get(m.id or 0, [])],
                }
                for m in shown
            ]
            messages = [m for m in messages if m["content"] or m["files"]]
            snapshot = json.dumps(
                {"title": conversation.title, "created_at": self.clock().isoformat(), "messages": messages},
                ensure_ascii=False,
            )
            if (size := len(snapshot.encode())) > self.max_bytes:
                raise Refused(
                    RefusalKind.TOO_LARGE,
                    f"This conversation is too long to share ({size / 2**20:.1f} MB; a link holds at most "
                    f"{self.max_bytes / 2**20:.1f} MB). Export it instead.",
                )
            store.add_share(
                session,
                ShareLink(
                    owner_id=owner_id,
                    conversation_id=conversation.id,
                    token_hash=token_digest(token),
                    token=token,
                    snapshot=snapshot,
                    created_at=self.clock(),
                ),
            )

        try:
            await self._db(work)
        except ConversationNotFound:
            raise Refused(RefusalKind.NOT_FOUND, "That conversation was not found.") from None
        return token

    async def snapshot(self, token: object) -> dict[str, Any] | None:
        """The snapshot behind a token as its page shows it, read from the database (and parsed off the event
        loop); each file has a name and its URL path through the link. None for unknown and revoked links alike."""
        if not is_token(token):
            return None
        digest = token_digest(token)  # type: ignore[arg-type]

        def read(session: Session) -> dict[str, Any] | None:
            found = store.snapshot_by_digest(session, digest)
            if found is None:
                return None
            snapshot = json.loads(found)
            for number, file in enumerate(_files_in_order(snapshot)):
                shown = {"filename": file.get("filename"), "is_image": bool(file.get("is_image"))}
                file.clear()
                file.update(shown, url=shared_file_url(token, number))  # type: ignore[arg-type]
            return snapshot

        return await self._db(read)

    async def shared_file(self, token: object, number: object) -> Attachment | None:
        """File `number` of a live link's snapshot, if its conversation still holds it; else None."""
        if not is_token(token) or isinstance(number, bool) or not isinstance(number, int) or number < 0:
            return None
        digest = token_digest(token)  # type: ignore[arg-type]

        def read(session: Session) -> Attachment | None:
            link = store.live_link_by_digest(session, digest)
            if link is None:
                return None
            files = _files_in_order(json.loads(link.snapshot))
            if number >= len(files):
                return None
            file = files[number]
            file_id = file.get("attachment")
            if isinstance(file_id, int) and not isinstance(file_id, bool):
                return store.file_in_conversation(session, link.conversation_id, attachment_id=file_id)
            # A link made before files were numbered named the file by its own link.
            old_url = str(file.get("url", ""))
            if not old_url.startswith("/api/attachments/"):
                return None
            return store.file_in_conversation(session, link.conversation_id, token=old_url.rpartition("/")[2])

        return await self._db(read)

    async def links(self, owner_id: str, conversation_id: str | None = None) -> list[SharedLink]:
        """The owner's live links (of one conversation, if given), newest first."""
        rows = await self._db(lambda session: store.live_links(session, owner_id, conversation_id))
        return [
            SharedLink(link.id or 0, link.conversation_id, title, link.created_at, link.token) for link, title in rows
        ]

    async def revoke(self, owner_id: str, share_id: object) -> bool:
        """Revoke one of the owner's links; False if it is not theirs (or unknown, or revoked already)."""
        if isinstance(share_id, str) and share_id.isascii() and share_id.isdigit() and len(share_id) < 12:
            share_id = int(share_id)
        if isinstance(share_id, bool) or not isinstance(share_id, int) or not 0 < share_id < 2**63:
            return False  # past 2**63 no database's integer holds it (SQLite raised OverflowError)
        number = share_id
        return await self._db(lambda session: store.revoke(session, owner_id, number))
