"""The /admin page: users (create, disable, enable, admin or not, password reset, quota), whether
anyone may sign up, usage per day (a chart and a table) and the users who spent the most.

Every action asks Accounts, which checks again that the caller is an enabled admin right now.
A temporary password is shown once, written straight into an input (never into a state var).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import reflex as rx

from chatbot_app.config import get_settings
from chatbot_app.services.accounts import AuthError, NotAllowed
from chatbot_app.services.refusals import Refused
from chatbot_app.services.wiring import services
from chatbot_app.state.account import USAGE_DAYS, chart_points, chart_series, usage_rows
from chatbot_app.state.session import SessionState

TEMPORARY_PASSWORD_INPUT_ID = "temporary-password"
#: How many of the users who spent the most tokens the page lists.
TOP_USERS = 10
#: The only enabled admin can be neither disabled nor demoted (Accounts refuses it too).
LAST_ADMIN = "The only admin: cannot be disabled or demoted."
#: What each action asks before it is taken, given the user's email.
CONFIRMATIONS = {
    "disable": ("Disable {email}?", "Their sessions end at once, and they cannot sign in until enabled again."),
    "enable": ("Enable {email}?", "They can sign in again."),
    "make_admin": ("Make {email} an admin?", "Admins see every user and their usage, and can change any account."),
    "unmake_admin": ("Remove {email}'s admin role?", "They keep their account and conversations."),
    "reset_password": (
        "Reset {email}'s password?",
        "Their sessions end, and they sign in with a temporary password shown to you once.",
    ),
}


def _user_id(raw: Any) -> int:
    return int(raw) if isinstance(raw, str) and raw.isdigit() else 0


class AdminState(SessionState):
    # {"id", "email", "role", "status", "quota"} per user.
    users: list[dict[str, str]] = []
    usage: list[dict[str, str]] = []
    usage_points: list[dict[str, str | int]] = []
    usage_series: list[dict[str, str]] = []
    # {"email", "tokens", "messages"} for the users who spent the most in the period, most first.
    top_users: list[dict[str, str]] = []
    admin_notice: str = ""
    # Whose temporary password the read-only input shows ("" for none).
    reset_email: str = ""
    # The action waiting for "Confirm" ({"kind", "user_id", "title", "description"}; empty for none).
    pending_action: dict[str, str] = {}
    signup_open: bool = False
    # CHATBOT_ALLOW_SIGNUP=true: sign-up is open whatever the admins choose here.
    signup_always_open: bool = False
    # {"who", "tool", "calls", "failed"}: tool calls in the last 30 days, most first.
    tool_usage: list[dict[str, str]] = []
    # {"name", "url", "source" ("environment" or "admin"), "enabled", "trusted", "default_on"} per MCP server.
    mcp_servers: list[dict[str, str]] = []

    async def _admin_id(self) -> int | None:
        """The signed-in admin's id (raises SignedOut); None for a user who is not an admin."""
        user = await self.signed_in_user()
        return user.id if user.is_admin else None

    async def _reload(self, admin_id: int) -> None:
        accounts = services().accounts
        users = await accounts.list_users(admin_id)
        enabled_admins = [user.id for user in users if user.is_admin and not user.disabled]
        self.users = [
            {
                "id": str(user.id),
                "email": user.email or f"{user.oidc_subject} (single sign-on)",
                "role": "admin" if user.is_admin else "user",
                "status": "disabled" if user.disabled else "active",
                "quota": "default" if user.daily_token_quota is None else f"{user.daily_token_quota:,}",
                "last_admin": "true" if enabled_admins == [user.id] else "",
            }
            for user in users
        ]
        self.usage = usage_rows(await accounts.usage(admin_id, USAGE_DAYS))
        chart = await accounts.usage_chart(admin_id, USAGE_DAYS, everyone=True)
        self.usage_points, self.usage_series = chart_points(chart), chart_series(chart)
        self.top_users = [
            {"email": top.email or f"user {top.user_id}", "tokens": f"{top.tokens:,}", "messages": f"{top.messages:,}"}
            for top in await accounts.top_users(admin_id, USAGE_DAYS, TOP_USERS)
        ]
        self.signup_open = await accounts.signup_open()
        self.signup_always_open = accounts.settings.allow_signup
        self.tool_usage = [
            {"who": who, "tool": tool, "calls": f"{calls:,}", "failed": f"{failed:,}"}
            for who, tool, calls, failed in await accounts.tool_usage(admin_id, USAGE_DAYS)
        ]
        catalog = services().chat.tools
        self.mcp_servers = [
            {
                "name": server.name,
                "url": server.url,
                "source": "environment" if catalog.is_configured(server.name) else "admin",
                "enabled": "true" if server.enabled else "",
                "trusted": "true" if server.trusted else "",
                "default_on": "true" if server.default_on else "",
            }
            for server in await catalog.servers()
        ]

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
        except (NotAllowed, AuthError, Refused) as refusal:
            self.admin_notice = str(refusal)
            return None
        self.admin_notice = done
        await self._reload(admin_id)
        return result

    # -- asking first ------------------------------------------------------------------------------

    @rx.event
    def ask(self, kind: Any, user_id: Any) -> None:
        """Open the confirmation for one action on one listed user (nothing happens until "Confirm")."""
        user = next((u for u in self.users if u["id"] == user_id), None) if isinstance(user_id, str) else None
        if not isinstance(kind, str) or kind not in CONFIRMATIONS or user is None:
            self.pending_action = {}
            return
        if kind in ("disable", "unmake_admin") and user["last_admin"]:
            self.pending_action, self.admin_notice = {}, LAST_ADMIN
            return
        title, description = CONFIRMATIONS[kind]
        self.pending_action = {
            "kind": kind,
            "user_id": user["id"],
            "title": title.format(email=user["email"]),
            "description": description,
        }

    @rx.event
    def cancel_action(self) -> None:
        self.pending_action = {}

    @rx.event
    async def confirm_action(self) -> Any:
        """ "Confirm": take the action asked about (Accounts checks the caller and the last admin again)."""
        if await self._admin_id() is None:  # the caller first, whatever is pending
            self.pending_action = {}
            return rx.redirect("/")
        action, self.pending_action = self.pending_action, {}
        kind, user_id = action.get("kind"), action.get("user_id")
        if kind == "reset_password":
            return await self._reset_password(user_id)
        if kind in ("disable", "enable"):
            return await self._set_disabled(user_id, kind == "disable")
        if kind in ("make_admin", "unmake_admin"):
            return await self._set_admin(user_id, kind == "make_admin")
        return None

    # -- the actions -------------------------------------------------------------------------------

    @rx.event
    async def set_disabled(self, user_id: Any, disabled: bool) -> Any:
        return await self._set_disabled(user_id, disabled)

    @rx.event
    async def set_admin(self, user_id: Any, admin: bool) -> Any:
        return await self._set_admin(user_id, admin)

    @rx.event
    async def reset_password(self, user_id: Any) -> Any:
        return await self._reset_password(user_id)

    async def _set_disabled(self, user_id: Any, disabled: bool) -> Any:
        target = _user_id(user_id)
        return await self._act(
            lambda admin: services().actions.set_user_disabled(admin, target, disabled is True),
            "User disabled: their sessions have ended." if disabled else "User enabled.",
        )

    async def _set_admin(self, user_id: Any, admin: bool) -> Any:
        target, make_admin = _user_id(user_id), admin is True  # a hostile "false" string is not True
        return await self._act(
            lambda actor: services().accounts.set_admin(actor, target, make_admin),
            "User is now an admin." if make_admin else "User is no longer an admin.",
        )

    async def _reset_password(self, user_id: Any) -> Any:
        target = _user_id(user_id)
        temporary = await self._act(
            lambda admin: services().accounts.reset_password(admin, target),
            "Password reset: give the user this temporary password. It is shown only now.",
        )
        if not isinstance(temporary, str):
            return None
        self.reset_email = next((u["email"] for u in self.users if u["id"] == str(target)), "")
        return rx.set_value(TEMPORARY_PASSWORD_INPUT_ID, temporary)

    @rx.event
    async def create_user(self, form_data: Any) -> Any:
        """The new-account form: an email; the account's one-time password is shown once."""
        data = form_data if isinstance(form_data, dict) else {}
        email = data.get("email")
        made = await self._act(
            lambda admin: services().accounts.create_user(admin, email),
            "Account created: give its user this one-time password. It is shown only now; "
            "they choose their own at the first sign-in.",
        )
        if not isinstance(made, tuple):  # refused (the notice says why), or not an admin (a redirect)
            return made
        user, temporary = made
        self.reset_email = user.email or ""
        return rx.set_value(TEMPORARY_PASSWORD_INPUT_ID, temporary)

    @rx.event
    async def set_signup_open(self, open_: bool) -> Any:
        wanted = open_ is True
        await self._act(
            lambda admin: services().accounts.set_signup_open(admin, wanted),
            "Anyone can now create an account." if wanted else "Sign-up is closed: admins create accounts.",
        )

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
        await self._act(lambda admin: services().accounts.set_quota(admin, target, quota), "Quota saved.")
        return None

    # -- MCP servers ---------------------------------------------------------------------------------

    @rx.event
    async def add_mcp_server(self, form_data: Any) -> Any:
        """The add-a-server form: name, URL, headers (JSON: header name -> environment variable), switches."""
        data = form_data if isinstance(form_data, dict) else {}
        await self._act(lambda admin: services().actions.add_mcp_server(admin, data), "Server added.")

    @rx.event
    async def change_mcp_server(self, name: Any, setting: Any, value: Any) -> Any:
        """Enable or disable a server, trust it (its tools need no approval), or turn it on for new chats."""
        await self._act(
            lambda admin: services().actions.change_mcp_server(admin, name, setting, value), "Server changed."
        )

    @rx.event
    async def remove_mcp_server(self, name: Any) -> Any:
        await self._act(lambda admin: services().actions.remove_mcp_server(admin, name), "Server removed.")
