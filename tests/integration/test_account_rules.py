"""The account rules that a hostile or unlucky moment could break, on both databases, each reproducing
what the outside review found:

- concurrent first sign-ups: one and only one becomes the admin; sign-up is closed after it;
- two admins demoting each other at once: one enabled admin always remains;
- Argon2 runs on threads of its own, never on the event loop or in the database's thread pool;
- sign-ups are throttled per address and overall; with Redis down, the throttles count in the process;
- an admin's reset revokes the user's personal API keys, and a temporary password must be changed;
- an OIDC email is stored only when the provider verified it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import Engine, event, text
from sqlmodel import Session, select

from chatbot_app.config import Settings, load_settings
from chatbot_app.services.accounts import Accounts, AuthError, NotAllowed
from chatbot_app.services.auth_limits import SignInThrottle, SignUpThrottle
from chatbot_app.services.passwords import PasswordHashing
from chatbot_app.storage.models import ApiKey, User, UserRole
from tests.e2e.live_app import free_port

PASSWORD = "correct horse battery"


def local(settings: Settings, **changes: Any) -> Settings:
    return settings.model_copy(update=dict(auth_methods=("local",), **changes))


@pytest.fixture
def accounts(settings: Settings, engine: Engine) -> Iterator[Accounts]:
    made = Accounts(local(settings), engine)
    yield made
    made.passwords.close()


def users(engine: Engine) -> list[User]:
    with Session(engine) as session:
        return list(session.exec(select(User).order_by(User.id)).all())


class WriteGate:
    """Holds the database's writes back (another connection holds the lock they need) until `open()`,
    and tells when `count` transactions have reached a statement that waits for it.

    This makes "at the same moment" exact: every transaction has read what it reads before any writes.
    """

    def __init__(self, engine: Engine, waits_at: Callable[[str], bool]) -> None:
        self.engine, self.waits_at = engine, waits_at
        self.arrived = 0
        self.condition = threading.Condition()
        self._holder: Any = None

    def _on_statement(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if self.waits_at(" ".join(statement.split()).upper()):
            with self.condition:
                self.arrived += 1
                self.condition.notify_all()

    def close(self) -> None:
        """Take the lock every write needs, from a connection of its own."""
        event.listen(self.engine, "before_cursor_execute", self._on_statement)
        url = self.engine.url
        if url.get_backend_name() == "sqlite":
            self._holder = sqlite3.connect(url.database or "", isolation_level=None)
            self._holder.execute("BEGIN IMMEDIATE")  # SQLite's one write lock; readers go on
        else:
            self._holder = self.engine.connect()
            self._holder.execute(text("LOCK TABLE app_user IN EXCLUSIVE MODE"))  # plain reads go on

    async def wait_for(self, count: int, timeout_s: float = 30) -> None:
        def wait() -> bool:
            with self.condition:
                return self.condition.wait_for(lambda: self.arrived >= count, timeout_s)

        assert await asyncio.to_thread(wait), f"only {self.arrived} of {count} transactions reached the lock"

    def open(self) -> None:
        if self.engine.url.get_backend_name() == "sqlite":
            self._holder.execute("COMMIT")
        else:
            self._holder.rollback()
        self._holder.close()
        event.remove(self.engine, "before_cursor_execute", self._on_statement)


async def all_at_once(gate: WriteGate, calls: list[Callable[[], Awaitable[Any]]]) -> list[Any]:
    """Run `calls` together, let them all reach the gate, then open it; their results or exceptions."""
    gate.close()
    try:
        tasks = [asyncio.create_task(call()) for call in calls]
        await gate.wait_for(len(calls))
    finally:
        gate.open()
    return await asyncio.gather(*tasks, return_exceptions=True)


# --- the first account --------------------------------------------------------------------------------


async def test_of_concurrent_first_sign_ups_one_and_only_one_becomes_the_admin(
    accounts: Accounts, engine: Engine
) -> None:
    gate = WriteGate(engine, lambda statement: statement.startswith("INSERT INTO APP_USER"))
    emails = [f"first{n}@example.com" for n in range(4)]
    results = await all_at_once(gate, [lambda e=e: accounts.sign_up(e, PASSWORD) for e in emails])

    made = [r for r in results if isinstance(r, User)]
    refused = [r for r in results if not isinstance(r, User)]
    assert len(made) == 1 and made[0].is_admin
    assert [getattr(r, "code", repr(r)) for r in refused] == ["signup_closed"] * 3
    assert [(u.email, u.role) for u in users(engine)] == [(made[0].email, UserRole.ADMIN)]


async def test_sign_up_is_closed_after_the_first_account_until_an_admin_opens_it(
    accounts: Accounts, settings: Settings, engine: Engine
) -> None:
    assert await accounts.signup_open()  # no account yet: the first may sign up
    admin = await accounts.sign_up("admin@example.com", PASSWORD)
    assert admin.is_admin and not await accounts.signup_open()
    with pytest.raises(AuthError) as closed:
        await accounts.sign_up("bob@example.com", PASSWORD)
    assert closed.value.code == "signup_closed"

    # The admin makes an account, with a one-time password its user must change first.
    bob, temporary = await accounts.create_user(admin.id, "Bob@Example.com")  # type: ignore[arg-type]
    assert (bob.email, bob.is_admin, bob.must_change_password) == ("bob@example.com", False, True)
    assert (await accounts.sign_in("bob@example.com", temporary, "10.0.0.1")).must_change_password
    with pytest.raises(NotAllowed, match="already exists"):
        await accounts.create_user(admin.id, "bob@example.com")  # type: ignore[arg-type]
    with pytest.raises(NotAllowed):
        await accounts.create_user(bob.id, "eve@example.com")  # type: ignore[arg-type]

    # The admin opens sign-up to anyone, and closes it again.
    await accounts.set_signup_open(admin.id, True)  # type: ignore[arg-type]
    assert not (await accounts.sign_up("cy@example.com", PASSWORD)).is_admin
    await accounts.set_signup_open(admin.id, False)  # type: ignore[arg-type]
    with pytest.raises(AuthError, match="Sign-up is closed"):
        await accounts.sign_up("dee@example.com", PASSWORD)
    with pytest.raises(NotAllowed):
        await accounts.set_signup_open(bob.id, True)  # type: ignore[arg-type]

    # CHATBOT_ALLOW_SIGNUP=true opens it whatever the admins chose.
    accounts.settings = local(settings, allow_signup=True)
    assert (await accounts.sign_up("dee@example.com", PASSWORD)).email == "dee@example.com"
    assert sum(u.is_admin for u in users(engine)) == 1


def test_sign_up_is_closed_by_default() -> None:
    assert not Settings().allow_signup
    assert not load_settings({"CHATBOT_AUTH": "local"}).allow_signup
    assert load_settings({"CHATBOT_AUTH": "local", "CHATBOT_ALLOW_SIGNUP": "true"}).allow_signup


# --- the last admin -----------------------------------------------------------------------------------


async def test_two_admins_demoting_each_other_at_once_leave_one_admin(accounts: Accounts, engine: Engine) -> None:
    accounts.settings = accounts.settings.model_copy(update=dict(allow_signup=True))
    first = await accounts.sign_up("ann@example.com", PASSWORD)
    second = await accounts.sign_up("bea@example.com", PASSWORD)
    await accounts.set_admin(first.id, second.id, True)  # type: ignore[arg-type]

    def waits(statement: str) -> bool:  # the write (or, once fixed, the lock taken before reading)
        return statement.startswith("UPDATE APP_USER") or "FOR UPDATE" in statement

    gate = WriteGate(engine, waits)
    results = await all_at_once(
        gate,
        [
            lambda: accounts.set_admin(first.id, second.id, False),  # type: ignore[arg-type]
            lambda: accounts.set_disabled(second.id, first.id, True),  # type: ignore[arg-type]
        ],
    )

    assert sum(isinstance(r, NotAllowed) for r in results) == 1, results
    enabled_admins = [u.email for u in users(engine) if u.is_admin and not u.disabled]
    assert len(enabled_admins) == 1


# --- Argon2's threads ---------------------------------------------------------------------------------


class RecordingHasher(PasswordHasher):
    """argon2-cffi's own hasher, noting which thread each hash and check ran on."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[str] = []

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        self.threads.append(threading.current_thread().name)
        return super().hash(password, salt=salt)

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.threads.append(threading.current_thread().name)
        return super().verify(hash, password)


