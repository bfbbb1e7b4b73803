"""Accounts: sign-up and sign-in, sessions, admins, personal API keys, usage reports, claiming.

Plain Python over the database (no Reflex). Every secret handed out (session token, API key, share
token) is 256 random bits shown once and stored only as its SHA-256 digest; passwords are hashed
with Argon2id. A signed-in user owns conversations as owner_id "user:<id>" (`User.owner_id`), so
every query already scoped by owner id works unchanged for accounts.

For the state layer (Reflex 0.10.1): a handler finds the signed-in user from the websocket
handshake's Cookie header, which Reflex keeps server-side as `self.router.headers.cookie` (it
never sends it to the browser):

    user = await services().accounts.user_for_cookie_header(self.router.headers.cookie)

Reflex reads that header once per socket connection (reflex/app.py, `_build_static_router_data`)
and copies it into every event, so it is not refreshed per event; sign-in and sign-out are full-page
form posts, so the page's next socket carries the new cookie. The database is read on every call,
so an ended session or a disabled user is None from the next event on. When it is None (in any mode
but "none"), the handler must touch no data, clear what it shows of the user, and
`return rx.redirect("/login?error=signed_out")`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from chatbot_app.config import Settings
from chatbot_app.services.auth_limits import SignInThrottle, SignUpThrottle
from chatbot_app.services.passwords import PasswordHashing, PasswordsBusy
from chatbot_app.services.usage_report import TopUser, UsageChart, usage_chart
from chatbot_app.services.validation import is_identity
from chatbot_app.storage import api_keys, documents, presets, server_settings, sessions, shares, users
from chatbot_app.storage import conversations as store
from chatbot_app.storage import mcp_servers as mcp_store
from chatbot_app.storage import usage as usage_store
from chatbot_app.storage.database import Database
from chatbot_app.storage.models import ApiKey, McpServerRow, User, UserRole, utcnow

R = TypeVar("R")

SESSION_COOKIE = "chatbot_session"
#: The email of a refused sign-in (not a secret), so the form can show it again without putting it in the URL.
SIGN_IN_EMAIL_COOKIE = "chatbot_signin_email"
#: The cookie's name when the app is served over HTTPS. Browsers accept a `__Host-` cookie only from a
#: secure origin, with Path=/ and no Domain: a sibling subdomain cannot plant ("toss") one.
SECURE_SESSION_COOKIE = "__Host-" + SESSION_COOKIE
#: server_setting rows: the first account (its primary key lets one sign-up only claim it), and sign-up
#: opened by an admin.
FIRST_ADMIN = "first_admin"
SIGNUP_OPEN = "signup_open"
#: Personal API keys start with this, so the API guard can tell them from CHATBOT_API_KEYS at a glance.
API_KEY_PREFIX = "cbk_"
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024
#: A session's expiry slides forward on use, but at most one write per this interval per session.
SESSION_TOUCH_INTERVAL = timedelta(minutes=5)
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s.]+")

#: What each refusal says to the person. Codes travel in redirects (?error=<code>); messages never do.
AUTH_MESSAGES: dict[str, str] = {
    "invalid": "Wrong email or password.",
    "throttled": "Too many sign-in attempts. Wait a few minutes, then try again.",
    "signup_throttled": "Too many accounts were created from here recently. Try again later.",
    "busy": "The server is busy checking passwords. Try again in a moment.",
    "disabled": "This account is disabled. Ask an admin to enable it.",
    "signup_closed": "Sign-up is closed on this server. Ask an admin for an account.",
    "email_taken": "An account with this email already exists. Sign in instead.",
    "bad_email": "Enter a valid email address.",
    "weak_password": f"Use a password of {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters.",
    "method_off": "This way of signing in is not enabled on this server.",
    "oidc_failed": "Single sign-on did not complete. Try again.",
    "oidc_domain": "Your email address's domain is not allowed to sign in here.",
    "signed_out": "Your session has ended. Sign in again.",
    "wrong_current_password": "Your current password is not right.",
    "same_password": "Choose a new password: it must differ from the current one.",
}


class AuthError(Exception):
    """A refused sign-in, sign-up or account action; `code` is a key of AUTH_MESSAGES."""

    def __init__(self, code: str) -> None:
        super().__init__(AUTH_MESSAGES[code])
        self.code = code


class NotAllowed(Exception):
    """An account action the caller may not take (not an admin, or the last admin)."""


@dataclass(frozen=True, slots=True)
class UsageRow:
    day: date
    user_id: int
    email: str | None
    model: str
    messages: int
    prompt_tokens: int
    completion_tokens: int


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def owner_id_of(user_id: int) -> str:
    return f"user:{user_id}"


def user_id_from_owner(owner_id: str) -> int | None:
    """The user id in a "user:<id>" owner id; None for anonymous and operator-key owners."""
    prefix, _, number = owner_id.partition(":")
    return int(number) if prefix == "user" and number.isdigit() else None


def session_cookie_name(secure: bool) -> str:
    """The session cookie's name: `__Host-` prefixed when the app is served over HTTPS."""
    return SECURE_SESSION_COOKIE if secure else SESSION_COOKIE


