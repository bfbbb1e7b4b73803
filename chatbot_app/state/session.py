"""The root of the app's state: who this tab is and which conversation it shows.

Every other state hangs below this one as a sibling (conversation, reply, library, settings) and
reaches another through `get_state`, so dependencies run one way: children on this parent.

With accounts on, a tab's state belongs to one sign-in: `StartCleanOnNewSignIn` (a Reflex middleware,
run before every event) resets the whole tree when the tab's session cookie is no longer the one it was
filled under, so that the page loaded after a sign-out (or another person's sign-in in the same tab)
never receives the previous user's conversation, sidebar, email or admin lists.
"""

from __future__ import annotations

import functools
import logging
import secrets
import traceback
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

import reflex as rx
from reflex.app import App, default_backend_exception_handler
from reflex.event import Event, EventSpec
from reflex.middleware import Middleware
from reflex.state import BaseState, StateUpdate

from chatbot_app.config import get_settings
from chatbot_app.services.accounts import session_token, token_digest
from chatbot_app.services.actions import Caller
from chatbot_app.services.limits import address_from_headers
from chatbot_app.services.validation import is_identity
from chatbot_app.services.wiring import services
from chatbot_app.storage.models import User

SIGN_IN_PATH = "/login"
#: Where a user with a temporary password (an admin's reset, or an admin-made account) must go first.
CHANGE_PASSWORD_PATH = "/account"
#: Counters that tell a state's background task its view is gone (ReplyState's subscription, the
#: conversation's history view): a reset keeps them growing, so no old task matches a new number.
GENERATION_COUNTERS = ("_subscription", "_view", "_import_watch")

#: Shown when Reflex itself refused an event (wrong or missing arguments, a var with no setter):
#: only a hand-made client sends those, never the app's own pages.
NOT_UNDERSTOOD = "That request was not understood, so it was not carried out."

log = logging.getLogger(__name__)
R = TypeVar("R")


class SessionLost(RuntimeError):
    """The server lost this tab's state (e.g. Redis restarted) and with it the browser's identity.

    A new identity must not be made up then: it would replace the browser's own, and with it the
    user's conversations. The page at `path` is loaded again instead, which sends the identity back.
    """

    def __init__(self, path: str = "/") -> None:
        super().__init__("this tab's state was lost; load its page again")
        self.path = path


class SeenIdentities:
    """The anonymous identity each websocket connection of this process has shown (by Socket.IO session id).

    In process memory, so it outlives the tab's state in Redis: a tab whose state the server lost keeps
    its identity on the connection that showed it. A new connection always brings the browser's storage.
    """

    def __init__(self, size: int = 20_000) -> None:
        self.size = size
        self._seen: OrderedDict[str, str] = OrderedDict()

    def get(self, connection: str) -> str | None:
        return self._seen.get(connection) if connection else None

    def remember(self, connection: str, identity: str) -> None:
        if not connection:
            return
        self._seen[connection] = identity
        self._seen.move_to_end(connection)
        while len(self._seen) > self.size:  # the least recently used go first
            self._seen.popitem(last=False)


IDENTITIES_SEEN = SeenIdentities()


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
        super().__init__(SIGN_IN_PATH)


class PasswordChangeRequired(RuntimeError):
    """The signed-in user holds a temporary password: nothing but changing it, on /account, until they do."""

    def __init__(self) -> None:
        super().__init__("the user must change a temporary password first")


