"""Accounts: sign-up and sign-in, sessions, admins, quotas, personal API keys, share links, claiming.

Plain Python over the database (no Reflex). Every secret handed out (session token, API key, share
token) is 256 random bits shown once and stored only as its SHA-256 digest; passwords are hashed
with Argon2id. A signed-in user owns conversations as owner_id "user:<id>" (`User.owner_id`), so
every query already scoped by owner id works unchanged for accounts.

For the state layer (Reflex 0.10.1): a handler finds the signed-in user from the websocket
handshake's Cookie header, which Reflex keeps server-side as `self.router.headers.cookie` (it
never sends it to the browser):

    user = await get_accounts().user_for_cookie_header(self.router.headers.cookie)

Reflex reads that header once per socket connection (reflex/app.py, `_build_static_router_data`)
and copies it into every event, so it is not refreshed per event; sign-in and sign-out are full-page
form posts, so the page's next socket carries the new cookie. The database is read on every call,
so an ended session or a disabled user is None from the next event on. When it is None (in any mode
but "none"), the handler must touch no data, clear what it shows of the user, and
`return rx.redirect("/login?error=signed_out")`.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from limits import RateLimitItem, parse, storage, strategies
from sqlalchemy import Engine, delete, func, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from chatbot_app.config import Settings
from chatbot_app.services.chat_service import ConversationNotFound
from chatbot_app.services.validation import is_conversation_id, is_identity
from chatbot_app.storage import conversations as store
from chatbot_app.storage.database import Database
from chatbot_app.storage.models import (
    ApiKey,
    Conversation,
    DailyUsage,
    MessageStatus,
    PromptPreset,
    ShareLink,
    User,
    UserRole,
    UserSession,
    utcnow,
)

R = TypeVar("R")

SESSION_COOKIE = "chatbot_session"
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
    "disabled": "This account is disabled. Ask an admin to enable it.",
    "signup_closed": "Sign-up is closed on this server. Ask an admin for an account.",
    "email_taken": "An account with this email already exists. Sign in instead.",
    "bad_email": "Enter a valid email address.",
    "weak_password": f"Use a password of {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters.",
    "method_off": "This way of signing in is not enabled on this server.",
    "oidc_failed": "Single sign-on did not complete. Try again.",
    "oidc_domain": "Your email address's domain is not allowed to sign in here.",
    "signed_out": "Your session has ended. Sign in again.",
}


class AuthError(Exception):
    """A refused sign-in, sign-up or account action; `code` is a key of AUTH_MESSAGES."""

    def __init__(self, code: str) -> None:
        super().__init__(AUTH_MESSAGES[code])
        self.code = code


class NotAllowed(Exception):
    """An account action the caller may not take (not an admin, or the last admin)."""


class QuotaExceeded(Exception):
    """The user has spent the day's tokens: nothing may be sent to the provider."""


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


def session_token(cookie_header: str | None) -> str | None:
    """The session token in a raw Cookie header (as Reflex keeps it: `self.router.headers.cookie`)."""
    for pair in (cookie_header or "").split(";"):
        name, _, value = pair.strip().partition("=")
        if name == SESSION_COOKIE and value:
            return value.strip('"')
    return None


def normalized_email(raw: object) -> str:
    email = raw.strip().lower() if isinstance(raw, str) else ""
    if len(email) > 320 or not _EMAIL.fullmatch(email):
        raise AuthError("bad_email")
    return email


