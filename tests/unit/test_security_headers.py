"""The content security policy: inline scripts by hash only, connections to the app's own backend only."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from chatbot_app.security_headers import backend_origins, content_security_policy, inline_script_hashes

PAGE = """<!DOCTYPE html><html><head>
<script>window.__ctx = {"a":"<b>"};</script>
<script type="module" async="">import "/assets/x.js";</script>
<script src="/assets/app.js"></script>
</head><body><script id="_R_">requestAnimationFrame(function(){$RT=performance.now()});</script></body></html>"""


def sha(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"


def directive(policy: str, name: str) -> str:
    return next(part.strip() for part in policy.split(";") if part.strip().startswith(name + " "))


def test_every_inline_script_of_the_build_is_hashed_and_nothing_else(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "index.html").write_text(PAGE)
    (tmp_path / "sub" / "index.html").write_text(PAGE)  # the same scripts: one hash each

    hashes = inline_script_hashes(tmp_path)

    assert hashes == sorted(
        [
            sha('window.__ctx = {"a":"<b>"};'),
            sha('import "/assets/x.js";'),
            sha("requestAnimationFrame(function(){$RT=performance.now()});"),
        ]
    )


def test_scripts_never_get_unsafe_inline_and_connections_only_reach_the_backend() -> None:
    policy = content_security_policy([sha("x")], backend_origins("https://api.example.com"))

    scripts = directive(policy, "script-src")
    assert "'unsafe-inline'" not in scripts and sha("x") in scripts
    connect = directive(policy, "connect-src")
    assert connect == "connect-src 'self' https://api.example.com wss://api.example.com"
    assert directive(policy, "media-src") == "media-src 'self' https://api.example.com"  # replies read aloud
    assert " ws:" not in policy and " wss:" not in policy.replace("wss://", "")


def test_backend_origins_follow_the_scheme_and_ignore_junk() -> None:
    assert backend_origins("http://localhost:8000/") == ["http://localhost:8000", "ws://localhost:8000"]
    assert backend_origins(None) == []
    assert backend_origins("not a url") == []


async def test_responses_allow_the_pages_own_websocket_and_nothing_injected() -> None:
    import httpx
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from chatbot_app.security_headers import security_headers

    app = security_headers(Starlette(routes=[Route("/ping", lambda _: PlainTextResponse("pong"))]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app.example:3000") as c:
        policy = (await c.get("/ping")).headers["content-security-policy"]
        injected = (await c.get("/ping", headers={"Host": "x; script-src *"})).headers["content-security-policy"]

    assert "ws://app.example:3000" in directive(policy, "connect-src")
    assert "script-src *" not in injected and "'unsafe-inline'" not in directive(injected, "script-src")
