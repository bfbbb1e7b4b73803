"""Share links: the read-only page behind one (/s/<token>), a snapshot with nothing about its owner;
creating or revoking them from a conversation's menu; and the list of them all on /account.

The snapshot (and /account's links, which hold the tokens) are sent to the page but never written to
the state store: Redis would otherwise keep a copy per visitor's tab for an hour. Each is read from the
database by the page's on_load, which Reflex runs on every page load and every websocket (re)connect.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import reflex as rx

from chatbot_app.config import get_settings
from chatbot_app.services.actions import Caller
from chatbot_app.services.markdown_fences import tidy_fences
from chatbot_app.services.refusals import Refused
from chatbot_app.services.reply_log import ToolUpdate
from chatbot_app.services.wiring import services
from chatbot_app.state.session import SessionState
from chatbot_app.state.views import FileChip, SourceView, ToolCallView, iso_utc, source_views, tool_call_view

SHARE_ROUTE = "/s/[token]"


@dataclasses.dataclass
class SharedMessage:
    role: str
    content: str
    files: list[FileChip] = dataclasses.field(default_factory=list)
    tool_calls: list[ToolCallView] = dataclasses.field(default_factory=list)
    sources: list[SourceView] = dataclasses.field(default_factory=list)


def shared_messages(snapshot: dict[str, Any], backend_url: str) -> list[SharedMessage]:
    """The snapshot's messages as the page shows them: a reply's misplaced fences tidied, files linked
    through the share link (never by the owner's own file links)."""
    base = backend_url.rstrip("/")
    shown = []
    for message in snapshot.get("messages", []):
        role, content = str(message.get("role", "")), str(message.get("content", ""))
        files = [
            FileChip(str(f.get("filename", "file")), base + str(f.get("url", "")), bool(f.get("is_image")))
            for f in message.get("files", [])
            if str(f.get("url", "")).startswith("/api/shared/")
        ]
        calls = [
            _shared_call(number, call) for number, call in enumerate(message.get("tools", [])) if isinstance(call, dict)
        ]
        shown.append(
            SharedMessage(
                role,
                tidy_fences(content) if role == "assistant" else content,
                files,
                [tool_call_view(call) for call in calls],
                source_views(calls),
            )
        )
    return shown


def _shared_call(number: int, call: dict[str, Any]) -> ToolUpdate:
    sources = tuple(
        (str(pair[0]), str(pair[1])) for pair in call.get("sources", []) if isinstance(pair, list) and len(pair) == 2
    )
    return ToolUpdate(
        call_id=str(number),
        name=str(call.get("name", "")),
        status=str(call.get("status", "")),
        server=str(call.get("server", "")),
        arguments=str(call.get("arguments", "")),
        result=str(call.get("result", "")),
        sources=sources,
    )


def without_vars(stored: dict[str, Any], names: frozenset[str]) -> dict[str, Any]:
    """A state's pickled fields (BaseState.__getstate__, what Redis stores) less `names`."""
    return {name: value for name, value in stored.items() if name not in names}


#: SharePageState's vars that never reach the state store: `load` reads them from the database.
SNAPSHOT_VARS = frozenset({"title", "shared_messages", "missing", "loaded"})


class SharePageState(rx.State):
    title: str = ""
    shared_messages: list[SharedMessage] = []
    # True for an unknown or revoked link alike.
    missing: bool = False
    # False until `load` has read the link (again after a reconnect, for a moment).
    loaded: bool = False

    def __getstate__(self) -> dict[str, Any]:
        return without_vars(super().__getstate__(), SNAPSHOT_VARS)

    @rx.event
    async def load(self) -> None:
        """on_load: read the token from the path (it is not kept in state) and show its snapshot."""
        token = self.router.url.path.rstrip("/").rpartition("/")[2]
        snapshot = await services().shares.snapshot(token)
        self.missing = snapshot is None
        self.title = "" if snapshot is None else str(snapshot.get("title", ""))
        self.shared_messages = [] if snapshot is None else shared_messages(snapshot, rx.config.get_config().api_url)
        self.loaded = True


#: The read-only input a new link is written into (never kept in a state var; /account lists it again).
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

    async def _load_links(self, caller: Caller) -> None:
        links = await services().actions.share_links(caller, self.conversation_id) if self.conversation_id else []
        self.share_links = [
            {"id": str(link.id), "created": link.created_at.strftime("%Y-%m-%d %H:%M")} for link in links
        ]

    @rx.event
    async def share(self) -> Any:
        """ "Share": snapshot the open conversation now, and show the new link once."""
        caller = await self.caller()
        if not self.conversation_id:
            self.share_notice = "Open a conversation to share it."
            return None
        try:
            token = await services().actions.share(caller, self.conversation_id)
        except Refused as refusal:
            self.share_notice = refusal.message
            return None
        await self._load_links(caller)
        self.share_open = True
        self.share_notice = "Anyone with this link can read a copy of the conversation as it is now."
        return rx.set_value(SHARE_LINK_INPUT_ID, share_url(self.router.headers.origin, token))

    @rx.event
    async def revoke(self, share_id: Any) -> Any:
        caller = await self.caller()
        try:
            await services().actions.revoke_share(caller, share_id)
        except Refused as refusal:
            self.share_notice = refusal.message
            return None
        await self._load_links(caller)
        self.share_notice = "Link revoked: it now answers like an unknown one."
        return rx.set_value(SHARE_LINK_INPUT_ID, "")

    @rx.event
    def close(self) -> Any:
        self.share_open, self.share_notice = False, ""
        return rx.set_value(SHARE_LINK_INPUT_ID, "")


#: ShareListState's vars that never reach the state store: they hold the tokens, read again by `load`.
LINK_LIST_VARS = frozenset({"links"})


class ShareListState(SessionState):
    """/account's "Share links": every live link of the signed-in user, to copy again or revoke."""

    # {"id", "title", "created" (ISO 8601, UTC), "url"} per live link, newest first; "url" is "" for one made before
    # tokens were kept. Sent to the page, never stored (see LINK_LIST_VARS).
    links: list[dict[str, str]] = []
    links_notice: str = ""

    def __getstate__(self) -> dict[str, Any]:
        return without_vars(super().__getstate__(), LINK_LIST_VARS)

    async def _account_caller(self) -> Caller:
        """The signed-in user (raises SignedOut), read from the session cookie as /account's other handlers do."""
        user = await self.signed_in_user(temporary_password_ok=True)
        return Caller(user.owner_id, self.client_address())

    async def _load(self, caller: Caller) -> None:
        origin = self.router.headers.origin
        self.links = [
            {
                "id": str(link.id),
                "title": link.title or "Untitled",
                "created": iso_utc(link.created_at),
                "url": share_url(origin, link.token) if link.token else "",
            }
            for link in await services().actions.share_links(caller)
        ]

    @rx.event
    async def load(self) -> None:
        """on_load of /account (after AccountState.load_account, which sends a signed-out tab to /login)."""
        if not get_settings().accounts_enabled:
            return
        self.links_notice = ""
        await self._load(await self._account_caller())

    @rx.event
    async def revoke(self, share_id: Any) -> None:
        """Revoke one of the caller's links; a foreign, unknown or malformed id changes nothing."""
        if not get_settings().accounts_enabled:  # no /account without accounts: the conversation menu revokes
            return
        caller = await self._account_caller()
        try:
            await services().actions.revoke_share(caller, share_id)
        except Refused as refusal:
            self.links_notice = refusal.message
            return
        self.links_notice = "Link revoked: it now answers like an unknown one."
        await self._load(caller)
