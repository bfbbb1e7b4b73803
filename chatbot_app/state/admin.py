"""The /admin page: users (disable, enable, admin or not, password reset, quota) and usage per day.

Every action asks Accounts, which checks again that the caller is an enabled admin right now.
A temporary password is shown once, written straight into an input (never into a state var).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import reflex as rx

from chatbot_app.config import get_settings
from chatbot_app.services.accounts import NotAllowed
from chatbot_app.services.default_service import get_accounts
from chatbot_app.state.account import USAGE_DAYS, usage_rows
from chatbot_app.state.session import SessionState

TEMPORARY_PASSWORD_INPUT_ID = "temporary-password"


def _user_id(raw: Any) -> int:
    return int(raw) if isinstance(raw, str) and raw.isdigit() else 0


class AdminState(SessionState):
    # {"id", "email", "role", "status", "quota"} per user.
    users: list[dict[str, str]] = []
    usage: list[dict[str, str]] = []
    admin_notice: str = ""
    # Whose temporary password the read-only input shows ("" for none).
    reset_email: str = ""

    async def _admin_id(self) -> int | None:
        """The signed-in admin's id (raises SignedOut); None for a user who is not an admin."""
        user = await self.signed_in_user()
        return user.id if user.is_admin else None

    async def _reload(self, admin_id: int) -> None:
        accounts = get_accounts()
        self.users = [
            {
                "id": str(user.id),
                "email": user.email or f"{user.oidc_subject} (single sign-on)",
                "role": "admin" if user.is_admin else "user",
                "status": "disabled" if user.disabled else "active",
                "quota": "default" if user.daily_token_quota is None else f"{user.daily_token_quota:,}",
            }
            for user in await accounts.list_users(admin_id)
        ]
        self.usage = usage_rows(await accounts.usage(admin_id, USAGE_DAYS))

    @rx.event
    async def load(self) -> Any:
        """on_load of /admin: only admins stay; anyone else goes back to the chat."""
        if not get_settings().accounts_enabled or (admin_id := await self._admin_id()) is None:
            return rx.redirect("/")
        self.admin_notice, self.reset_email = "", ""
        await self._reload(admin_id)
        return None

    async def _act(self, action: Callable[[int], Awaitable[Any]], done: str) -> Any:
        """Run one admin action; its refusal (not an admin, the last admin) is shown, nothing changes."""
        if (admin_id := await self._admin_id()) is None:
            return rx.redirect("/")
        try:
            result = await action(admin_id)
        except NotAllowed as refusal:
            self.admin_notice = str(refusal)
            return None
        self.admin_notice = done
        await self._reload(admin_id)
        return result

    @rx.event
    async def set_disabled(self, user_id: Any, disabled: bool) -> Any:
        target = _user_id(user_id)
        await self._act(
            lambda admin: get_accounts().set_disabled(admin, target, bool(disabled)),
            "User disabled: their sessions have ended." if disabled else "User enabled.",
        )

    @rx.event
    async def set_admin(self, user_id: Any, admin: bool) -> Any:
        target = _user_id(user_id)
        await self._act(
            lambda actor: get_accounts().set_admin(actor, target, bool(admin)),
            "User is now an admin." if admin else "User is no longer an admin.",
        )

    @rx.event
    async def reset_password(self, user_id: Any) -> Any:
        target = _user_id(user_id)
        temporary = await self._act(
            lambda admin: get_accounts().reset_password(admin, target),
            "Password reset: give the user this temporary password. It is shown only now.",
        )
        if not isinstance(temporary, str):
            return None
        self.reset_email = next((u["email"] for u in self.users if u["id"] == str(target)), "")
        return rx.set_value(TEMPORARY_PASSWORD_INPUT_ID, temporary)

    @rx.event
    async def set_quota(self, form_data: Any) -> Any:
        """The quota form: a user's id and a number of tokens per day, or empty for the default."""
        data = form_data if isinstance(form_data, dict) else {}
        target, raw = _user_id(data.get("user_id")), data.get("daily_tokens")
        text = raw.strip().replace(",", "").replace("_", "") if isinstance(raw, str) else ""
        if text and not text.isdigit():
            self.admin_notice = "A quota is a whole number of tokens per day, or empty for the default."
            return None
        quota = int(text) if text else None
        await self._act(lambda admin: get_accounts().set_quota(admin, target, quota), "Quota saved.")
        return None