def session_token(cookie_header: str | None, secure: bool = False) -> str | None:
    """The session token in a raw Cookie header (as Reflex keeps it: `self.router.headers.cookie`).

    A `__Host-` cookie always wins: only this host, over HTTPS, can have set it. Served over HTTPS
    (`secure`), a plain-named cookie is ignored, since a sibling subdomain may have tossed it in.
    Otherwise, several different plain values (one of them tossed) sign nobody in, whichever comes first.
    """
    found: dict[str, set[str]] = {SECURE_SESSION_COOKIE: set(), SESSION_COOKIE: set()}
    for pair in (cookie_header or "").split(";"):
        name, _, value = pair.strip().partition("=")
        value = value.strip().strip('"')
        if name in found and value:
            found[name].add(value)
    for name in (SECURE_SESSION_COOKIE, *(() if secure else (SESSION_COOKIE,))):
        if len(found[name]) == 1:
            return next(iter(found[name]))
        if found[name]:
            return None
    return None


def normalized_email(raw: object) -> str:
    email = raw.strip().lower() if isinstance(raw, str) else ""
    if len(email) > 320 or not _EMAIL.fullmatch(email):
        raise AuthError("bad_email")
    return email


def _aware(moment: datetime) -> datetime:
    """Stored times are UTC; SQLite gives them back without a zone."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


class Accounts:
    """Everything about users, each call one transaction off the event loop."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        throttle: SignInThrottle | None = None,
        clock: Callable[[], datetime] = utcnow,
        signup_throttle: SignUpThrottle | None = None,
        passwords: PasswordHashing | None = None,
    ) -> None:
        self.settings = settings
        self.db = Database(engine)
        self.throttle = throttle or SignInThrottle(settings.redis_url)
        self.signup_throttle = signup_throttle or SignUpThrottle(
            settings.redis_url,
            per_address=f"{settings.signups_per_address_per_hour}/hour",
            overall=f"{settings.signups_per_hour}/hour",
        )
        self.clock = clock
        self.passwords = passwords or PasswordHashing()
        # Verified against when the email is unknown, so that both refusals take the same time.
        self._decoy_hash = self.passwords.hasher.hash(secrets.token_urlsafe(16))

    async def _run(self, work: Callable[[Session], R]) -> R:
        return await self.db.run(work)

    async def _hash(self, password: str) -> str:
        try:
            return await self.passwords.hash(password)
        except PasswordsBusy:
            raise AuthError("busy") from None

    async def _verify(self, stored_hash: str, password: str) -> bool:
        try:
            return await self.passwords.verify(stored_hash, password)
        except PasswordsBusy:
            raise AuthError("busy") from None

    # --- Local accounts ------------------------------------------------------------------------

    def _check_password(self, password: object) -> str:
        if not isinstance(password, str) or not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
            raise AuthError("weak_password")
        return password

    async def signup_open(self) -> bool:
        """Whether anyone may sign up now: CHATBOT_ALLOW_SIGNUP, an admin's choice, or a server with no account yet."""
        if self.settings.allow_signup:
            return True

        def work(session: Session) -> bool:
            return _signup_opened(session) or not users.has_users(session)

        return await self._run(work)

    async def sign_up(self, email: object, password: object, client_address: str = "unknown") -> User:
        """A new local account. The server's first account becomes its admin (one and only one, however
        many sign up at once); after it, sign-up is open only if CHATBOT_ALLOW_SIGNUP or an admin opened it.

        Throttled per client address and overall before the password is hashed.
        """
        if "local" not in self.settings.auth_methods:
            raise AuthError("method_off")
        address = normalized_email(email)
        password = self._check_password(password)
        if not await self.signup_open():
            raise AuthError("signup_closed")
        if not await self.signup_throttle.admit(client_address):
            raise AuthError("signup_throttled")
        password_hash = await self._hash(password)

        def work(session: Session) -> User:
            if users.email_taken(session, address):
                raise AuthError("email_taken")
            first = not users.has_users(session)
            if not first and not self.settings.allow_signup and not _signup_opened(session):
                raise AuthError("signup_closed")  # another sign-up became the first account meanwhile
            return self._new_user(session, first=first, email=address, password_hash=password_hash)

        try:
            return await self._run(work)
        except IntegrityError:
            # Another sign-up committed the first account, or this email, first: decide again without it.
            return await self._run(work)

    def _new_user(self, session: Session, *, first: bool, **fields: Any) -> User:
        """Add a user; the first account of the server is an admin, claimed by the `first_admin` row's
        primary key, so that a concurrent first sign-up fails with IntegrityError (on either database)."""
        user = users.add_user(
            session, User(role=UserRole.ADMIN if first else UserRole.USER, created_at=self.clock(), **fields)
        )
        if first:
            server_settings.claim_setting(session, FIRST_ADMIN, str(user.id), self.clock())
        return user

    async def sign_in(self, email: object, password: object, client_address: str) -> User:
        """The user with this email and password. Unknown email and wrong password raise the same error.

        `client_address` is the client's (the trusted-proxy address), never the proxy's: the throttle
        counts failures per account and per address.
        """
        if "local" not in self.settings.auth_methods:
            raise AuthError("method_off")
        address = email.strip().lower()[:320] if isinstance(email, str) else ""
        password = password[:MAX_PASSWORD_CHARS] if isinstance(password, str) else ""
        if not await self.throttle.allowed(address, client_address):
            raise AuthError("throttled")
        user = await self._run(lambda session: users.user_by_email(session, address))
        stored = user.password_hash if user is not None and user.password_hash else self._decoy_hash
        verified = await self._verify(stored, password) and user is not None and user.password_hash is not None
        if not verified or user is None:
            await self.throttle.failed(address, client_address)
            raise AuthError("invalid")
        if user.disabled:
            raise AuthError("disabled")
        if self.passwords.needs_rehash(stored):
            await self._store_password(user.id, await self._hash(password), only_if=stored)  # type: ignore[arg-type]
        return user

    async def _store_password(self, user_id: int, password_hash: str, only_if: str) -> None:
        """Write a new hash, only while the stored one is still `only_if` (a change meanwhile wins)."""
        await self._run(lambda session: users.replace_password(session, user_id, only_if, password_hash))

    async def change_password(
        self, user_id: int, current: object, new: object, keep_session: str | None = None, client_address: str = ""
    ) -> None:
        """The user's own change: the current password must be right. Ends every other session of the
        user (`keep_session` is the token of the one making the change) and clears a temporary password.

        Wrong current passwords count as failed sign-ins (a stolen session cannot guess on and on).
        """
        new_password = self._check_password(new)
        current_password = current[:MAX_PASSWORD_CHARS] if isinstance(current, str) else ""
        user = await self._run(lambda session: users.user_by_id(session, user_id))
        if user is None or user.password_hash is None or user.disabled:
            raise AuthError("invalid")
        account = user.email or ""
        if not await self.throttle.allowed(account, client_address):
            raise AuthError("throttled")
        if not await self._verify(user.password_hash, current_password):
            await self.throttle.failed(account, client_address)
            raise AuthError("wrong_current_password")
        if new_password == current_password:
            raise AuthError("same_password")
        new_hash, checked_hash = await self._hash(new_password), user.password_hash
        kept = token_digest(keep_session) if keep_session else None

        def work(session: Session) -> None:
            if not users.replace_password(session, user_id, checked_hash, new_hash, must_change_password=False):
                # Changed or reset meanwhile: the password just checked is no longer the one.
                raise AuthError("wrong_current_password")
            sessions.delete_sessions_of(session, user_id, keep_hash=kept)

        await self._run(work)

    # --- Single sign-on ------------------------------------------------------------------------

    async def oidc_user(self, issuer: str, subject: str, email: str | None, email_verified: bool) -> User:
        """The user for this (issuer, sub) pair, created on first sign-in. The caller checked the allowlist.

        The email is stored only if the provider says it verified it: otherwise anyone could claim
        ceo@corp.example at a provider that lets them type it in, and keep its real owner from signing up.
        """
        kept_email = email if email_verified else None

        def work(session: Session) -> User:
            user = users.user_by_login(session, issuer, subject)
            if user is None:
                # An email already used by another account is not linked: that would hand it over.
                taken = kept_email is None or users.email_taken(session, kept_email)
                user = self._new_user(
                    session,
                    first=not users.has_users(session),
                    email=None if taken else kept_email,
                    oidc_issuer=issuer,
                    oidc_subject=subject,
                )
            if user.disabled:
                raise AuthError("disabled")
            return user

        try:
            return await self._run(work)
        except IntegrityError:  # the same login (or the first account) committed meanwhile: read it again
            return await self._run(work)

    # --- Sessions ------------------------------------------------------------------------------

    async def start_session(self, user: User) -> str:
        """A new session for `user`; the returned token goes into the cookie and nowhere else."""
        token = secrets.token_urlsafe(32)
        now, user_id = self.clock(), user.id
        assert user_id is not None
        expires_at = now + timedelta(days=self.settings.session_days)
        await self._run(lambda session: sessions.add_session(session, user_id, token_digest(token), now, expires_at))
        return token

    async def user_for_session(self, token: str | None) -> User | None:
        """The signed-in user, read from the database on every call (so a disabled user is out at once).

        None for a missing, unknown, expired or ended session, or a disabled user. Use slides the expiry.
        """
        if not token:
            return None
        digest, now = token_digest(token), self.clock()

        def work(session: Session) -> User | None:
            found = sessions.session_and_user(session, digest)
            if found is None:
                return None
            row, user = found
            if _aware(row.expires_at) <= now:
                sessions.delete_session(session, digest)
                return None
            if user.disabled:
                return None
            if now - _aware(row.last_seen_at) >= SESSION_TOUCH_INTERVAL:
                row.last_seen_at = now
                row.expires_at = now + timedelta(days=self.settings.session_days)
            return user

        return await self._run(work)

    async def user_for_cookie_header(self, cookie_header: str | None) -> User | None:
        """user_for_session for the token in a raw Cookie header; what a Reflex handler calls on each event."""
        return await self.user_for_session(session_token(cookie_header, self.settings.served_over_https))

    async def end_session(self, token: str | None) -> None:
        """Sign out: this session only."""
        if token:
            digest = token_digest(token)
            await self._run(lambda session: sessions.delete_session(session, digest))

    async def end_all_sessions(self, user_id: int) -> None:
        """Sign out everywhere: every session of the user."""
        await self._run(lambda session: sessions.delete_sessions_of(session, user_id))

    # --- Personal API keys ---------------------------------------------------------------------

    async def create_api_key(self, user_id: int, name: str = "") -> tuple[ApiKey, str]:
        """A new key for the user: (its row, the key itself). The key is never readable again."""
        key = API_KEY_PREFIX + secrets.token_urlsafe(32)
        row = ApiKey(
            user_id=user_id,
            name=name.strip()[:80],
            key_hash=token_digest(key),
            prefix=key[:12],
            created_at=self.clock(),
        )
        await self._run(lambda session: api_keys.add_api_key(session, row))
        return row, key

    async def api_keys(self, user_id: int) -> list[ApiKey]:
        return await self._run(lambda session: api_keys.api_keys_of(session, user_id))

    async def revoke_api_key(self, user_id: int, key_id: int) -> bool:
        """Revoke one of the user's own keys; False if it is not theirs (or unknown)."""
        return await self._run(lambda session: api_keys.revoke_api_key(session, user_id, key_id))

    async def user_for_api_key(self, key: str) -> User | None:
        """The enabled user a personal key belongs to; None for unknown, revoked or disabled."""
        if not key.startswith(API_KEY_PREFIX):
            return None
        digest = token_digest(key)

        def work(session: Session) -> User | None:
            found = api_keys.key_and_user(session, digest)
            if found is None or found[0].revoked or found[1].disabled:
                return None
            return found[1]

        return await self._run(work)

    # --- Admins --------------------------------------------------------------------------------

    async def _as_admin(self, actor_id: int, work: Callable[[Session], R], changes_admins: bool = False) -> R:
        """Run `work` only if `actor_id` is, right now, an enabled admin.

        With `changes_admins`, the check and the work hold the admin lock (`users.lock_admins`), so
        that two admins acting at once cannot each count the other and leave no enabled admin.
        """

        def checked(session: Session) -> R:
            if changes_admins:
                users.lock_admins(session)
            actor = users.user_by_id(session, actor_id)
            if actor is None or actor.disabled or not actor.is_admin:
                raise NotAllowed("Only an admin can do this.")
            return work(session)

        return await self._run(checked)

    async def list_users(self, actor_id: int) -> list[User]:
        return await self._as_admin(actor_id, users.all_users)

    def _target(self, session: Session, user_id: int) -> User:
        user = users.user_by_id(session, user_id)
        if user is None:
            raise NotAllowed("No such user.")
        return user

    def _keep_an_admin(self, session: Session, user: User) -> None:
        """Refuse to demote or disable `user` if they are the last enabled admin (under `users.lock_admins`)."""
        if user.is_admin and not user.disabled and users.other_enabled_admins(session, user.id) == 0:
            raise NotAllowed("At least one enabled admin must remain.")

    def _set_disabled(self, session: Session, user: User, disabled: bool) -> None:
        if disabled:
            self._keep_an_admin(session, user)
        user.disabled = disabled

    async def set_disabled(self, actor_id: int, user_id: int, disabled: bool) -> None:
        """Disable (every session stops at once: each use reads the flag) or enable a user."""
        await self._as_admin(
            actor_id, lambda session: self._set_disabled(session, self._target(session, user_id), disabled), True
        )

    async def set_admin(self, actor_id: int, user_id: int, admin: bool) -> None:
        def work(session: Session) -> None:
            user = self._target(session, user_id)
            if not admin:
                self._keep_an_admin(session, user)
            user.role = UserRole.ADMIN if admin else UserRole.USER

        await self._as_admin(actor_id, work, changes_admins=True)

    def _reset(self, session: Session, user: User, password_hash: str) -> None:
        """A temporary password: the user must change it at the next sign-in; their sessions end and
        their personal API keys are revoked (whoever knew the old password may have made one)."""
        if user.email is None:
            raise NotAllowed("This user signs in with single sign-on and has no password.")
        assert user.id is not None
        user.password_hash, user.must_change_password = password_hash, True
        sessions.delete_sessions_of(session, user.id)
        api_keys.revoke_api_keys_of(session, user.id)

    async def reset_password(self, actor_id: int, user_id: int) -> str:
        """A new temporary password for the user (returned once, to show once); see `_reset`."""
        temporary = temporary_password()
        password_hash = await self._hash(temporary)
        await self._as_admin(
            actor_id, lambda session: self._reset(session, self._target(session, user_id), password_hash)
        )
        return temporary

    async def create_user(self, actor_id: int, email: object) -> tuple[User, str]:
        """An account made by an admin, with a one-time password (returned once, to show once) that its
        user must change at the first sign-in. Sign-up need not be open."""
        address = normalized_email(email)
        temporary = temporary_password()
        password_hash = await self._hash(temporary)

        def work(session: Session) -> User:
            if users.email_taken(session, address):
                raise NotAllowed(AUTH_MESSAGES["email_taken"])
            return self._new_user(
                session, first=False, email=address, password_hash=password_hash, must_change_password=True
            )

        try:
            return await self._as_admin(actor_id, work), temporary
        except IntegrityError:
            raise NotAllowed(AUTH_MESSAGES["email_taken"]) from None

    async def set_signup_open(self, actor_id: int, open_: bool) -> None:
        """Open sign-up to anyone, or close it again (CHATBOT_ALLOW_SIGNUP=true keeps it open regardless)."""

        value = "true" if open_ else "false"
        await self._as_admin(
            actor_id, lambda session: server_settings.put_setting(session, SIGNUP_OPEN, value, self.clock())
        )

    # --- MCP servers (services.tools.catalog reads them) -----------------------------------------

    async def add_mcp_server(self, actor_id: int, row: McpServerRow) -> None:
        if not await self._as_admin(actor_id, lambda session: mcp_store.add_server(session, row)):
            raise NotAllowed(f"A server named “{row.name}” exists already.")

    async def change_mcp_server(self, actor_id: int, name: str, **changes: bool) -> None:
        if not await self._as_admin(actor_id, lambda session: mcp_store.change_server(session, name, **changes)):
            raise NotAllowed("No such server (those of CHATBOT_MCP_SERVERS are changed in the environment).")

    async def remove_mcp_server(self, actor_id: int, name: str) -> None:
        if not await self._as_admin(actor_id, lambda session: mcp_store.remove_server(session, name)):
            raise NotAllowed("No such server (those of CHATBOT_MCP_SERVERS are changed in the environment).")

    # --- Operators (python -m chatbot_app.admin): whoever runs commands on the server ----------

    async def operator_create_admin(self, email: object) -> tuple[User, str]:
        """A new admin account with a one-time password (to change at the first sign-in)."""
        address = normalized_email(email)
        temporary = temporary_password()
        password_hash = await self._hash(temporary)

        def work(session: Session) -> User:
            if users.email_taken(session, address):
                raise NotAllowed(f"An account with the email {address} already exists.")
            user = self._new_user(
                session, first=False, email=address, password_hash=password_hash, must_change_password=True
            )
            user.role = UserRole.ADMIN
            # The server has had its first account: sign-up closes as for one made on the sign-up page.
            if server_settings.setting(session, FIRST_ADMIN) is None:
                server_settings.claim_setting(session, FIRST_ADMIN, str(user.id), self.clock())
            return user

        try:
            return await self._run(work), temporary
        except IntegrityError:
            raise NotAllowed(f"An account with the email {address} already exists.") from None

    async def operator_reset_password(self, email: object) -> tuple[User, str]:
        """A temporary password for the account with this email (see `_reset`)."""
        temporary = temporary_password()
        password_hash = await self._hash(temporary)

        def work(session: Session) -> User:
            user = _user_by_email(session, email)
            self._reset(session, user, password_hash)
            return user

        return await self._run(work), temporary

    async def operator_set_disabled(self, email: object, disabled: bool) -> User:
        """Disable or enable the account with this email; the last enabled admin cannot be disabled."""

        def work(session: Session) -> User:
            users.lock_admins(session)
            user = _user_by_email(session, email)
            self._set_disabled(session, user, disabled)
            return user

        return await self._run(work)

    async def operator_list_users(self) -> list[User]:
        return await self._run(users.all_users)

    async def set_quota(self, actor_id: int, user_id: int, daily_tokens: int | None) -> None:
        """Override the daily token quota for one user (None: back to CHATBOT_DAILY_TOKENS_PER_USER)."""
        if daily_tokens is not None and daily_tokens < 0:
            raise NotAllowed("A quota is a number of tokens, 0 or more.")

        def work(session: Session) -> None:
            self._target(session, user_id).daily_token_quota = daily_tokens

        await self._as_admin(actor_id, work)

    async def usage(self, actor_id: int, days: int = 30, user_id: int | None = None) -> list[UsageRow]:
        """Usage per user, model and day (newest first). Admins see everyone; a user sees only themself."""
        since = self.clock().date() - timedelta(days=days - 1)

        def work(session: Session) -> list[UsageRow]:
            actor = users.user_by_id(session, actor_id)
            if actor is None or actor.disabled:
                raise NotAllowed("Sign in to see usage.")
            wanted = user_id if actor.is_admin else actor_id
            return [
                UsageRow(u.day, u.user_id, email, u.model, u.messages, u.prompt_tokens, u.completion_tokens)
                for u, email in usage_store.usage_with_emails(session, since, wanted)
            ]

        return await self._run(work)

    async def usage_chart(self, actor_id: int, days: int = 30, everyone: bool = False) -> UsageChart:
        """Tokens per day and model of the last `days` days: the actor's own, or everyone's (admins only)."""
        last_day = self.clock().date()

        def work(session: Session) -> UsageChart:
            actor = session.get(User, actor_id)
            if actor is None or actor.disabled:
                raise NotAllowed("Sign in to see usage.")
            if everyone and not actor.is_admin:
                raise NotAllowed("Only an admin can do this.")
            since = last_day - timedelta(days=days - 1)
            rows = usage_store.tokens_per_day(session, since, None if everyone else actor_id)
            return usage_chart(rows, last_day, days)

        return await self._run(work)

    async def top_users(self, actor_id: int, days: int = 30, limit: int = 10) -> list[TopUser]:
        """The users who spent the most tokens in the last `days` days (admins only)."""
        since = self.clock().date() - timedelta(days=days - 1)
        rows = await self._as_admin(actor_id, lambda session: usage_store.top_users(session, since, limit))
        return [TopUser(*row) for row in rows]

    async def tool_usage(self, actor_id: int, days: int = 30, limit: int = 50) -> list[tuple[str, str, int, int]]:
        """Tool calls in the last `days` days per user and tool, most first (admins only): (who, tool, calls,
        failed or denied). Anonymous browsers are named by the start of their identity."""
        since = datetime.combine(self.clock().date() - timedelta(days=days - 1), time.min, UTC)
        rows = await self._as_admin(actor_id, lambda session: usage_store.tool_calls_per_user(session, since, limit))
        return [(email or f"anonymous {owner[:8]}…", tool, calls, failed) for owner, email, tool, calls, failed in rows]

    # --- Claiming anonymous conversations ------------------------------------------------------

    async def claimable(self, anonymous_owner: str) -> int:
        """How many conversations a browser's anonymous identity holds (to offer claiming them)."""
        if not is_identity(anonymous_owner):
            return 0
        return await self._run(lambda session: store.count_conversations(session, anonymous_owner))

    async def claim_conversations(self, anonymous_owner: str, user_id: int) -> int:
        """Move the anonymous identity's conversations (and presets, share links) to the user.

        Call only on the user's explicit yes. A preset whose name the user already has stays where
        it is, so nothing is lost. Returns the number of conversations moved.
        """
        if not is_identity(anonymous_owner):
            return 0
        owner = owner_id_of(user_id)

        def work(session: Session) -> int:
            moved = store.move_conversations(session, anonymous_owner, owner)
            presets.move_presets(session, anonymous_owner, owner)
            shares.move_shares(session, anonymous_owner, owner)
            documents.move_documents(session, anonymous_owner, owner)
            return moved

        return await self._run(work)


def _signup_opened(session: Session) -> bool:
    return server_settings.setting(session, SIGNUP_OPEN) == "true"


def _user_by_email(session: Session, email: object) -> User:
    user = users.user_by_email(session, normalized_email(email))
    if user is None:
        raise NotAllowed(f"No account has the email {str(email).strip().lower()}.")
    return user


def temporary_password() -> str:
    """A one-time password an admin hands over (72 random bits; its user must change it)."""
    return secrets.token_urlsafe(12)
