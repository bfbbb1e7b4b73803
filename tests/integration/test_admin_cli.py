"""`python -m chatbot_app.admin`, the operators' way back in, on both databases: it creates an admin,
resets a password and disables a user, with clear messages and exit codes."""

from __future__ import annotations

import asyncio
import io
import re
import subprocess
import sys

import pytest
from sqlalchemy import Engine

from chatbot_app.admin import DONE, REFUSED, USAGE, main
from chatbot_app.config import PROJECT_ROOT, Settings
from chatbot_app.services.accounts import Accounts, AuthError

PASSWORD = "correct horse battery"


def admin_cli(database_url: str, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), env={"CHATBOT_DATABASE_URL": database_url, "CHATBOT_AUTH": "local"}, out=out)
    return code, out.getvalue()


def one_time_password(output: str) -> str:
    found = re.search(r"\(shown only now\): (\S+)", output)
    assert found is not None, output
    return found.group(1)


async def test_the_day_no_admin_can_sign_in(
    database_url: str, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    accounts = Accounts(Settings(database_url=database_url, auth_methods=("local",)), engine)
    lost = await accounts.sign_up("lost-admin@example.com", PASSWORD)  # the first account: the admin
    assert lost.is_admin

    code, output = await asyncio.to_thread(admin_cli, database_url, "create-admin", "New-Admin@Example.com")
    assert code == DONE and "Created the admin new-admin@example.com" in output
    new_admin = await accounts.sign_in("new-admin@example.com", one_time_password(output), "127.0.0.1")
    assert new_admin.is_admin and new_admin.must_change_password

    code, output = await asyncio.to_thread(admin_cli, database_url, "reset-password", "lost-admin@example.com")
    assert code == DONE and "sessions have ended" in output
    temporary = one_time_password(output)
    assert (await accounts.sign_in("lost-admin@example.com", temporary, "127.0.0.1")).is_admin
    with pytest.raises(AuthError):
        await accounts.sign_in("lost-admin@example.com", PASSWORD, "127.0.0.1")

    code, output = await asyncio.to_thread(admin_cli, database_url, "disable", "lost-admin@example.com")
    assert code == DONE and "signed out everywhere" in output
    with pytest.raises(AuthError, match="disabled"):
        await accounts.sign_in("lost-admin@example.com", temporary, "127.0.0.1")

    code, output = await asyncio.to_thread(admin_cli, database_url, "list")
    assert output.splitlines() == [
        "lost-admin@example.com  admin  disabled",
        "new-admin@example.com  admin  active",
    ]
    code, _ = await asyncio.to_thread(admin_cli, database_url, "enable", "lost-admin@example.com")
    assert code == DONE

    # Refusals say why, on stderr, with exit code 1.
    capsys.readouterr()
    for argv, message in [
        (("disable", "nobody@example.com"), "No account has the email nobody@example.com."),
        (("create-admin", "new-admin@example.com"), "already exists"),
        (("create-admin", "not an email"), "Enter a valid email address."),
    ]:
        code, _ = await asyncio.to_thread(admin_cli, database_url, *argv)
        assert code == REFUSED and message in capsys.readouterr().err
    accounts.passwords.close()


def test_the_last_enabled_admin_cannot_be_disabled(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = admin_cli(database_url, "create-admin", "only@example.com")
    assert code == DONE
    code, _ = admin_cli(database_url, "disable", "only@example.com")
    assert code == REFUSED and "At least one enabled admin must remain." in capsys.readouterr().err


def test_it_runs_as_a_module_and_says_what_is_wrong(tmp_path: object) -> None:
    env = {"CHATBOT_DATABASE_URL": f"sqlite:///{tmp_path}/no-tables.db", "PATH": ""}
    command = [sys.executable, "-m", "chatbot_app.admin"]
    usage = subprocess.run([*command, "frobnicate"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    assert usage.returncode == USAGE and "invalid choice" in usage.stderr
    missing = subprocess.run([*command, "list"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    assert missing.returncode == REFUSED
    assert "run the migrations (alembic upgrade head)" in missing.stderr and "Traceback" not in missing.stderr
    helped = subprocess.run([*command, "--help"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    assert "create-admin" in helped.stdout and "reset-password" in helped.stdout and "disable" in helped.stdout
