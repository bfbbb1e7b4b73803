"""deploy/run_prod.py before anything starts: its settings, its peer checks, and the nginx config it writes."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from chatbot_app.api import create_api
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
    config = ProdConfig.load({})
    assert (config.port, config.backend_ports, config.api_url) == (3000, [8001, 8002], "http://localhost:3000")
    assert config.redis_url == "redis://127.0.0.1:6379"
    assert config.database_url == DEFAULT_DATABASE_URL and config.create_database
    assert config.env["GRANIAN_WORKERS"] == "1"  # BACKENDS counts processes
    # A shared deployment has accounts; sign-in sends the browser back to nginx's address, and so does
    # the OIDC provider; the backends believe nginx's X-Forwarded-For.
    assert (config.env["CHATBOT_AUTH"], config.env["CHATBOT_APP_URL"]) == ("local", "http://localhost:3000")
    assert config.env["CHATBOT_OIDC_REDIRECT_BASE"] == "http://localhost:3000"
    assert config.env["CHATBOT_TRUSTED_PROXIES"] == "127.0.0.1,::1"
    assert "CHATBOT_ALLOW_SIGNUP" not in config.env  # closed but for the first account (the app's default)


def test_an_operators_own_proxies_are_kept_and_nginx_added() -> None:
    config = ProdConfig.load({"CHATBOT_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1"})
    assert config.env["CHATBOT_TRUSTED_PROXIES"] == "10.0.0.0/8,127.0.0.1,::1"


def test_an_operator_may_keep_the_anonymous_mode() -> None:
    config = ProdConfig.load({"CHATBOT_AUTH": "none", "CHATBOT_APP_URL": "https://chat.example.com"})
    assert (config.env["CHATBOT_AUTH"], config.env["CHATBOT_APP_URL"]) == ("none", "https://chat.example.com")


def test_an_operators_settings_are_used_as_given_and_passed_through() -> None:
    config = ProdConfig.load(
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
        ProdConfig.load({"CHATBOT_DATABASE_URL": "sqlite:///chatbot.db"})
    one = ProdConfig.load({"CHATBOT_DATABASE_URL": "sqlite:///chatbot.db", "BACKENDS": "1"})
    assert one.backend_ports == [8001]


@pytest.mark.parametrize(("name", "value"), [("BACKENDS", "two"), ("BACKENDS", "0"), ("PORT", "-1")])
def test_bad_numbers_get_a_message_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(LaunchError, match=name):
        ProdConfig.load({name: value})


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
    config = ProdConfig.load({"BACKENDS": "3", "CHATBOT_PROD_DIR": str(tmp_path)})
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


def route_paths(routes: list[Any]) -> list[str]:
    """Every path of an app's routes, through the routers it includes."""
    paths: list[str] = []
    for route in routes:
        if hasattr(route, "path"):
            paths.append(route.path)
        else:  # an included router (FastAPI keeps its routes on the original)
            paths += route_paths(route.original_router.routes)
    return paths


def proxied_paths(rendered: str) -> re.Pattern[str]:
    """The regex of nginx's location for the backends, as Python reads it (the same PCRE syntax)."""
    [location] = re.findall(r"location ~ (\^/\S+) \{", rendered)
    return re.compile(location)


def test_nginx_sends_every_path_the_backend_answers_to_the_backends(tmp_path: Path) -> None:
    rendered = render_nginx_conf(ProdConfig.load({"CHATBOT_PROD_DIR": str(tmp_path)}), tmp_path / "site")
    proxied = proxied_paths(rendered)
    api_paths = route_paths(create_api().routes)
    reflex_paths = ["/ping", "/_health", "/_event/", "/_upload", "/_upload/file.png"]
    assert "/auth/oidc/callback" in api_paths and "/auth/sign-in" in api_paths
    assert [path for path in api_paths + reflex_paths if not proxied.match(path)] == []
    # The pages stay with the static site.
    assert [
        path for path in ("/", "/login", "/signup", "/account", "/admin", "/c/abc", "/s/tok") if proxied.match(path)
    ] == []


def logged_uri(rendered: str, request_uri: str) -> str:
    """What nginx's access log writes for `request_uri`: its map's first matching pattern, as Python reads it."""
    [body] = re.findall(r"map \$request_uri \$request_uri_for_log \{(.*?)\n    \}", rendered, re.DOTALL)
    for pattern, replacement in re.findall(r'"~(.+)" "(.+)";', body):
        if found := re.match(pattern.replace("(?<", "(?P<"), request_uri):
            return re.sub(r"\$(\w+)", lambda name: found.group(name.group(1)), replacement)
    return request_uri


def test_the_access_log_holds_no_token_of_a_link(tmp_path: Path) -> None:
    rendered = render_nginx_conf(ProdConfig.load({"CHATBOT_PROD_DIR": str(tmp_path)}), tmp_path / "site")
    token = "Zx9" * 14
    assert logged_uri(rendered, f"/s/{token}") == "/s/..."
    assert logged_uri(rendered, f"/api/shared/{token}/files/3") == "/api/shared/.../files/3"
    for route in ("attachments", "exports", "speech"):
        assert logged_uri(rendered, f"/api/{route}/{token}") == f"/api/{route}/..."
    assert logged_uri(rendered, f"/_event/?EIO=4&token={token}") == "/_event/?..."
    assert logged_uri(rendered, "/api/conversations") == "/api/conversations"
