"""services/accounts.py on both databases: sign-up and sign-in, throttling, sessions, admins, personal API
keys and claiming anonymous conversations. (Quotas: test_quota.py; share links: test_shares.py.)
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from chatbot_app.config import Settings
from chatbot_app.services.accounts import SESSION_COOKIE, Accounts, AuthError, NotAllowed
from chatbot_app.services.auth_limits import SignInThrottle
from chatbot_app.services.chat_service import ChatService
from chatbot_app.services.library import ConversationLibrary
from chatbot_app.storage.models import Conversation, PromptPreset, User
from tests.conftest import Clock, skip_or_fail
from tests.replies import run_reply

PASSWORD = "correct horse battery"
ANONYMOUS = "browser-identity-" + "x" * 16


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def accounts(settings: Settings, engine: Engine, clock: Clock) -> Accounts:
    # Sign-up open to anyone: these tests make several users (closed sign-up has tests of its own).
    local = settings.model_copy(update=dict(auth_methods=("local",), allow_signup=True))
    return Accounts(local, engine, SignInThrottle(per_account="3/15 minutes", per_address="5/15 minutes"), clock)


async def test_the_first_account_is_an_admin_and_later_ones_are_not(accounts: Accounts) -> None:
    first = await accounts.sign_up("Ada@Example.com ", PASSWORD)
    second = await accounts.sign_up("bob@example.com", PASSWORD)

    assert (first.email, first.is_admin, second.is_admin) == ("ada@example.com", True, False)
    assert first.owner_id == f"user:{first.id}"
    assert first.password_hash is not None and first.password_hash.startswith("$argon2id$")


@pytest.mark.parametrize(
    ("email", "password", "code"),
    [
        ("not-an-email", PASSWORD, "bad_email"),
        ("a@example.com", "short", "weak_password"),
        ("a@b.co", None, "weak_password"),
    ],
)
async def test_bad_sign_up_input_is_refused_with_its_message(
    accounts: Accounts, engine: Engine, email: str, password: str | None, code: str
) -> None:
    with pytest.raises(AuthError) as refused:
        await accounts.sign_up(email, password)
    assert refused.value.code == code
    with Session(engine) as session:
        assert session.exec(select(User)).all() == []  # and nothing else changed


async def test_sign_up_refuses_a_taken_email_and_a_closed_server(accounts: Accounts) -> None:
    await accounts.sign_up("ada@example.com", PASSWORD)
    with pytest.raises(AuthError, match="already exists"):
        await accounts.sign_up("ADA@example.com", PASSWORD)
    accounts.settings = accounts.settings.model_copy(update=dict(allow_signup=False))
    with pytest.raises(AuthError, match="Sign-up is closed"):
        await accounts.sign_up("new@example.com", PASSWORD)


async def test_sign_in_and_a_wrong_email_looks_like_a_wrong_password(accounts: Accounts) -> None:
    user = await accounts.sign_up("ada@example.com", PASSWORD)

    assert (await accounts.sign_in(" ADA@example.com", PASSWORD, "10.0.0.1")).id == user.id
    with pytest.raises(AuthError) as wrong_password:
        await accounts.sign_in("ada@example.com", "wrong password", "10.0.0.1")
    with pytest.raises(AuthError) as wrong_email:
        await accounts.sign_in("nobody@example.com", PASSWORD, "10.0.0.1")
    assert str(wrong_password.value) == str(wrong_email.value) == "Wrong email or password."


async def test_sign_in_is_throttled_per_account_and_per_address(accounts: Accounts) -> None:
    await accounts.sign_up("ada@example.com", PASSWORD)
    for _ in range(3):
        with pytest.raises(AuthError, match="Wrong email"):
            await accounts.sign_in("ada@example.com", "wrong password", "10.0.0.1")
    # The right password no longer helps for this account, from any address.
    with pytest.raises(AuthError, match="Too many sign-in attempts"):
        await accounts.sign_in("ada@example.com", PASSWORD, "10.0.0.2")

    # Per address: failures spread over other accounts still stop the address.
    for n in range(2):
        with pytest.raises(AuthError, match="Wrong email"):
            await accounts.sign_in(f"guess{n}@example.com", "whatever1", "10.0.0.1")
    with pytest.raises(AuthError, match="Too many"):
        await accounts.sign_in("other@example.com", "whatever1", "10.0.0.1")


async def test_the_throttle_counts_in_redis_so_workers_share_it() -> None:
    prefix = f"test_signin_{uuid.uuid4().hex}"
    first, second = (
        SignInThrottle("redis://127.0.0.1:6379/5", per_account="2/minute", key_prefix=prefix) for _ in range(2)
    )
    try:
        await first.counter._shared.storage.check()  # type: ignore[union-attr]
    except Exception as exc:  # no Redis here
        skip_or_fail(f"Redis is not reachable: {type(exc).__name__}")
    await first.failed("ada@example.com", "10.0.0.1")
    await second.failed("ada@example.com", "10.0.0.1")
    assert not await first.allowed("ada@example.com", "10.0.0.9")
    assert await first.allowed("bob@example.com", "10.0.0.9")
    await first.counter.reset()


async def test_sessions_slide_expire_and_end(accounts: Accounts, clock: Clock) -> None:
    user = await accounts.sign_up("ada@example.com", PASSWORD)
    token = await accounts.start_session(user)
    other = await accounts.start_session(user)

    assert (await accounts.user_for_session(token)).id == user.id  # type: ignore[union-attr]
    header = f'theme=dark; {SESSION_COOKIE}={token}; other="x"'  # as the websocket handshake carries it
    assert (await accounts.user_for_cookie_header(header)).id == user.id  # type: ignore[union-attr]
    assert await accounts.user_for_cookie_header("theme=dark") is None
    assert await accounts.user_for_session("forged") is None
    assert await accounts.user_for_session(None) is None

    clock.now += timedelta(days=29)  # used within 30 days: the expiry slides forward
    assert await accounts.user_for_session(token) is not None
    clock.now += timedelta(days=29)
    assert await accounts.user_for_session(token) is not None
    assert await accounts.user_for_session(other) is None  # unused for 58 days: expired

    await accounts.end_session(token)
    assert await accounts.user_for_session(token) is None


async def test_sign_out_everywhere_and_a_disabled_user_are_out_at_once(accounts: Accounts) -> None:
    admin = await accounts.sign_up("admin@example.com", PASSWORD)
    user = await accounts.sign_up("ada@example.com", PASSWORD)
    phone, laptop = await accounts.start_session(user), await accounts.start_session(user)

    await accounts.set_disabled(admin.id, user.id, True)  # type: ignore[arg-type]
    assert await accounts.user_for_session(phone) is None
    with pytest.raises(AuthError, match="disabled"):
        await accounts.sign_in("ada@example.com", PASSWORD, "10.0.0.1")

    await accounts.set_disabled(admin.id, user.id, False)  # type: ignore[arg-type]
    assert await accounts.user_for_session(laptop) is not None
    await accounts.end_all_sessions(user.id)  # type: ignore[arg-type]
    assert await accounts.user_for_session(phone) is None
    assert await accounts.user_for_session(laptop) is None


async def test_admin_functions_and_their_guards(accounts: Accounts) -> None:
    admin = await accounts.sign_up("admin@example.com", PASSWORD)
    user = await accounts.sign_up("ada@example.com", PASSWORD)
    session = await accounts.start_session(user)
    assert admin.id and user.id

    with pytest.raises(NotAllowed):
        await accounts.list_users(user.id)
    with pytest.raises(NotAllowed, match="one enabled admin"):
        await accounts.set_admin(admin.id, admin.id, False)
    assert [u.email for u in await accounts.list_users(admin.id)] == ["admin@example.com", "ada@example.com"]

    temporary = await accounts.reset_password(admin.id, user.id)
    assert await accounts.user_for_session(session) is None  # a reset ends the user's sessions
    with pytest.raises(AuthError):
        await accounts.sign_in("ada@example.com", PASSWORD, "10.0.0.3")
    assert (await accounts.sign_in("ada@example.com", temporary, "10.0.0.3")).id == user.id
    with pytest.raises(AuthError):
        await accounts.change_password(user.id, "not the temporary one", "my own new password")
    await accounts.change_password(user.id, temporary, "my own new password")
    assert (await accounts.sign_in("ada@example.com", "my own new password", "10.0.0.3")).id == user.id

    await accounts.set_admin(admin.id, user.id, True)
    await accounts.set_admin(user.id, admin.id, False)  # now there is another admin
    with pytest.raises(NotAllowed):
        await accounts.list_users(admin.id)


async def test_personal_api_keys_are_shown_once_stored_hashed_and_revocable(accounts: Accounts) -> None:
    user = await accounts.sign_up("ada@example.com", PASSWORD)
    other = await accounts.sign_up("bob@example.com", PASSWORD)
    assert user.id and other.id
    row, key = await accounts.create_api_key(user.id, "laptop")

    assert key.startswith("cbk_") and key not in row.key_hash and row.prefix == key[:12]
    assert (await accounts.user_for_api_key(key)).id == user.id  # type: ignore[union-attr]
    assert await accounts.user_for_api_key(key + "x") is None
    assert not await accounts.revoke_api_key(other.id, row.id or 0)  # not Bob's to revoke
    assert await accounts.revoke_api_key(user.id, row.id or 0)
    assert await accounts.user_for_api_key(key) is None


async def test_claiming_moves_anonymous_conversations_only_when_asked(
    accounts: Accounts, service: ChatService, engine: Engine
) -> None:
    user = await accounts.sign_up("ada@example.com", PASSWORD)
    assert user.id
    library = ConversationLibrary(engine)
    turn = await service.start_turn(ANONYMOUS, None, "written before signing up")
    await run_reply(service, turn)
    with Session(engine) as session:
        session.add(PromptPreset(owner_id=ANONYMOUS, name="terse", prompt="Be terse."))
        session.add(PromptPreset(owner_id=ANONYMOUS, name="mine", prompt="anonymous version"))
        session.add(PromptPreset(owner_id=user.owner_id, name="mine", prompt="account version"))
        session.commit()

    assert await accounts.claimable(ANONYMOUS) == 1
    assert (await library.page(user.owner_id, 0)).conversations == []  # nothing moves by itself
    assert await accounts.claimable(user.owner_id) == 0  # only anonymous identities can be claimed

    assert await accounts.claim_conversations(ANONYMOUS, user.id) == 1
    assert [c.id for c in (await library.page(user.owner_id, 0)).conversations] == [turn.conversation_id]
    assert (await library.page(ANONYMOUS, 0)).conversations == []
    with Session(engine) as session:
        presets = session.exec(select(PromptPreset.owner_id, PromptPreset.name, PromptPreset.prompt)).all()
        owners = {c.owner_id for c in session.exec(select(Conversation)).all()}
    assert sorted(presets) == sorted(
        [
            (user.owner_id, "terse", "Be terse."),
            (user.owner_id, "mine", "account version"),
            (ANONYMOUS, "mine", "anonymous version"),  # a clash stays behind rather than being lost
        ]
    )
    assert owners == {user.owner_id}


async def test_oidc_users_are_keyed_by_issuer_and_subject(accounts: Accounts) -> None:
    local = await accounts.sign_up("ada@example.com", PASSWORD)
    first = await accounts.oidc_user("https://idp.example", "sub-1", "ada@example.com", True)
    again = await accounts.oidc_user("https://idp.example", "sub-1", "ada@example.com", True)
    elsewhere = await accounts.oidc_user("https://other.example", "sub-1", "grace@example.com", True)

    assert first.id == again.id != local.id  # an email already taken is not linked to a new login
    assert first.email is None and elsewhere.email == "grace@example.com"
