"""The read-only page behind a share link (/s/<token>): a snapshot, with nothing about its owner."""

from __future__ import annotations

import reflex as rx

from chatbot_app.services.default_service import get_accounts

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