def reload_on_lost_session(exception: Exception) -> EventSpec:
    """The app's backend exception handler: a signed-out tab goes to the sign-in page, and a temporary
    password to /account; a lost session reloads the page; a malformed event from the client gets one
    log line (any client could otherwise fill the log with tracebacks); anything else is reported in full."""
    if isinstance(exception, SignedOut):  # within the app: the sign-in page, in place of this one
        return rx.redirect(SIGN_IN_PATH, replace=True)
    if isinstance(exception, PasswordChangeRequired):
        return rx.redirect(CHANGE_PASSWORD_PATH, replace=True)
    if isinstance(exception, SessionLost):
        # Loading the page again (client-side: no script, which the CSP would refuse to evaluate) sends
        # the browser's storage back before the page's on_load handlers run.
        return rx.redirect(exception.path, replace=True)
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
    # With accounts on: the digest of the session token this state was filled under ("" signed out;
    # None before the tab's first event). See StartCleanOnNewSignIn.
    _filled_for_session: str | None = None

    @state_helper
    async def owner_id(self) -> str:
        """The caller's identity; the one place ownership comes from, asked on every event.

        With accounts on, the signed-in user read afresh from the session cookie (so signing out,
        or an admin disabling the user, takes effect at the next event); raises SignedOut if none.
        With accounts off, the browser's anonymous identity, created on first use. With Redis, a state
        that no page load has filled raises SessionLost: so a page whose handlers ask for the owner must
        call `page_owner_id` in its on_load (the chat page does; /account and /admin use `signed_in_user`).
        """
        if not self._page_loaded and rx.config.get_config().redis_url:
            # A state no page has loaded: the server lost it (Redis restarted, or it expired), and with it
            # the open conversation. Its page is loaded again rather than go on without them.
            raise SessionLost(self.router.url.path or "/")
        if get_settings().accounts_enabled:
            return (await self.signed_in_user()).owner_id
        return self.anonymous_owner_id()

    @state_helper
    async def signed_in_user(self, temporary_password_ok: bool = False) -> User:
        """The user this tab's session cookie signs in; raises SignedOut (accounts on only).

        A user with a temporary password raises PasswordChangeRequired, except where
        `temporary_password_ok` (the /account page, where they change it).
        """
        user = await services().accounts.user_for_cookie_header(self.router.headers.cookie)
        if user is None:
            raise SignedOut
        if user.must_change_password and not temporary_password_ok:
            raise PasswordChangeRequired
        return user

    @state_helper
    def session_token(self) -> str | None:
        """The session token this tab's websocket came with (to keep it when ending the user's others)."""
        return session_token(self.router.headers.cookie, get_settings().served_over_https)

    @state_helper
    async def start_clean_on_new_sign_in(self) -> bool:
        """Reset this tab's whole state tree if its session cookie changed since it was filled.

        A sign-out or a sign-in is a full page load, so the new cookie arrives with the page's new
        websocket, and this runs before that page's first event sends it the state. Returns whether
        the state was reset.
        """
        token = self.session_token()
        digest = token_digest(token) if token else ""
        previous, self._filled_for_session = self._filled_for_session, digest
        if previous is None or previous == digest:  # a new tab's state is clean already
            return False
        states = [await self.get_state(cls) for cls in _states_below(type(self))]
        counters = {(state, name): getattr(state, name) for state in states for name in _counters_of(state)}
        identity = self.identity  # the browser's own (localStorage): it sends it again on every page load
        self.reset()  # this state and every substate loaded above, back to their defaults
        self.identity, self._filled_for_session = identity, digest
        for (state, name), value in counters.items():
            setattr(state, name, value + 1)
        return True

    @state_helper
    def anonymous_owner_id(self) -> str:
        """The browser's anonymous identity (localStorage), created on first use.

        A page load that brings no identity may be one Reflex made without the browser's storage, after
        the server lost the tab's state (Redis restarted, or the state expired): the identity this
        connection has shown before is taken then, never a new one over the browser's own.
        """
        connection = self.router.session.session_id
        if not is_identity(self.identity):
            self.identity = IDENTITIES_SEEN.get(connection) or secrets.token_urlsafe(24)
        IDENTITIES_SEEN.remember(connection, self.identity)
        return self.identity

    @state_helper
    def state_lost(self) -> bool:
        """Whether the server lost this tab's state (Redis restarted, or it expired): no page has filled
        it, and no new sign-in reset it (StartCleanOnNewSignIn keeps the session it was reset for)."""
        return not self._page_loaded and self._filled_for_session is None

    @state_helper
    async def page_owner_id(self) -> str:
        """`owner_id` for a page's on_load handlers: a page load brings the browser's storage, so a
        browser without an identity yet gets one here (and only on a page load)."""
        self._page_loaded = True
        return await self.owner_id()

    @state_helper
    async def caller(self) -> Caller:
        """Who this tab acts as, for the actions (services.actions): checked first, on every event."""
        return Caller(await self.owner_id(), self.client_address())

    @state_helper
    def client_address(self) -> str:
        """The client's address: the socket's peer, or X-Forwarded-For only from a trusted proxy."""
        headers = self.router.headers
        return address_from_headers(headers.raw_headers, self.router.session.client_ip, get_settings().trusted_proxies)


async def tab_connected(token: str) -> bool:
    """Whether the tab with this client token has a websocket open to any backend (Reflex's token manager)."""
    from reflex.utils.prerequisites import get_and_validate_app

    namespace = get_and_validate_app().app.event_namespace
    if namespace is None:  # not serving (a test's bare state)
        return False
    try:
        return await namespace._token_manager.is_token_connected(token)
    except Exception as exc:  # Redis out of reach: ask again later rather than end a live tab's watcher
        log.warning("could not tell whether a tab is connected (%s)", type(exc).__name__)
        return True


def _states_below(cls: type[BaseState]) -> list[type[BaseState]]:
    found: list[type[BaseState]] = []
    for child in cls.get_substates():
        found += [child, *_states_below(child)]
    return found


def _counters_of(state: BaseState) -> list[str]:
    return [name for name in GENERATION_COUNTERS if name in type(state).__fields__]


class StartCleanOnNewSignIn(Middleware):
    """Before every event (with accounts on): a tab whose sign-in changed starts from a clean state."""

    async def preprocess(self, app: App, state: BaseState, event: Event) -> StateUpdate | None:
        if get_settings().accounts_enabled:
            session = await state.get_state(SessionState)
            if await session.start_clean_on_new_sign_in():
                log.info("a tab's state was reset: its sign-in changed")
        return None