async def test_argon2_runs_on_its_own_threads_never_the_loop_or_the_database_pool(
    settings: Settings, engine: Engine
) -> None:
    hasher = RecordingHasher()
    accounts = Accounts(local(settings, allow_signup=True), engine, passwords=PasswordHashing(hasher=hasher))
    hasher.threads.clear()  # the decoy hash, made when the service is built (at start-up, on a thread)
    user = await accounts.sign_up("ada@example.com", PASSWORD)
    await accounts.sign_in("ada@example.com", PASSWORD, "10.0.0.1")
    with pytest.raises(AuthError):
        await accounts.sign_in("ada@example.com", "wrong password", "10.0.0.1")
    with pytest.raises(AuthError):
        await accounts.sign_in("nobody@example.com", "wrong password", "10.0.0.1")  # the decoy check
    await accounts.change_password(user.id, PASSWORD, "another good password")  # type: ignore[arg-type]
    admin = user
    await accounts.reset_password(admin.id, user.id)  # type: ignore[arg-type]

    assert len(hasher.threads) == 7  # sign-up, three sign-ins, the change (check and hash), the reset
    assert all(name.startswith("argon2") for name in hasher.threads), hasher.threads
    accounts.passwords.close()


async def test_password_work_past_its_queue_is_refused_at_once(settings: Settings, engine: Engine) -> None:
    passwords = PasswordHashing(workers=1, max_waiting=1)
    accounts = Accounts(local(settings, allow_signup=True), engine, passwords=passwords)
    await accounts.sign_up("ada@example.com", PASSWORD)
    results = await asyncio.gather(
        *(accounts.sign_in("ada@example.com", PASSWORD, f"10.0.0.{n}") for n in range(6)), return_exceptions=True
    )
    codes = sorted(getattr(r, "code", "ok") for r in results)
    assert codes.count("busy") >= 1 and codes.count("ok") >= 2, codes
    assert "Try again in a moment" in str(next(r for r in results if isinstance(r, AuthError)))
    passwords.close()


