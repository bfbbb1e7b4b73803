"""Account recovery for operators, from the server's shell, for the day no admin can sign in.

    python -m chatbot_app.admin create-admin EMAIL     a new admin, with a one-time password
    python -m chatbot_app.admin reset-password EMAIL   a one-time password for an account
    python -m chatbot_app.admin disable EMAIL          sign the account out everywhere, and keep it out
    python -m chatbot_app.admin enable EMAIL
    python -m chatbot_app.admin list                   every account, its role and status

It reads the same settings as the app (the environment, then `.env`; CHATBOT_DATABASE_URL above all)
and works on the database directly, through services/accounts.py: no backend needs to run. A one-time
password is printed once; its user must choose their own at the next sign-in. A reset also ends the
user's sessions and revokes their personal API keys.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import TextIO

from sqlalchemy.exc import SQLAlchemyError

from chatbot_app.config import SettingsError, load_settings
from chatbot_app.services.accounts import Accounts, AuthError, NotAllowed
from chatbot_app.storage.database import make_engine
from chatbot_app.storage.models import User

#: Exit codes: done; refused (the message says why); the command line or the settings are wrong.
DONE, REFUSED, USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m chatbot_app.admin",
        description="Manage chatbot_app's accounts from the server, without signing in.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in [
        ("create-admin", "create an admin account and print its one-time password"),
        ("reset-password", "print a one-time password for an account; its sessions and API keys end"),
        ("disable", "disable an account: it is signed out everywhere at once"),
        ("enable", "enable a disabled account"),
    ]:
        commands.add_parser(name, help=help_text).add_argument("email", help="the account's email address")
    commands.add_parser("list", help="list every account")
    return parser


def _describe(user: User) -> str:
    role = "admin" if user.is_admin else "user"
    status = "disabled" if user.disabled else "active"
    return f"{user.email or f'{user.oidc_subject} (single sign-on)'}  {role}  {status}"


async def _run(accounts: Accounts, command: str, email: str | None, out: TextIO) -> None:
    if command == "create-admin":
        user, temporary = await accounts.operator_create_admin(email)
        print(f"Created the admin {user.email}. One-time password (shown only now): {temporary}", file=out)
        print("They choose their own password at the first sign-in.", file=out)
    elif command == "reset-password":
        user, temporary = await accounts.operator_reset_password(email)
        print(f"New one-time password for {user.email} (shown only now): {temporary}", file=out)
        print("Their sessions have ended and their API keys are revoked; they choose a new password", file=out)
        print("at the next sign-in.", file=out)
    elif command in ("disable", "enable"):
        user = await accounts.operator_set_disabled(email, command == "disable")
        print(f"{user.email} is {'disabled: signed out everywhere' if user.disabled else 'enabled'}.", file=out)
    else:
        for user in await accounts.operator_list_users():
            print(_describe(user), file=out)


def main(argv: Sequence[str] | None = None, env: dict[str, str] | None = None, out: TextIO = sys.stdout) -> int:
    """Run one command; `env` replaces the process's settings (tests). Returns the exit code."""
    arguments = _parser().parse_args(argv)
    try:
        settings = load_settings(env)
    except SettingsError as exc:
        print(f"chatbot_app.admin: {exc}", file=sys.stderr)
        return USAGE
    if not settings.accounts_enabled:
        print("Note: CHATBOT_AUTH is none, so the app uses no accounts until it is set.", file=sys.stderr)
    engine = make_engine(settings.database_url)
    accounts = Accounts(settings, engine)
    try:
        asyncio.run(_run(accounts, arguments.command, getattr(arguments, "email", None), out))
    except (NotAllowed, AuthError) as refused:
        print(f"chatbot_app.admin: {refused}", file=sys.stderr)
        return REFUSED
    except SQLAlchemyError as exc:
        # The driver's first line (connection refused, no such table): never the URL, which may hold a password.
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        print(
            f"chatbot_app.admin: the database did not answer as expected ({detail}). "
            "Check CHATBOT_DATABASE_URL, and run the migrations (alembic upgrade head).",
            file=sys.stderr,
        )
        return REFUSED
    finally:
        accounts.passwords.close()
        engine.dispose()
    return DONE


if __name__ == "__main__":
    sys.exit(main())