def _aware(moment: datetime) -> datetime:
    """Stored times are UTC; SQLite gives them back without a zone."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


class SignInThrottle:
    """Failed sign-ins counted per account and per client address (moving windows, `limits`).

    In Redis when REFLEX_REDIS_URL is set, so that every backend worker counts together.
    """

    def __init__(
        self,
        storage_uri: str = "memory://",
        per_account: str = "10/15 minutes",
        per_address: str = "30/15 minutes",
        key_prefix: str = "chatbot_signin",
    ) -> None:
        options = {"key_prefix": key_prefix} if storage_uri.startswith("redis") else {}
        self.limiter = strategies.MovingWindowRateLimiter(storage.storage_from_string(storage_uri, **options))
        self.per_account: RateLimitItem = parse(per_account)
        self.per_address: RateLimitItem = parse(per_address)

    def allowed(self, email: str, address: str) -> bool:
        return self.limiter.test(self.per_account, "account", email) and self.limiter.test(
            self.per_address, "address", address
        )

    def failed(self, email: str, address: str) -> None:
        self.limiter.hit(self.per_account, "account", email)
        self.limiter.hit(self.per_address, "address", address)


class Accounts:
    """Everything about users, each call one transaction off the event loop."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        throttle: SignInThrottle | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.db = Database(engine)
        self.dialect = engine.dialect.name
        self.throttle = throttle or SignInThrottle(settings.redis_url or "memory://")
        self.clock = clock
        self.hasher = PasswordHasher()  # Argon2id with the library's current recommended costs
        # Verified against when the email is unknown, so that both refusals take the same time.
        self._decoy_hash = self.hasher.hash(secrets.token_urlsafe(16))

    async def _run(self, work: Callable[[Session], R]) -> R:
        return await self.db.run(work)

    # --- Local accounts ------------------------------------------------------------------------

    def _check_password(self, password: object) -> str:
        if not isinstance(password, str) or not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
            raise AuthError("weak_password")
        return password

    async def sign_up(self, email: object, password: object) -> User:
        """A new local account; the first account on the server becomes an admin."""
        if "local" not in self.settings.auth_methods:
            raise AuthError("method_off")
        if not self.settings.allow_signup:
            raise AuthError("signup_closed")
        address = normalized_email(email)
        password_hash = self.hasher.hash(self._check_password(password))

        def work(session: Session) -> User:
            if session.exec(select(User.id).where(User.email == address)).first() is not None:
                raise AuthError("email_taken")
            return self._new_user(session, email=address, password_hash=password_hash)

        return await self._run(work)

    def _new_user(self, session: Session, **fields: Any) -> User:
        first = session.exec(select(func.count()).select_from(User)).one() == 0
        user = User(role=UserRole.ADMIN if first else UserRole.USER, created_at=self.clock(), **fields)
        session.add(user)
        session.flush()
        return user

    async def sign_in(self, email: object, password: object, client_address: str) -> User:
        """The user with this email and password. Unknown email and wrong password raise the same error."""
        if "local" not in self.settings.auth_methods:
            raise AuthError("method_off")
        address = email.strip().lower()[:320] if isinstance(email, str) else ""
        password = password if isinstance(password, str) else ""

        def work(session: Session) -> User:
            if not self.throttle.allowed(address, client_address):
                raise AuthError("throttled")
            user = session.exec(select(User).where(User.email == address)).first()
            stored = user.password_hash if user is not None and user.password_hash else self._decoy_hash
            try:
                self.hasher.verify(stored, password[:MAX_PASSWORD_CHARS])
                verified = user is not None and user.password_hash is not None
            except (VerificationError, InvalidHashError):
                verified = False
            if not verified or user is None:
                self.throttle.failed(address, client_address)
                raise AuthError("invalid")
            if user.disabled:
                raise AuthError("disabled")
            if self.hasher.check_needs_rehash(stored):
                user.password_hash = self.hasher.hash(password)
            return user

        return await self._run(work)

    async def change_password(self, user_id: int, current: object, new: object) -> None:
        new_password = self._check_password(new)

        def work(session: Session) -> None:
            user = session.get(User, user_id)
            if user is None or user.password_hash is None:
                raise AuthError("invalid")
            try:
                self.hasher.verify(user.password_hash, current if isinstance(current, str) else "")
            except (VerificationError, InvalidHashError):
                raise AuthError("invalid") from None
            user.password_hash = self.hasher.hash(new_password)

        await self._run(work)

    # --- Single sign-on ------------------------------------------------------------------------

    async def oidc_user(self, issuer: str, subject: str, email: str | None) -> User:
        """The user for this (issuer, sub) pair, created on first sign-in. The caller checked the allowlist."""

        def work(session: Session) -> User:
            user = session.exec(select(User).where(User.oidc_issuer == issuer, User.oidc_subject == subject)).first()
            if user is None:
                # An email already used by another account is not linked: that would hand it over.
                taken = email is None or session.exec(select(User.id).where(User.email == email)).first() is not None
                user = self._new_user(session, email=None if taken else email, oidc_issuer=issuer, oidc_subject=subject)
            if user.disabled:
                raise AuthError("disabled")
            return user

        return await self._run(work)

    # --- Sessions ------------------------------------------------------------------------------

    async def start_session(self, user: User) -> str:
        """A new session for `user`; the returned token goes into the cookie and nowhere else."""
        token = secrets.token_urlsafe(32)
        now = self.clock()
        row = UserSession(
            user_id=user.id,  # type: ignore[arg-type]
            token_hash=token_digest(token),
            created_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(days=self.settings.session_days),
        )
        await self._run(lambda session: session.add(row))
        return token

    async def user_for_session(self, token: str | None) -> User | None:
        """The signed-in user, read from the database on every call (so a disabled user is out at once).

        None for a missing, unknown, expired or ended session, or a disabled user. Use slides the expiry.
        """
        if not token:
            return None
        digest, now = token_digest(token), self.clock()

        def work(session: Session) -> User | None:
            found = session.exec(
                select(UserSession, User)
                .join(User, col(User.id) == col(UserSession.user_id))
                .where(UserSession.token_hash == digest)
            ).first()
            if found is None:
                return None
            row, user = found
            if _aware(row.expires_at) <= now:
                session.delete(row)
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
        return await self.user_for_session(session_token(cookie_header))

    async def end_session(self, token: str | None) -> None:
        """Sign out: this session only."""
        if token:
            digest = token_digest(token)
            await self._run(lambda session: session.exec(_delete_sessions(UserSession.token_hash == digest)))

    async def end_all_sessions(self, user_id: int) -> None:
        """Sign out everywhere: every session of the user."""
        await self._run(lambda session: session.exec(_delete_sessions(UserSession.user_id == user_id)))

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
        await self._run(lambda session: session.add(row))
        return row, key

    async def api_keys(self, user_id: int) -> list[ApiKey]:
        return await self._run(
            lambda session: list(
                session.exec(select(ApiKey).where(ApiKey.user_id == user_id).order_by(col(ApiKey.id))).all()
            )
        )

    async def revoke_api_key(self, user_id: int, key_id: int) -> bool:
        """Revoke one of the user's own keys; False if it is not theirs (or unknown)."""

        def work(session: Session) -> bool:
            key = session.get(ApiKey, key_id)
            if key is None or key.user_id != user_id:
                return False
            key.revoked = True
            return True

        return await self._run(work)

    async def user_for_api_key(self, key: str) -> User | None:
        """The enabled user a personal key belongs to; None for unknown, revoked or disabled."""
        if not key.startswith(API_KEY_PREFIX):
            return None
        digest = token_digest(key)

        def work(session: Session) -> User | None:
            found = session.exec(
                select(ApiKey, User).join(User, col(User.id) == col(ApiKey.user_id)).where(ApiKey.key_hash == digest)
            ).first()
            if found is None or found[0].revoked or found[1].disabled:
                return None
            return found[1]

        return await self._run(work)

    # --- Admins --------------------------------------------------------------------------------

    async def _as_admin(self, actor_id: int, work: Callable[[Session], R]) -> R:
        """Run `work` only if `actor_id` is, right now, an enabled admin."""

        def checked(session: Session) -> R:
            actor = session.get(User, actor_id)
            if actor is None or actor.disabled or not actor.is_admin:
                raise NotAllowed("Only an admin can do this.")
            return work(session)

        return await self._run(checked)

    async def list_users(self, actor_id: int) -> list[User]:
        return await self._as_admin(
            actor_id, lambda session: list(session.exec(select(User).order_by(col(User.id))).all())
        )

    def _target(self, session: Session, user_id: int) -> User:
        user = session.get(User, user_id)
        if user is None:
            raise NotAllowed("No such user.")
        return user

    def _keep_an_admin(self, session: Session, user: User) -> None:
        others = session.exec(
            select(func.count())
            .select_from(User)
            .where(User.role == UserRole.ADMIN, col(User.disabled).is_(False), User.id != user.id)
        ).one()
        if user.is_admin and not user.disabled and others == 0:
            raise NotAllowed("At least one enabled admin must remain.")

    async def set_disabled(self, actor_id: int, user_id: int, disabled: bool) -> None:
        """Disable (every session stops at once: each use reads the flag) or enable a user."""

        def work(session: Session) -> None:
            user = self._target(session, user_id)
            if disabled:
                self._keep_an_admin(session, user)
            user.disabled = disabled

        await self._as_admin(actor_id, work)

    async def set_admin(self, actor_id: int, user_id: int, admin: bool) -> None:
        def work(session: Session) -> None:
            user = self._target(session, user_id)
            if not admin:
                self._keep_an_admin(session, user)
            user.role = UserRole.ADMIN if admin else UserRole.USER

        await self._as_admin(actor_id, work)

    async def reset_password(self, actor_id: int, user_id: int) -> str:
        """A new temporary password for the user (returned once, to show once); their sessions end."""
        temporary = secrets.token_urlsafe(12)
        password_hash = self.hasher.hash(temporary)

        def work(session: Session) -> None:
            user = self._target(session, user_id)
            if user.email is None:
                raise NotAllowed("This user signs in with single sign-on and has no password.")
            user.password_hash = password_hash
            session.exec(_delete_sessions(UserSession.user_id == user_id))

        await self._as_admin(actor_id, work)
        return temporary

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
            actor = session.get(User, actor_id)
            if actor is None or actor.disabled:
                raise NotAllowed("Sign in to see usage.")
            wanted = user_id if actor.is_admin else actor_id
            query = (
                select(DailyUsage, User.email)
                .join(User, col(User.id) == col(DailyUsage.user_id))
                .where(DailyUsage.day >= since)
                .order_by(col(DailyUsage.day).desc(), col(DailyUsage.user_id), col(DailyUsage.model))
            )
            if wanted is not None:
                query = query.where(DailyUsage.user_id == wanted)
            return [
                UsageRow(u.day, u.user_id, email, u.model, u.messages, u.prompt_tokens, u.completion_tokens)
                for u, email in session.exec(query).all()
            ]

        return await self._run(work)

    # --- Quotas --------------------------------------------------------------------------------

    async def check_quota(self, user_id: int) -> None:
        """Raise QuotaExceeded (with the message to show) if the user spent today's tokens."""
        today = self.clock().date()

        def work(session: Session) -> tuple[int | None, int]:
            user = session.get(User, user_id)
            limit = self.settings.daily_tokens_per_user
            if user is not None and user.daily_token_quota is not None:
                limit = user.daily_token_quota
            if limit is None:
                return None, 0
            spent = session.exec(
                select(func.coalesce(func.sum(DailyUsage.prompt_tokens + DailyUsage.completion_tokens), 0)).where(
                    DailyUsage.user_id == user_id, DailyUsage.day == today
                )
            ).one()
            return limit, int(spent)

        limit, spent = await self._run(work)
        if limit is not None and spent >= limit:
            raise QuotaExceeded(
                f"You have used today's {limit:,} tokens. The quota starts again at midnight UTC, "
                "or an admin can raise it."
            )

    async def check_quota_for_owner(self, owner_id: str) -> None:
        """check_quota for a signed-in owner id; anonymous and operator-key owners have no quota."""
        if (user_id := user_id_from_owner(owner_id)) is not None:
            await self.check_quota(user_id)

    async def record_usage(self, user_id: int, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        """Add one message and its tokens to today's row for (user, model); one statement, safe under races."""
        values = {
            "user_id": user_id,
            "day": self.clock().date(),
            "model": model[:128],
            "messages": 1,
            "prompt_tokens": max(0, prompt_tokens),
            "completion_tokens": max(0, completion_tokens),
        }
        insert = (postgresql if self.dialect == "postgresql" else sqlite).insert(DailyUsage).values(**values)
        table = DailyUsage.__table__.c  # type: ignore[attr-defined]
        statement = insert.on_conflict_do_update(
            index_elements=["user_id", "day", "model"],
            set_={
                "messages": table.messages + 1,
                "prompt_tokens": table.prompt_tokens + insert.excluded.prompt_tokens,
                "completion_tokens": table.completion_tokens + insert.excluded.completion_tokens,
            },
        )
        await self._run(lambda session: session.exec(statement))  # type: ignore[call-overload]

    async def record_usage_for_owner(
        self, owner_id: str, model: str, prompt_tokens: int, completion_tokens: int
    ) -> None:
        """record_usage for a signed-in owner id; anonymous and operator-key owners are not counted."""
        if (user_id := user_id_from_owner(owner_id)) is not None:
            await self.record_usage(user_id, model, prompt_tokens, completion_tokens)

    # --- Share links ---------------------------------------------------------------------------

    async def create_share(self, owner_id: str, conversation_id: str) -> str:
        """A read-only snapshot of the conversation as it is now; returns the link's token (shown once).

        The snapshot holds the title and the finished messages, nothing about the account.
        """
        token = secrets.token_urlsafe(32)

        def work(session: Session) -> None:
            conversation = (
                store.get_conversation(session, conversation_id, owner_id)
                if is_conversation_id(conversation_id)
                else None
            )
            if conversation is None:
                raise ConversationNotFound(conversation_id)
            messages = [
                {"role": m.role, "content": m.content}
                for m in store.latest_messages(session, conversation.id)
                if m.content and m.status != MessageStatus.ERROR
            ]
            snapshot = {"title": conversation.title, "created_at": self.clock().isoformat(), "messages": messages}
            session.add(
                ShareLink(
                    owner_id=owner_id,
                    conversation_id=conversation.id,
                    token_hash=token_digest(token),
                    snapshot=json.dumps(snapshot, ensure_ascii=False),
                    created_at=self.clock(),
                )
            )

        await self._run(work)
        return token

    async def shared_snapshot(self, token: str) -> dict[str, Any] | None:
        """The snapshot behind a share token; None for unknown and revoked links alike."""
        digest = token_digest(token)

        def work(session: Session) -> str | None:
            link = session.exec(select(ShareLink).where(ShareLink.token_hash == digest)).first()
            return None if link is None or link.revoked else link.snapshot

        snapshot = await self._run(work)
        return None if snapshot is None else json.loads(snapshot)

    async def shares(self, owner_id: str, conversation_id: str) -> list[ShareLink]:
        """The owner's live links to one conversation (for a "revoke" list)."""
        return await self._run(
            lambda session: list(
                session.exec(
                    select(ShareLink).where(
                        ShareLink.owner_id == owner_id,
                        ShareLink.conversation_id == conversation_id,
                        col(ShareLink.revoked).is_(False),
                    )
                ).all()
            )
        )

    async def revoke_share(self, owner_id: str, share_id: int) -> bool:
        """Revoke one of the owner's links; False if it is not theirs (or unknown)."""

        def work(session: Session) -> bool:
            link = session.get(ShareLink, share_id)
            if link is None or link.owner_id != owner_id:
                return False
            link.revoked = True
            return True

        return await self._run(work)

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
            moved = session.exec(  # type: ignore[call-overload]
                update(Conversation).where(col(Conversation.owner_id) == anonymous_owner).values(owner_id=owner)
            ).rowcount
            taken = select(PromptPreset.name).where(PromptPreset.owner_id == owner)
            session.exec(  # type: ignore[call-overload]
                update(PromptPreset)
                .where(col(PromptPreset.owner_id) == anonymous_owner, col(PromptPreset.name).not_in(taken))
                .values(owner_id=owner)
            )
            session.exec(  # type: ignore[call-overload]
                update(ShareLink).where(col(ShareLink.owner_id) == anonymous_owner).values(owner_id=owner)
            )
            return int(moved)

        return await self._run(work)


def _delete_sessions(condition: Any) -> Any:
    return delete(UserSession).where(condition)
