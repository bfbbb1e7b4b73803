"""deploy/run_prod.py before anything starts: its settings, its peer checks, and the nginx config it writes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from chatbot_app.security_headers import static_site_headers
from deploy.run_prod import (
    DEFAULT_DATABASE_URL,
    LaunchError,
    ProdConfig,
    check_redis,
    ensure_database,
    main,
    render_nginx_conf,
)
from tests.conftest import skip_or_fail
from tests.e2e.live_app import free_port


def test_defaults_are_two_backends_behind_port_3000_on_local_redis_and_postgresql() -> None:
    config = ProdConfig.from_env({})
    assert (config.port, config.backend_ports, config.api_url) == (3000, [8001, 8002], "http://localhost:3000")
    assert config.redis_url == "redis://127.0.0.1:6379"
    assert config.database_url == DEFAULT_DATABASE_URL and config.create_database
    assert config.env["GRANIAN_WORKERS"] == "1"  # BACKENDS counts processes
    # A shared deployment has accounts; sign-in sends the browser back to nginx's address.
    assert (config.env["CHATBOT_AUTH"], config.env["CHATBOT_APP_URL"]) == ("local", "http://localhost:3000")


def test_an_operator_may_keep_the_anonymous_mode() -> None:
    config = ProdConfig.from_env({"CHATBOT_AUTH": "none", "CHATBOT_APP_URL": "https://chat.example.com"})
    assert (config.env["CHATBOT_AUTH"], config.env["CHATBOT_APP_URL"]) == ("none", "https://chat.example.com")


def test_an_operators_settings_are_used_as_given_and_passed_through() -> None:
    config = ProdConfig.from_env(
        {
            "PORT": "8080",
            "BACKENDS": "3",
            "BACKEND_PORT": "9000",
            "CHATBOT_DATABASE_URL": "postgresql+psycopg2://app@db.internal/chat",
            "CHATBOT_AUTH": "local",
            "GRANIAN_WORKERS": "2",
        }
    )
    assert config.backend_ports == [9000, 9001, 9002]
    assert config.api_url == "http://localhost:8080"
    assert not config.create_database  # an operator's database is never created for them
    assert config.env["CHATBOT_AUTH"] == "local" and config.env["GRANIAN_WORKERS"] == "2"


def test_sqlite_is_refused_for_more_than_one_backend() -> None:
    with pytest.raises(LaunchError, match=r"SQLite, which cannot be shared by 2 backend processes"):
        ProdConfig.from_env({"CHATBOT_DATABASE_URL": "sqlite:///chatbot.db"})
    one = ProdConfig.from_env({"CHATBOT_DATABASE_URL": "sqlite:///chatbot.db", "BACKENDS": "1"})
    assert one.backend_ports == [8001]


@pytest.mark.parametrize(("name", "value"), [("BACKENDS", "two"), ("BACKENDS", "0"), ("PORT", "-1")])
def test_bad_numbers_get_a_message_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(LaunchError, match=name):
        ProdConfig.from_env({name: value})


def test_unreachable_redis_and_postgresql_are_said_clearly() -> None:
    with pytest.raises(LaunchError, match=r"Redis is not reachable at redis://127.0.0.1:\d+ \(REFLEX_REDIS_URL\)"):
        check_redis(f"redis://127.0.0.1:{free_port()}")
    url = f"postgresql+psycopg2://app:secret@127.0.0.1:{free_port()}/chatbot"
    with pytest.raises(LaunchError, match=r"database is not reachable .*\(CHATBOT_DATABASE_URL\)") as error:
        ensure_database(url, create=True)
    assert "secret" not in str(error.value)


def test_main_stops_before_starting_anything_when_redis_is_down(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REFLEX_REDIS_URL", f"redis://127.0.0.1:{free_port()}")
    monkeypatch.setenv("CHATBOT_PROD_DIR", str(tmp_path))
    monkeypatch.setattr("deploy.run_prod.find_nginx", lambda: "/usr/sbin/nginx")
    assert main() == 2
    assert "Redis is not reachable" in capsys.readouterr().err
    assert not (tmp_path / "nginx.conf").exists()


def test_the_nginx_config_lists_every_backend_and_the_apps_own_headers(tmp_path: Path) -> None:
    config = ProdConfig.from_env({"BACKENDS": "3", "CHATBOT_PROD_DIR": str(tmp_path)})
    rendered = render_nginx_conf(config, tmp_path / "site")
    assert [line.split()[1] for line in rendered.splitlines() if line.strip().startswith("server 127")] == [
        "127.0.0.1:8001",
        "127.0.0.1:8002",
        "127.0.0.1:8003",
    ]
    for name, value in static_site_headers(tmp_path / "site"):
        assert f'add_header {name} "{value}" always;' in rendered
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        skip_or_fail("nginx is not installed (apt-get install nginx)")
    (tmp_path / "nginx.conf").write_text(rendered)
    check = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")], capture_output=True)
    assert check.returncode == 0, check.stderr.decode()