# --- throttles ----------------------------------------------------------------------------------------


async def test_sign_up_is_throttled_per_address_and_overall(settings: Settings, engine: Engine) -> None:
    throttle = SignUpThrottle(per_address="2/hour", overall="3/hour")
    accounts = Accounts(local(settings, allow_signup=True), engine, signup_throttle=throttle)

    async def attempt(email: str, address: str) -> str:
        try:
            await accounts.sign_up(email, PASSWORD, address)
        except AuthError as refused:
            return refused.code
        return "ok"

    assert [await attempt(f"a{n}@example.com", "203.0.113.9") for n in range(3)] == ["ok", "ok", "signup_throttled"]
    assert len(users(engine)) == 2
    assert await attempt("b0@example.com", "198.51.100.7") == "ok"  # another address has its own budget
    assert await attempt("b1@example.com", "198.51.100.8") == "signup_throttled"  # but everyone shares 3
    assert "Too many accounts" in AuthError("signup_throttled").args[0]
    accounts.passwords.close()


async def test_while_redis_is_down_sign_in_works_and_the_throttles_count_in_the_process(
    settings: Settings, engine: Engine
) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}"  # nothing listens there
    throttle = SignInThrottle(nowhere, per_account="3/15 minutes", per_address="30/15 minutes")
    accounts = Accounts(
        local(settings, redis_url=nowhere, allow_signup=True),
        engine,
        throttle=throttle,
        signup_throttle=SignUpThrottle(nowhere, per_address="2/hour"),
    )
    await accounts.sign_up("ada@example.com", PASSWORD, "10.0.0.1")
    assert (await accounts.sign_in("ada@example.com", PASSWORD, "10.0.0.1")).email == "ada@example.com"
    for _ in range(3):
        with pytest.raises(AuthError, match="Wrong email"):
            await accounts.sign_in("ada@example.com", "wrong password", "10.0.0.1")
    with pytest.raises(AuthError, match="Too many sign-in attempts"):  # counted in the process meanwhile
        await accounts.sign_in("ada@example.com", PASSWORD, "10.0.0.1")
    await accounts.sign_up("bob@example.com", PASSWORD, "10.0.0.1")
    with pytest.raises(AuthError) as throttled:
        await accounts.sign_up("cy@example.com", PASSWORD, "10.0.0.1")
    assert throttled.value.code == "signup_throttled"
    accounts.passwords.close()


async def test_the_throttles_count_an_ipv6_client_per_64(settings: Settings, engine: Engine) -> None:
    throttle = SignInThrottle(per_account="100/15 minutes", per_address="2/15 minutes")
    accounts = Accounts(local(settings, allow_signup=True), engine, throttle=throttle)
    for host in ("2001:db8:1:2::1", "2001:db8:1:2::2"):
        with pytest.raises(AuthError, match="Wrong email"):
            await accounts.sign_in("x@example.com", "wrong password", host)
    with pytest.raises(AuthError, match="Too many"):
        await accounts.sign_in("x@example.com", "wrong password", "2001:db8:1:2::3")
    accounts.passwords.close()


# --- passwords an admin knew ----------------------------------------------------------------------------


