"""Share links: the read-only page behind one (/s/<token>), a snapshot with nothing about its owner;
and creating or revoking them from a conversation's menu."""

from __future__ import annotations

from typing import Any

import reflex as rx

from chatbot_app.config import get_settings
from chatbot_app.services.chat_service import ConversationNotFound
from chatbot_app.services.default_service import get_accounts
from chatbot_app.state.session import SessionState

SHARE_ROUTE = "/s/[token]"
MAX_TOKEN_CHARS = 128


class SharePageState(rx.State):
    title: str = ""
    # {"role": ..., "content": ...} for each message of the snapshot.
    shared_messages: list[dict[str, str]] = []
    # True for an unknown or revoked link alike.
    missing: bool = False

    @rx.event
    async def load(self) -> None:
        """on_load: read the token from the path (it is not kept in state) and show its snapshot."""
        token = self.router.url.path.rstrip("/").rpartition("/")[2]
        snapshot = await get_accounts().shared_snapshot(token) if 0 < len(token) <= MAX_TOKEN_CHARS else None
        self.missing = snapshot is None
        self.title = "" if snapshot is None else str(snapshot.get("title", ""))
        self.shared_messages = (
            []
            if snapshot is None
            else [{"role": str(m["role"]), "content": str(m["content"])} for m in snapshot.get("messages", [])]
        )


#: The read-only input a new link is written into (its token is shown once, never kept in state).
SHARE_LINK_INPUT_ID = "share-link"


def share_url(origin: str, token: str) -> str:
    """The link to a snapshot, on the UI's own origin (the websocket's Origin header), else CHATBOT_APP_URL."""
    base = origin.rstrip("/") if origin.startswith(("http://", "https://")) else get_settings().app_url
    return f"{base}/s/{token}"


class ShareLinksState(SessionState):
    """A conversation's share links, from its menu: create one (shown once), revoke any."""

    share_open: bool = False
    # {"id", "created"} per live link of the open conversation; never the token.
    share_links: list[dict[str, str]] = []
    share_notice: str = ""

    async def _load_links(self, owner: str) -> None:
        links = await get_accounts().shares(owner, self.conversation_id)
        self.share_links = [
            {"id": str(link.id), "created": link.created_at.strftime("%Y-%m-%d %H:%M")}
            for link in sorted(links, key=lambda link: link.id or 0, reverse=True)
        ]

    @rx.event
    async def share(self) -> Any:
        """ "Share": snapshot the open conversation now, and show the new link once."""
        owner = await self.owner_id()
        if not self.conversation_id:
            self.share_notice = "Open a conversation to share it."
            return None
        try:
            token = await get_accounts().create_share(owner, self.conversation_id)
        except ConversationNotFound:
            self.share_notice = "That conversation was not found."
            return None
        await self._load_links(owner)
        self.share_open = True
        self.share_notice = "Anyone with this link can read a copy of the conversation as it is now."
        return rx.set_value(SHARE_LINK_INPUT_ID, share_url(self.router.headers.origin, token))

    @rx.event
    async def revoke(self, share_id: Any) -> Any:
        owner = await self.owner_id()
        number = int(share_id) if isinstance(share_id, str) and share_id.isdigit() else 0
        if not await get_accounts().revoke_share(owner, number):
            self.share_notice = "That link was not found."
            return None
        await self._load_links(owner)
        self.share_notice = "Link revoked: it now answers like an unknown one."
        return rx.set_value(SHARE_LINK_INPUT_ID, "")

    @rx.event
    def close(self) -> Any:
        self.share_open, self.share_notice = False, ""
        return rx.set_value(SHARE_LINK_INPUT_ID, "")
