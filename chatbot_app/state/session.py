"""The root of the app's state: who this tab is and which conversation it shows.

Every other state hangs below this one as a sibling (conversation, reply, library, settings) and
reaches another through `get_state`, so dependencies run one way: children on this parent.
"""

from __future__ import annotations

import secrets

import reflex as rx
from reflex.app import default_backend_exception_handler
from reflex.event import EventSpec

from chatbot_app.config import get_settings
from chatbot_app.services.default_service import get_accounts
from chatbot_app.services.limits import address_from_headers
from chatbot_app.services.validation import is_identity
from chatbot_app.storage.models import User

SIGN_IN_PATH = "/login"


class SessionLost(RuntimeError):
    """The server lost this tab's state (e.g. Redis restarted) and with it the browser's identity.

    A new identity must not be made up then: it would replace the browser's own, and with it the
    user's conversations. The page is loaded again instead, which sends the identity back.
    """

    def __init__(self, path: str) -> None:
        super().__init__("this tab's state was lost; reload")
        self.path = path


class SignedOut(SessionLost):
    """Accounts are on and this tab's cookie signs nobody in (signed out, expired, or a disabled user).

    Raised before any data is touched; the exception handler sends the tab to the sign-in page.
    """

    def __init__(self) -> None:
        super().__init__(SIGN_IN_PATH)


def reload_on_lost_session(exception: Exception) -> EventSpec:
    """The app's backend exception handler: a lost session reloads the page; anything else is reported."""
    if isinstance(exception, SignedOut):  # within the app: the sign-in page, in place of this one
        return rx.redirect(SIGN_IN_PATH, replace=True)
    if isinstance(exception, SessionLost):
        return rx.redirect(exception.path or "/", is_external=True)
    return default_backend_exception_handler(exception)


class SessionState(rx.State):
    # An anonymous, unguessable identity that owns this browser's conversations.
    identity: str = rx.LocalStorage("", name="chatbot_identity", sync=True)
    # The conversation this tab shows ("" for a new chat).
    conversation_id: str = ""
    # A message for the user about their last action, shown under the composer.
    notice: str = ""
    # Set by a page load (which brings the browser's storage): only then may a new identity be made.
    _page_loaded: bool = False

    async def owner_id(self) -> str:
        """The caller's identity; the one place ownership comes from, asked on every event.

        With accounts on, the signed-in user read afresh from the session cookie (so signing out,
        or an admin disabling the user, takes effect at the next event); raises SignedOut if none.
        With accounts off, the browser's anonymous identity, created on first use.
        """
        if get_settings().accounts_enabled:
            return (await self.signed_in_user()).owner_id
        return self.anonymous_owner_id()

    async def signed_in_user(self) -> User:
        """The user this tab's session cookie signs in; raises SignedOut (accounts on only)."""
        user = await get_accounts().user_for_cookie_header(self.router.headers.cookie)
        if user is None:
            raise SignedOut
        return user

    def anonymous_owner_id(self) -> str:
        """The browser's anonymous identity (localStorage), created on first use."""
        if not is_identity(self.identity):
            if not self._page_loaded:
                raise SessionLost(self.router.url.path)
            self.identity = secrets.token_urlsafe(24)
        return self.identity

    def client_address(self) -> str:
        """The client's address: the socket's peer, or X-Forwarded-For only from a trusted proxy."""
        headers = self.router.headers
        return address_from_headers(headers.raw_headers, self.router.session.client_ip, get_settings().trusted_proxies)