async def test_a_reset_revokes_the_users_api_keys_and_its_password_must_be_changed(
    accounts: Accounts, engine: Engine
) -> None:
    admin = await accounts.sign_up("admin@example.com", PASSWORD)
    user, temporary = await accounts.create_user(admin.id, "ada@example.com")  # type: ignore[arg-type]
    assert user.id is not None and admin.id is not None
    await accounts.change_password(user.id, temporary, "ada's own password")
    _, key = await accounts.create_api_key(user.id, "laptop")
    assert await accounts.user_for_api_key(key) is not None

    temporary = await accounts.reset_password(admin.id, user.id)
    assert await accounts.user_for_api_key(key) is None  # whoever knew the old password may have made it
    with Session(engine) as session:
        assert session.exec(select(ApiKey.revoked).where(ApiKey.user_id == user.id)).all() == [True]
    signed_in = await accounts.sign_in("ada@example.com", temporary, "10.0.0.1")
    assert signed_in.must_change_password

    with pytest.raises(AuthError) as same:
        await accounts.change_password(user.id, temporary, temporary)
    assert same.value.code == "same_password"
    await accounts.change_password(user.id, temporary, "ada's newest password")
    assert not (await accounts.sign_in("ada@example.com", "ada's newest password", "10.0.0.1")).must_change_password


async def test_changing_a_password_needs_the_current_one_and_ends_the_other_sessions(accounts: Accounts) -> None:
    user = await accounts.sign_up("ada@example.com", PASSWORD)
    assert user.id is not None
    here, phone, laptop = [await accounts.start_session(user) for _ in range(3)]

    for _ in range(3):
        with pytest.raises(AuthError) as wrong:
            await accounts.change_password(user.id, "a guess at it", "a new password", here, "10.0.0.1")
        assert wrong.value.code == "wrong_current_password"
    assert await accounts.user_for_session(phone) is not None  # nothing changed

    await accounts.change_password(user.id, PASSWORD, "a new password", here, "10.0.0.1")
    assert await accounts.user_for_session(here) is not None
    assert await accounts.user_for_session(phone) is None and await accounts.user_for_session(laptop) is None
    with pytest.raises(AuthError):
        await accounts.sign_in("ada@example.com", PASSWORD, "10.0.0.2")
    assert (await accounts.sign_in("ada@example.com", "a new password", "10.0.0.2")).id == user.id


async def test_wrong_current_passwords_are_throttled(settings: Settings, engine: Engine) -> None:
    throttle = SignInThrottle(per_account="2/15 minutes")
    accounts = Accounts(local(settings, allow_signup=True), engine, throttle=throttle)
    user = await accounts.sign_up("ada@example.com", PASSWORD)
    for _ in range(2):
        with pytest.raises(AuthError, match="not right"):
            await accounts.change_password(user.id, "guess", "a new password")  # type: ignore[arg-type]
    with pytest.raises(AuthError, match="Too many"):
        await accounts.change_password(user.id, PASSWORD, "a new password")  # type: ignore[arg-type]
    accounts.passwords.close()


# --- single sign-on ------------------------------------------------------------------------------------


async def test_an_unverified_oidc_email_is_not_stored_and_its_owner_can_still_sign_up(
    accounts: Accounts,
) -> None:
    accounts.settings = accounts.settings.model_copy(update=dict(allow_signup=True))
    await accounts.sign_up("admin@example.com", PASSWORD)
    impostor = await accounts.oidc_user("https://idp.example", "someone", "ceo@corp.example", email_verified=False)
    assert impostor.email is None
    ceo = await accounts.sign_up("ceo@corp.example", PASSWORD)
    assert ceo.email == "ceo@corp.example"
    verified = await accounts.oidc_user("https://idp.example", "grace", "grace@corp.example", email_verified=True)
    assert verified.email == "grace@corp.example"


# --- the operators' command line --------------------------------------------------------------------------


async def test_operators_create_an_admin_reset_a_password_and_disable_a_user(
    accounts: Accounts, engine: Engine
) -> None:
    admin, temporary = await accounts.operator_create_admin("root@example.com")
    assert admin.is_admin and admin.must_change_password
    assert not await accounts.signup_open()  # the server has its first account now
    user, _ = await accounts.create_user(admin.id, "ada@example.com")  # type: ignore[arg-type]
    session = await accounts.start_session(user)

    again, new_temporary = await accounts.operator_reset_password("ADA@example.com")
    assert again.id == user.id and await accounts.user_for_session(session) is None
    assert (await accounts.sign_in("ada@example.com", new_temporary, "10.0.0.1")).must_change_password

    await accounts.operator_set_disabled("ada@example.com", True)
    with pytest.raises(AuthError, match="disabled"):
        await accounts.sign_in("ada@example.com", new_temporary, "10.0.0.1")
    with pytest.raises(NotAllowed, match="one enabled admin"):
        await accounts.operator_set_disabled("root@example.com", True)
    with pytest.raises(NotAllowed, match="No account"):
        await accounts.operator_reset_password("nobody@example.com")
    with pytest.raises(NotAllowed, match="already exists"):
        await accounts.operator_create_admin("root@example.com")
    assert [u.email for u in await accounts.operator_list_users()] == ["root@example.com", "ada@example.com"]
    assert temporary != new_temporary
