"""The signed-in user as the chat UI shows them: the user menu, claiming anonymous conversations,
and the /account page (own usage, personal API keys, changing the password).

A new key is the one secret shown: it goes straight into an input's value (rx.set_value), never
into a state var, so it is not kept in the state store.
"""

from __future__ import annotations

from typing import Any

import reflex as rx

from chatbot_app.config import get_settings
from chatbot_app.services.accounts import AuthError, UsageRow
from chatbot_app.services.usage_report import UsageChart
from chatbot_app.services.wiring import services
from chatbot_app.state.library import LibraryState
from chatbot_app.state.session import SessionState

#: The read-only input the new key is written into, once.
NEW_KEY_INPUT_ID = "new-api-key"
#: How many days of usage the account and admin pages show.
USAGE_DAYS = 30


def usage_rows(rows: list[UsageRow]) -> list[dict[str, str]]:
    """Usage rows as the tables show them (all text, so one foreach renders them)."""
    return [
        {
            "day": row.day.isoformat(),
            "email": row.email or f"user {row.user_id}",
            "model": row.model,
            "messages": str(row.messages),
            "prompt_tokens": f"{row.prompt_tokens:,}",
            "completion_tokens": f"{row.completion_tokens:,}",
        }
        for row in rows
    ]


def chart_points(chart: UsageChart) -> list[dict[str, str | int]]:
    """One point per day ({"day": "Mar 14", "s0": tokens, ...}): series are keyed by position, since
    Recharts reads a dotted key (a model such as llama-3.1-8b) as a path."""
    return [
        {"day": f"{day:%b} {day.day}", **{f"s{n}": spent for n, spent in enumerate(tokens)}}
        for day, tokens in zip(chart.days, chart.tokens, strict=True)
    ]


def chart_series(chart: UsageChart) -> list[dict[str, str]]:
    """Each series' key in the points, and its model's name."""
    return [{"key": f"s{n}", "name": name} for n, name in enumerate(chart.series)]


class AccountState(SessionState):
    # "" with accounts off (then no user menu is shown).
    email: str = ""
    is_admin: bool = False
    # Conversations this browser's anonymous identity holds, offered to move into the account.
    claimable: int = 0
    # The user answered "no" in this tab: not offered again until the page is loaded anew.
    _claim_declined: bool = False
    usage: list[dict[str, str]] = []
    # The chart's points and series (chart_points, chart_series); no series: no use in the period.
    usage_points: list[dict[str, str | int]] = []
    usage_series: list[dict[str, str]] = []
    # {"id", "name", "prefix", "created", "revoked"} per personal key; never the key itself.
    api_keys: list[dict[str, str]] = []
    key_created: bool = False
    account_notice: str = ""
    # The user signed in with a temporary password (an admin's): they must choose their own first.
    must_change_password: bool = False
    # Local accounts only (single sign-on users have no password here).
    has_password: bool = False
    password_notice: str = ""

    async def _show_user(self, temporary_password_ok: bool = False) -> int:
        """Read the signed-in user (raises SignedOut) into the menu's vars; returns the user id."""
        user = await self.signed_in_user(temporary_password_ok)
        self.email, self.is_admin = user.email or "single sign-on user", user.is_admin
        self.must_change_password, self.has_password = user.must_change_password, user.password_hash is not None
        return user.id  # type: ignore[return-value]

    @rx.event
    async def load_user(self) -> None:
        """on_load of the chat pages (after open_page guarded them): the menu, and anything to claim."""
        if not get_settings().accounts_enabled:
            return
        await self._show_user()
        anonymous = self.identity  # read, never created: a browser without one has nothing to claim
        self.claimable = 0 if self._claim_declined else await services().accounts.claimable(anonymous)

    @rx.event
    async def claim(self) -> Any:
        """The user's yes: move this browser's anonymous conversations into the account."""
        user_id = await self._show_user()
        moved = await services().accounts.claim_conversations(self.identity, user_id)
        self.claimable = 0
        self.notice = f"Moved {moved} conversation{'' if moved == 1 else 's'} into your account."
        return LibraryState.refresh

    @rx.event
    async def decline_claim(self) -> None:
        """The user's no: nothing moves; the conversations stay with this browser's identity."""
        await self._show_user()
        self.claimable, self._claim_declined = 0, True

    # -- /account ----------------------------------------------------------------------------

    async def _load_keys(self, user_id: int) -> None:
        self.api_keys = [
            {
                "id": str(key.id),
                "name": key.name or "(no name)",
                "prefix": key.prefix + "…",
                "created": key.created_at.date().isoformat(),
                "revoked": "revoked" if key.revoked else "",
            }
            for key in await services().accounts.api_keys(user_id)
        ]

    @rx.event
    async def load_account(self) -> Any:
        """on_load of /account: the user's own usage and keys; signed out goes to /login."""
        if not get_settings().accounts_enabled:
            return rx.redirect("/")
        user_id = await self._show_user(temporary_password_ok=True)
        self.key_created, self.account_notice, self.password_notice = False, "", ""
        accounts = services().accounts
        self.usage = usage_rows(await accounts.usage(user_id, USAGE_DAYS))
        chart = await accounts.usage_chart(user_id, USAGE_DAYS)
        self.usage_points, self.usage_series = chart_points(chart), chart_series(chart)
        await self._load_keys(user_id)
        return None

    @rx.event
    async def create_api_key(self, form_data: Any) -> Any:
        """Create a key and show it once, in the read-only input (never in a state var)."""
        user_id = await self._show_user()
        raw = form_data.get("key_name") if isinstance(form_data, dict) else None
        name = raw.strip() if isinstance(raw, str) else ""
        if len(name) > 80:
            self.account_notice = "A key's name can be at most 80 characters."
            return None
        _row, key = await services().accounts.create_api_key(user_id, name)
        await self._load_keys(user_id)
        self.key_created, self.account_notice = True, ""
        return rx.set_value(NEW_KEY_INPUT_ID, key)

    @rx.event
    async def revoke_api_key(self, key_id: Any) -> None:
        user_id = await self._show_user()
        number = int(key_id) if isinstance(key_id, str) and key_id.isdigit() else 0
        if not await services().accounts.revoke_api_key(user_id, number):
            self.account_notice = "That key was not found."
            return
        self.account_notice = "The key is revoked: it no longer works."
        await self._load_keys(user_id)

    @rx.event
    async def change_password(self, form_data: Any) -> None:
        """The change-password form: the current password, then the new one. This tab stays signed in;
        every other session of the user ends."""
        user_id = await self._show_user(temporary_password_ok=True)
        data = form_data if isinstance(form_data, dict) else {}
        current, new = data.get("current_password"), data.get("new_password")
        try:
            await services().accounts.change_password(
                user_id, current, new, keep_session=self.session_token(), client_address=self.client_address()
            )
        except AuthError as refused:
            self.password_notice = str(refused)
            return
        self.must_change_password = False
        self.password_notice = "Your password is changed. Your other sessions have ended."
