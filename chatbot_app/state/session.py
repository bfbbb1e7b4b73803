"""The root of the app's state: who this tab is and which conversation it shows.

Every other state hangs below this one as a sibling (conversation, reply, library, settings) and
reaches another through `get_state`, so dependencies run one way: children on this parent.
"""

from __future__ import annotations

import functools
import logging
import secrets
import traceback
from collections.abc import Callable
from typing import TypeVar

import reflex as rx
from reflex.app import default_backend_exception_handler
from reflex.event import EventSpec

from chatbot_app.config import get_settings
from chatbot_app.services.default_service import get_accounts
from chatbot_app.services.limits import address_from_headers
from chatbot_app.services.validation import is_identity
from chatbot_app.storage.models import User

SIGN_IN_PATH = "/login"

#: Shown when Reflex itself refused an event (wrong or missing arguments, a var with no setter):
#: only a hand-made client sends those, never the app's own pages.
NOT_UNDERSTOOD = "That request was not understood, so it was not carried out."

log = logging.getLogger(__name__)
R = TypeVar("R")


class SessionLost(RuntimeError):
    """The server lost this tab's state (e.g. Redis restarted) and with it the browser's identity.

    A new identity must not be made up then: it would replace the browser's own, and with it the
    user's conversations. The page is loaded again instead, which sends the identity back.
    """

    def __init__(self) -> None:
        super().__init__("this tab's state was lost; reload")


def state_helper(method: Callable[..., R]) -> Callable[..., R]:
    """Keep a public method of a state out of Reflex's event handlers; it stays an ordinary method.

    Reflex registers every public function of a state as an event handler that any client may call,
    with any arguments. A helper for sibling states must not be one (a partialmethod is not a function,
    so Reflex leaves it alone).
    """
    return functools.partialmethod(method)  # type: ignore[return-value]


def refused_by_reflex(exception: Exception) -> bool:
    """Whether Reflex raised this while binding or checking a client's event, with none of the app's code
    in the traceback: the event was malformed (a bug of ours would show one of our frames)."""
    if not isinstance(exception, TypeError | ValueError | AttributeError):
        return False
    frames = traceback.walk_tb(exception.__traceback__)
    return not any(frame.f_globals.get("__name__", "").startswith("chatbot_app.") for frame, _ in frames)


class SignedOut(SessionLost):
    """Accounts are on and this tab's cookie signs nobody in (signed out, expired, or a disabled user).

    Raised before any data is touched; the exception handler sends the tab to the sign-in page.
    """

    def __init__(self) -> None:
        super().__init__()


def reload_on_lost_session(exception: Exception) -> EventSpec:
    """The app's backend exception handler: a signed-out tab goes to the sign-in page; a lost session
    reloads the page; a malformed event from the client gets one log line (any client could otherwise
    fill the log with tracebacks); anything else is reported in full."""
    if isinstance(exception, SignedOut):  # within the app: the sign-in page, in place of this one
        return rx.redirect(SIGN_IN_PATH, replace=True)
    if isinstance(exception, SessionLost):
        # A full reload (not client-side navigation) is what sends the browser's storage back.
        return rx.call_script("window.location.reload()")
    if refused_by_reflex(exception):
        log.warning("refused a malformed event: %s: %.300s", type(exception).__name__, exception)
        return rx.toast.error(NOT_UNDERSTOOD, id="backend_error")
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

    @state_helper
    async def owner_id(self) -> str:
        """The caller's identity; the one place ownership comes from, asked on every event.

        With accounts on, the signed-in user read afresh from the session cookie (so signing out,
        or an admin disabling the user, takes effect at the next event); raises SignedOut if none.
        With accounts off, the browser's anonymous identity, created on first use.
        """
        if get_settings().accounts_enabled:
            return (await self.signed_in_user()).owner_id
        return self.anonymous_owner_id()

    @state_helper
    async def signed_in_user(self) -> User:
        """The user this tab's session cookie signs in; raises SignedOut (accounts on only)."""
        user = await get_accounts().user_for_cookie_header(self.router.headers.cookie)
        if user is None:
            raise SignedOut
        return user

    @state_helper
    def anonymous_owner_id(self) -> str:
        """The browser's anonymous identity (localStorage), created on first use.

        Only states kept in Redis can be lost while the tab stays connected; there, an event on a
        state that no page load has filled reloads the page rather than make up an identity.
        """
        if not is_identity(self.identity):
            if not self._page_loaded and rx.config.get_config().redis_url:
                raise SessionLost
            self.identity = secrets.token_urlsafe(24)
        return self.identity

    @state_helper
    async def page_owner_id(self) -> str:
        """`owner_id` for a page's on_load handlers: a page load brings the browser's storage, so a
        browser without an identity yet gets one here (and only on a page load)."""
        self._page_loaded = True
        return await self.owner_id()

    @state_helper
    def client_address(self) -> str:
        """The client's address: the socket's peer, or X-Forwarded-For only from a trusted proxy."""
        headers = self.router.headers
        return address_from_headers(headers.raw_headers, self.router.session.client_ip, get_settings().trusted_proxies)
