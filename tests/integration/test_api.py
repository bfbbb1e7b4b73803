"""The REST API over real HTTP: a production backend (`reflex run --backend-only --env prod`) with the
API mounted in it, the fake Groq server behind it, httpx and the real `openai` SDK in front of it.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error

from chatbot_app.api.auth import owner_id_for_key
from chatbot_app.config import Settings
from chatbot_app.services.error_messages import describe_error
from chatbot_app.services.export_links import ExportLinks, ExportTicket, export_url
from tests.conftest import TEST_API_KEY, migrate
from tests.e2e.live_app import Backend, app_environment, free_port
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer

KEY_A = "test-key-a-" + "a" * 24
KEY_B = "test-key-b-" + "b" * 24
ALLOWED_ORIGIN = "https://app.example"
SECRET_KEY = "export-link-secret-" + "s" * 20


@dataclass
class Api:
    url: str
    backend: Backend


def _start_backend(workdir: Path, fake: FakeLLMServer, **env: str) -> Backend:
    database_url = f"sqlite:///{workdir / 'api.db'}"
    migrate(database_url)
    # Empty values win over a developer's .env, which the backend also reads.
    blank = {"CHATBOT_API_KEYS": "", "CHATBOT_CORS_ORIGINS": "", "OPENAI_BASE_URL": "", "OPENAI_API_KEY": ""}
    environment = app_environment(
        GROQ_API_KEY=TEST_API_KEY,
        GROQ_BASE_URL=fake.base_url,
        CHATBOT_PROVIDER="auto",
        CHATBOT_MODEL="fake-large",
        CHATBOT_LOCAL_MODEL="off",
        CHATBOT_DATABASE_URL=database_url,
        CHATBOT_FRAME_MS="20",
        **(blank | env),
    )
    backend = Backend(free_port(), environment, workdir / "backend.log")
    backend.start()
    return backend


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLMServer) -> Iterator[Api]:
    backend = _start_backend(
        tmp_path_factory.mktemp("api"),
        fake_llm,
        CHATBOT_API_KEYS=f"{KEY_A}, {KEY_B}",
        CHATBOT_CORS_ORIGINS=ALLOWED_ORIGIN,
        CHATBOT_SECRET_KEY=SECRET_KEY,
        # Every test here is one of two keys from 127.0.0.1: with the defaults (20 messages a minute per key,
        # 60 per address) a fast run's later tests were refused. The limits have tests of their own.
        CHATBOT_RATE_LIMIT_PER_MINUTE="100000",
        CHATBOT_ADDRESS_RATE_LIMIT_PER_MINUTE="100000",
    )
    try:
        yield Api(backend.url, backend)
    finally:
        backend.stop()


@pytest.fixture(scope="module")
def clients(api: Api) -> Iterator[dict[str, httpx.Client]]:
    """One client per key, and one without; made once (each httpx.Client builds an SSL context)."""
    with (
        httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30) as a,
        httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {KEY_B}"}, timeout=30) as b,
        httpx.Client(base_url=api.url, timeout=30) as anonymous,
    ):
        yield {"a": a, "b": b, "anonymous": anonymous}


@pytest.fixture
def client_a(clients: dict[str, httpx.Client], fake: FakeLLMServer) -> httpx.Client:
    return clients["a"]


@pytest.fixture
def client_b(clients: dict[str, httpx.Client], fake: FakeLLMServer) -> httpx.Client:
    return clients["b"]


@pytest.fixture
def anonymous(clients: dict[str, httpx.Client], fake: FakeLLMServer) -> httpx.Client:
    return clients["anonymous"]


def parse_sse(body: str) -> list[tuple[str, Any]]:
    """(event, data) pairs; `data` is JSON-decoded unless it is OpenAI's [DONE]."""
    events = []
    for block in body.split("\n\n"):
        if not block.strip():
            continue
        event, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                event = line.removeprefix("event:").strip()
            elif line.startswith("data:"):
                data.append(line.removeprefix("data:").strip())
        payload = "\n".join(data)
        events.append((event, payload if payload == "[DONE]" else json.loads(payload)))
    return events


def wait_until(condition: Callable[[], Any], timeout_s: float = 15.0) -> Any:
    """Poll `condition` until it returns something truthy; the value is returned."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.02)
    return value


def conversation(client: httpx.Client, conversation_id: str) -> dict[str, Any]:
    response = client.get(f"/api/conversations/{conversation_id}")
    assert response.status_code == 200, response.text
    return response.json()


# --- health, readiness, docs -------------------------------------------------------------------


def test_health_needs_no_key(anonymous: httpx.Client) -> None:
    response = anonymous.get("/api/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert re.fullmatch(r"[0-9a-f]{12}", body["instance"])  # a random id, the same for the process's life
    assert anonymous.get("/api/health").json()["instance"] == body["instance"]


def test_ready_reports_database_and_provider(client_a: httpx.Client) -> None:
    response = client_a.get("/api/ready")
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "provider": "ok"}


def test_openapi_spec_and_docs_are_served(anonymous: httpx.Client) -> None:
    spec = anonymous.get("/openapi.json").json()
    assert {
        "/api/health",
        "/api/ready",
        "/api/chat",
        "/api/chat_batch",
        "/api/conversations",
        "/api/conversations/{conversation_id}",
        "/api/conversations/{conversation_id}/export",
        "/api/conversations/{conversation_id}/leaf",
        "/v1/chat/completions",
        "/v1/models",
    } <= set(spec["paths"])
    assert spec["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    docs = anonymous.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    # Reflex still answers its own routes beside the API.
    assert anonymous.get("/ping").status_code == 200


# --- access ------------------------------------------------------------------------------------

PROTECTED = [
    ("GET", "/api/ready", None),
    ("GET", "/api/conversations", None),
    ("GET", "/api/conversations/0123456789abcdef0123456789abcdef", None),
    ("DELETE", "/api/conversations/0123456789abcdef0123456789abcdef", None),
    ("GET", "/api/conversations/0123456789abcdef0123456789abcdef/export", None),
    ("PUT", "/api/conversations/0123456789abcdef0123456789abcdef/leaf", {"message_id": 1}),
    ("POST", "/api/chat", {"message": "hello"}),
    ("POST", "/api/chat_batch", {"message": "hello"}),
    ("GET", "/v1/models", None),
    ("POST", "/v1/chat/completions", {"model": "fake-large", "messages": [{"role": "user", "content": "hi"}]}),
]


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong-key-wrong-key-wrong", f"Basic {KEY_A}", "Bearer"], ids=str
)
def test_requests_without_a_valid_key_get_401(
    anonymous: httpx.Client, fake: FakeLLMServer, method: str, path: str, body: Any, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = anonymous.request(method, path, json=body, headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert fake.chat_requests() == []


def test_unauthenticated_bad_json_is_refused_before_it_is_parsed(anonymous: httpx.Client) -> None:
    response = anonymous.post("/api/chat", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 401


def test_without_configured_keys_the_api_says_how_to_enable_it(tmp_path: Path, fake_llm: FakeLLMServer) -> None:
    backend = _start_backend(tmp_path, fake_llm)
    try:
        with httpx.Client(base_url=backend.url, timeout=30) as client:
            assert client.get("/api/health").status_code == 200
            for method, path, body in PROTECTED:
                response = client.request(method, path, json=body, headers={"Authorization": f"Bearer {KEY_A}"})
                assert response.status_code == 401
                message = response.json()["error"]["message"] if path.startswith("/v1") else response.json()["detail"]
                assert "CHATBOT_API_KEYS" in message
    finally:
        backend.stop()


def test_keys_never_reach_the_log(api: Api, client_a: httpx.Client) -> None:
    client_a.post("/api/chat_batch", json={"message": "a secret message text"}).raise_for_status()
    client_a.get("/api/conversations", headers={"Authorization": "Bearer not-a-key-but-secret"})
    log = api.backend.log_text()
    assert KEY_A not in log and "not-a-key-but-secret" not in log
    assert "a secret message text" not in log


def test_owner_id_is_derived_from_the_key() -> None:
    owner = owner_id_for_key(KEY_A)
    assert owner.startswith("key_") and len(owner) == 36
    assert owner != owner_id_for_key(KEY_B)


# --- chat --------------------------------------------------------------------------------------


def test_plain_text_chat_streams_and_stores_the_turn(client_a: httpx.Client, fake: FakeLLMServer) -> None:
    fake.enqueue(Behaviour(text="one two three four five six seven eight", tokens_per_s=60))
    chunks = []
    with client_a.stream("POST", "/api/chat", json={"message": "Count for me"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        conversation_id = response.headers["x-conversation-id"]
        chunks = list(response.iter_text())
    assert "".join(chunks) == "one two three four five six seven eight"
    assert len(chunks) > 1  # streamed, not sent at the end

    stored = conversation(client_a, conversation_id)
    assert stored["title"] == "Count for me"
    user, reply = stored["messages"]
    assert (user["role"], user["content"], user["status"]) == ("user", "Count for me", "complete")
    assert (reply["role"], reply["content"], reply["status"]) == (
        "assistant",
        "one two three four five six seven eight",
        "complete",
    )
    assert (reply["provider"], reply["model"], reply["completion_tokens"]) == ("groq", "fake-large", 8)
    assert fake.chat_requests()[0].body["stream"] is True


def test_sse_chat_streams_deltas_then_done_and_continues_a_conversation(client_a: httpx.Client) -> None:
    first = client_a.post("/api/chat_batch", json={"message": "My name is Ann."})
    conversation_id = first.headers["x-conversation-id"]

    with client_a.stream(
        "POST",
        "/api/chat",
        json={"message": "What is my name?", "conversation_id": conversation_id},
        headers={"Accept": "text/event-stream"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-conversation-id"] == conversation_id
        events = parse_sse(response.read().decode())

    deltas = [data["delta"] for event, data in events if event == "message"]
    assert "".join(deltas) == "Your name is Ann."
    event, done = events[-1]
    assert event == "done"
    assert done["status"] == "complete" and done["error"] is None
    assert done["conversation_id"] == conversation_id
    assert done["usage"]["completion_tokens"] == 4 and done["usage"]["prompt_tokens"] > 0

    messages = conversation(client_a, conversation_id)["messages"]
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "My name is Ann."),
        ("assistant", "You said: My name is Ann."),
        ("user", "What is my name?"),
        ("assistant", "Your name is Ann."),
    ]
    assert messages[-1]["id"] == done["message_id"]


def test_batch_chat_returns_the_whole_reply(client_a: httpx.Client, fake: FakeLLMServer) -> None:
    response = client_a.post("/api/chat_batch", json={"message": "All at once"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "You said: All at once"
    assert not fake.chat_requests()[0].body.get("stream")
    stored = conversation(client_a, response.headers["x-conversation-id"])
    assert stored["messages"][-1]["content"] == "You said: All at once"


def test_settings_in_the_body_reach_the_provider_and_the_conversation(
    client_a: httpx.Client, fake: FakeLLMServer
) -> None:
    body = {
        "message": "Hello",
        "model": "groq:fake-small",
        "temperature": 0.3,
        "max_tokens": 50,
        "top_p": 0.9,
        "system_prompt": "Be brief.",
    }
    response = client_a.post("/api/chat_batch", json=body)
    assert response.status_code == 200, response.text
    sent = fake.chat_requests()[0].body
    assert (sent["model"], sent["temperature"], sent["max_tokens"], sent["top_p"]) == ("fake-small", 0.3, 50, 0.9)
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    settings_stored = conversation(client_a, response.headers["x-conversation-id"])["settings"]
    assert settings_stored == {
        "provider": "groq",
        "model": "fake-small",
        "temperature": 0.3,
        "max_tokens": 50,
        "top_p": 0.9,
        "system_prompt": "Be brief.",
    }
    # A bare model id means the default provider's model.
    client_a.post("/api/chat_batch", json={"message": "Hi", "model": "fake-large"}).raise_for_status()
    assert fake.chat_requests()[-1].body["model"] == "fake-large"


def test_a_provider_failure_ends_the_stream_with_its_description(client_a: httpx.Client, fake: FakeLLMServer) -> None:
    fake.enqueue(Behaviour(status=401, error_message="bad key"))
    response = client_a.post("/api/chat", json={"message": "Will fail"})
    assert response.status_code == 200
    assert response.text == describe_error("auth", "groq")
    reply = conversation(client_a, response.headers["x-conversation-id"])["messages"][-1]
    assert (reply["status"], reply["error_kind"], reply["error"]) == ("error", "auth", describe_error("auth", "groq"))

    fake.enqueue(Behaviour(text="partial answer here", cut_after_tokens=2))
    events = parse_sse(
        client_a.post("/api/chat", json={"message": "Cut"}, headers={"Accept": "text/event-stream"}).text
    )
    assert "".join(d["delta"] for e, d in events if e == "message") == "partial answer"
    event, done = events[-1]
    assert event == "done" and done["status"] == "error" and done["error"] == describe_error(done["error_kind"], "groq")


def test_sse_says_when_a_failed_request_is_retried(client_a: httpx.Client, fake: FakeLLMServer) -> None:
    fake.enqueue(Behaviour(status=429, retry_after="1"))  # then the default: an answer
    response = client_a.post("/api/chat", json={"message": "Busy?"}, headers={"Accept": "text/event-stream"})
    events = parse_sse(response.text)
    notices = [data["notice"] for event, data in events if event == "notice"]
    assert len(notices) == 1 and "retrying" in notices[0]
    assert "".join(d["delta"] for e, d in events if e == "message") == "You said: Busy?"
    assert events[-1][0] == "done" and events[-1][1]["status"] == "complete"


def test_a_provider_failure_in_batch_is_502_with_its_description(client_a: httpx.Client, fake: FakeLLMServer) -> None:
    fake.enqueue(Behaviour(status=401))
    response = client_a.post("/api/chat_batch", json={"message": "Will fail"})
    assert response.status_code == 502
    assert response.text == describe_error("auth", "groq")
    reply = conversation(client_a, response.headers["x-conversation-id"])["messages"][-1]
    assert reply["status"] == "error"


def test_closing_the_stream_stops_the_reply_and_the_upstream_request(
    client_a: httpx.Client, fake: FakeLLMServer
) -> None:
    fake.enqueue(Behaviour(tokens=400, tokens_per_s=100))
    with client_a.stream("POST", "/api/chat", json={"message": "A long story"}) as response:
        conversation_id = response.headers["x-conversation-id"]
        shown = next(response.iter_text())
    # Leaving the block closed the connection mid-reply.
    assert fake.abort_seen.wait(10)
    reply = wait_until(
        lambda: [m for m in conversation(client_a, conversation_id)["messages"][1:] if m["status"] != "streaming"]
    )[0]
    assert reply["status"] == "stopped"
    assert reply["content"].startswith(shown) and len(reply["content"].split()) < 400


BAD_BODIES = [
    pytest.param({"message": "   "}, "Type a message first", id="blank message"),
    pytest.param({}, "message is required", id="no message"),
    pytest.param({"message": 5}, "message", id="message not text"),
    pytest.param({"message": "hi", "temperature": 5}, "Temperature must be between 0 and 2", id="temperature 5"),
    pytest.param({"message": "hi", "temperature": "0.5"}, "temperature", id="temperature as text"),
    pytest.param({"message": "hi", "temperature": True}, "temperature", id="temperature as bool"),
    pytest.param({"message": "hi", "max_tokens": 0}, "Max tokens must be a whole number", id="max_tokens 0"),
    pytest.param({"message": "hi", "max_tokens": 1.5}, "max_tokens", id="max_tokens fractional"),
    pytest.param({"message": "hi", "max_tokens": 10**400}, "Max tokens", id="max_tokens huge"),
    pytest.param({"message": "hi", "top_p": 0}, "Top P", id="top_p 0"),
    pytest.param({"message": "hi", "system_prompt": "x" * 9000}, "system prompt", id="system prompt too long"),
    pytest.param({"message": "hi", "conversation_id": "not-an-id"}, "conversation_id", id="malformed id"),
    pytest.param({"message": "hi", "conversation_id": 42}, "conversation_id", id="id not text"),
    pytest.param({"message": "hi", "model": "nope:nothing"}, "Unknown model", id="unknown model"),
    pytest.param({"message": "hi", "model": ""}, "Unknown model", id="empty model"),
    pytest.param({"message": "hi\x00"}, "cannot be sent", id="NUL in message"),
    pytest.param({"message": "x" * 32_001}, "the limit is 32,000", id="message too long"),
    pytest.param({"message": "hi", "stream": True}, "stream", id="unknown field"),
    pytest.param(["hi"], "invalid", id="not an object"),
]


@pytest.mark.parametrize("path", ["/api/chat", "/api/chat_batch"])
@pytest.mark.parametrize(("body", "says"), BAD_BODIES)
def test_bad_bodies_get_422_with_a_clear_message(
    client_a: httpx.Client, fake: FakeLLMServer, path: str, body: Any, says: str
) -> None:
    before = client_a.get("/api/conversations").json()["conversations"]
    response = client_a.post(path, json=body)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and says.lower() in detail.lower()
    assert fake.chat_requests() == []
    assert client_a.get("/api/conversations").json()["conversations"] == before


def test_malformed_json_gets_422(client_a: httpx.Client) -> None:
    response = client_a.post("/api/chat", content=b'{"message": ', headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json() == {"detail": "The request body is not valid JSON."}


def test_oversized_bodies_get_413(client_a: httpx.Client) -> None:
    response = client_a.post("/api/chat", json={"message": "x" * (5 * 1024 * 1024)})
    assert response.status_code == 413


# --- conversations -----------------------------------------------------------------------------


def test_list_read_export_and_delete(client_a: httpx.Client) -> None:
    made = client_a.post("/api/chat_batch", json={"message": "Library test"})
    conversation_id = made.headers["x-conversation-id"]

    listing = client_a.get("/api/conversations").json()
    assert listing["page"] == 0
    assert listing["conversations"][0]["id"] == conversation_id  # newest activity first
    assert listing["conversations"][0]["title"] == "Library test"
    assert client_a.get("/api/conversations", params={"page": 10_000}).json() == {
        "page": 10_000,
        "has_more": False,
        "conversations": [],
    }
    for bad_page in ("-1", "10001", "two"):
        assert client_a.get("/api/conversations", params={"page": bad_page}).status_code == 422

    markdown = client_a.get(f"/api/conversations/{conversation_id}/export", params={"format": "md"})
    assert markdown.status_code == 200 and markdown.headers["content-type"].startswith("text/markdown")
    assert markdown.text.startswith("# Library test") and "You said: Library test" in markdown.text
    exported = client_a.get(f"/api/conversations/{conversation_id}/export", params={"format": "json"})
    assert exported.headers["content-type"] == "application/json"
    data = exported.json()
    assert data["format"] == "chatbot_app"
    assert [m["content"] for m in data["conversations"][0]["messages"]] == ["Library test", "You said: Library test"]
    assert "attachment" in exported.headers["content-disposition"]
    assert client_a.get(f"/api/conversations/{conversation_id}/export", params={"format": "pdf"}).status_code == 422

    assert client_a.delete(f"/api/conversations/{conversation_id}").status_code == 204
    assert client_a.get(f"/api/conversations/{conversation_id}").status_code == 404
    assert client_a.delete(f"/api/conversations/{conversation_id}").status_code == 404


def export_link(owner_id: str, conversation_id: str | None, export_format: str, ttl_s: int = 300) -> str:
    """A link as the page makes one (with the backend's CHATBOT_SECRET_KEY), from this process."""
    links = ExportLinks(Settings(secret_key=SECRET_KEY, export_link_ttl_s=ttl_s))
    return export_url(asyncio.run(links.token(ExportTicket(owner_id, conversation_id, export_format))))


def test_an_export_link_streams_the_file_without_a_key_and_a_forged_one_gets_404(
    client_b: httpx.Client, anonymous: httpx.Client
) -> None:
    first = client_b.post("/api/chat_batch", json={"message": "First to export"}).headers["x-conversation-id"]
    second = client_b.post("/api/chat_batch", json={"message": "Second to export"}).headers["x-conversation-id"]
    owner = owner_id_for_key(KEY_B)  # key A's minute of calls is spent by the other tests

    with anonymous.stream("GET", export_link(owner, None, "json")) as everything:
        assert everything.headers["content-type"] == "application/json"
        assert "transfer-encoding" in everything.headers  # streamed: no length known in advance
        assert everything.headers["content-disposition"] == 'attachment; filename="conversations.json"'
        data = json.loads(everything.read())
    ids = [c["id"] for c in data["conversations"]]
    assert ids[:2] == [second, first]
    markdown = anonymous.get(export_link(owner, first, "md"))
    assert markdown.status_code == 200 and markdown.text.startswith("# First to export")
    assert markdown.headers["content-disposition"] == f'attachment; filename="conversation-{first[:8]}.md"'

    elsewhere = ExportLinks(Settings(secret_key="another-deployment-" + "x" * 20))
    forged = export_url(asyncio.run(elsewhere.token(ExportTicket(owner, None, "json"))))
    for bad in (forged, "/api/exports/not-a-token", export_link(owner_id_for_key(KEY_A), first, "md")):
        answer = anonymous.get(bad)
        assert answer.status_code == 404, bad
        assert answer.json()["detail"].startswith("This export link is not valid, or has expired")


def test_a_key_cannot_see_another_keys_conversations(client_a: httpx.Client, client_b: httpx.Client) -> None:
    conversation_id = client_a.post("/api/chat_batch", json={"message": "Private"}).headers["x-conversation-id"]

    for method, path in [
        ("GET", f"/api/conversations/{conversation_id}"),
        ("GET", f"/api/conversations/{conversation_id}/export?format=md"),
        ("GET", f"/api/conversations/{conversation_id}/export?format=json"),
        ("DELETE", f"/api/conversations/{conversation_id}"),
    ]:
        response = client_b.request(method, path)
        assert response.status_code == 404
        assert response.json() == {"detail": "That conversation was not found."}
    response = client_b.post("/api/chat", json={"message": "Intrude", "conversation_id": conversation_id})
    assert response.status_code == 404 and response.json() == {"detail": "That conversation was not found."}
    assert conversation_id not in {c["id"] for c in client_b.get("/api/conversations").json()["conversations"]}

    # Still there, unchanged, for its owner.
    assert len(conversation(client_a, conversation_id)["messages"]) == 2


def test_a_message_on_a_branch_and_a_leaf_switch_through_the_api(
    client_a: httpx.Client, client_b: httpx.Client, fake: FakeLLMServer
) -> None:
    fake.enqueue_batch(*(Behaviour(text=f"Answer {n}") for n in range(1, 4)))
    first = client_a.post("/api/chat_batch", json={"message": "Plan a trip"})
    conversation_id = first.headers["x-conversation-id"]
    client_a.post("/api/chat_batch", json={"message": "In winter", "conversation_id": conversation_id})
    [_, answer, winter, _] = conversation(client_a, conversation_id)["messages"]

    client_a.post(
        "/api/chat_batch", json={"message": "In summer", "conversation_id": conversation_id, "parent_id": answer["id"]}
    ).raise_for_status()

    path = conversation(client_a, conversation_id)["messages"]
    assert [m["content"] for m in path] == ["Plan a trip", "Answer 1", "In summer", "Answer 3"]
    assert [m["parent_id"] for m in path[1:]] == [m["id"] for m in path[:-1]]
    assert (path[2]["sibling_ids"], path[2]["version"]) == ([winter["id"], path[2]["id"]], 2)
    assert (path[0]["sibling_ids"], path[0]["version"]) == ([path[0]["id"]], 1)

    switched = client_a.put(f"/api/conversations/{conversation_id}/leaf", json={"message_id": winter["id"]})
    assert switched.status_code == 200, switched.text
    assert [m["content"] for m in switched.json()["messages"]] == ["Plan a trip", "Answer 1", "In winter", "Answer 2"]
    assert conversation(client_a, conversation_id)["messages"] == switched.json()["messages"]

    # Another key, and bodies that name no message of this conversation, change nothing.
    leaf = f"/api/conversations/{conversation_id}/leaf"
    assert client_b.put(leaf, json={"message_id": winter["id"]}).status_code == 404
    for body in ({"message_id": "1"}, {"message_id": True}, {}, {"message_id": winter["id"], "extra": 1}):
        assert client_a.put(leaf, json=body).status_code == 422
    assert client_a.put(leaf, json={"message_id": 2**62}).status_code == 404
    other = client_a.post("/api/chat_batch", json={"message": "Elsewhere"}).headers["x-conversation-id"]
    foreign = conversation(client_a, other)["messages"][0]["id"]
    assert client_a.put(leaf, json={"message_id": foreign}).status_code == 404
    on_a_foreign_branch = {"message": "Sneak", "conversation_id": conversation_id, "parent_id": foreign}
    assert client_a.post("/api/chat_batch", json=on_a_foreign_branch).status_code == 404
    after_a_question = {"message": "Twice", "conversation_id": conversation_id, "parent_id": winter["id"]}
    refused = client_a.post("/api/chat_batch", json=after_a_question)
    assert refused.status_code == 422 and "finished reply" in refused.json()["detail"]
    assert [m["content"] for m in conversation(client_a, conversation_id)["messages"]][-1] == "Answer 2"


def test_unknown_and_malformed_conversation_ids_are_404(client_a: httpx.Client) -> None:
    for conversation_id in ("0123456789abcdef0123456789abcdef", "nope", "X" * 32):
        assert client_a.get(f"/api/conversations/{conversation_id}").status_code == 404


# --- browser origins ---------------------------------------------------------------------------


def test_browser_origins_must_be_configured(client_a: httpx.Client) -> None:
    refused = client_a.get("/api/conversations", headers={"Origin": "https://elsewhere.example"})
    assert refused.status_code == 403
    assert "CHATBOT_CORS_ORIGINS" in refused.json()["detail"]

    allowed = client_a.post("/api/chat_batch", json={"message": "From the app"}, headers={"Origin": ALLOWED_ORIGIN})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "X-Conversation-Id" in allowed.headers["access-control-expose-headers"]

    # The backend's own origin (the /docs page) is always allowed.
    assert client_a.get("/api/conversations", headers={"Origin": str(client_a.base_url).rstrip("/")}).is_success


# --- /v1: the openai SDK -----------------------------------------------------------------------


@pytest.fixture
def openai_client(openai_a: openai.OpenAI, fake: FakeLLMServer) -> openai.OpenAI:
    return openai_a


@pytest.fixture(scope="module")
def openai_a(api: Api) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{api.url}/v1", api_key=KEY_A, max_retries=0) as client:
        yield client


def test_v1_models_lists_provider_model_ids(openai_client: openai.OpenAI) -> None:
    assert [m.id for m in openai_client.models.list()] == ["groq:fake-large", "groq:fake-small"]


def test_v1_completion_uses_the_whole_context_and_stores_nothing(
    openai_client: openai.OpenAI, client_a: httpx.Client, fake: FakeLLMServer
) -> None:
    before = client_a.get("/api/conversations").json()
    completion = openai_client.chat.completions.create(
        model="groq:fake-large",
        messages=[
            {"role": "system", "content": "You remember names."},
            {"role": "user", "content": "My name is Bo."},
            {"role": "assistant", "content": "Hello Bo."},
            {"role": "user", "content": "What is my name?"},
        ],
        temperature=0.1,
        max_tokens=20,
    )
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Your name is Bo."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens == 4
    sent = fake.chat_requests()[0].body
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "user"]
    assert (sent["temperature"], sent["max_tokens"]) == (0.1, 20)
    assert client_a.get("/api/conversations").json() == before


def test_v1_streaming_with_usage(openai_client: openai.OpenAI, fake: FakeLLMServer) -> None:
    fake.enqueue(Behaviour(text="streamed in several parts", tokens_per_s=200))
    stream = openai_client.chat.completions.create(
        model="fake-large",
        messages=[{"role": "user", "content": "Go"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "streamed in several parts"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4


def test_v1_errors_are_openai_errors(openai_client: openai.OpenAI, api: Api, fake: FakeLLMServer) -> None:
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.NotFoundError, match="Unknown model"):
        openai_client.chat.completions.create(model="nope", messages=messages)  # type: ignore[arg-type]
    with pytest.raises(openai.UnprocessableEntityError, match="Temperature"):
        openai_client.chat.completions.create(model="fake-large", messages=messages, temperature=5)  # type: ignore[arg-type]
    with pytest.raises(openai.UnprocessableEntityError, match="at least one message"):
        openai_client.chat.completions.create(model="fake-large", messages=[])
    wrong = openai.OpenAI(base_url=f"{api.url}/v1", api_key="wrong-key-wrong-key", max_retries=0)
    with wrong, pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    # Upstream failures: before the first token a status the SDK understands, after it an error event.
    fake.enqueue(Behaviour(status=429, retry_after="1"))
    with pytest.raises(openai.RateLimitError, match="rate-limiting"):
        openai_client.chat.completions.create(model="fake-large", messages=messages, stream=True)  # type: ignore[arg-type]
    fake.enqueue(Behaviour(text="one two three", cut_after_tokens=1))
    stream = openai_client.chat.completions.create(model="fake-large", messages=messages, stream=True)  # type: ignore[arg-type]
    with pytest.raises(openai.APIError, match="connection dropped"):
        list(stream)


# --- fuzzing -----------------------------------------------------------------------------------


#: Examples per operation and generation mode; about 300 requests in all, 20 to 30 s.
FUZZ_EXAMPLES = 15


def test_generated_requests_never_get_a_server_error(api: Api, fake: FakeLLMServer) -> None:
    """Schemathesis generates valid and invalid requests for every operation in /openapi.json; none may get 5xx.

    (Driven through Hypothesis directly: schemathesis' pytest loader does not run under pytest 9.)
    """
    auth = {"Authorization": f"Bearer {KEY_A}"}
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    # with GET /api/attachments/{token}, GET /api/shared/{share_token}/files/{number}, GET /api/exports/{token},
    # POST /api/transcribe, GET /api/speech/{token}, PUT /api/conversations/{conversation_id}/leaf,
    # POST /api/conversations/{conversation_id}/fork, POST /api/replies/{reply_id}/tool_calls/{call_id}
    assert len(operations) == 18
    for operation in operations:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode)
            if mode == schemathesis.GenerationMode.POSITIVE and operation.path == "/v1/chat/completions":
                strategy = strategy.map(with_known_model)  # a random model id only ever gets 404

            @given(case=strategy)
            @settings(
                max_examples=FUZZ_EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def call(case: schemathesis.Case) -> None:
                case.call_and_validate(headers=auth, checks=[not_a_server_error], timeout=30)

            try:
                call()
            except Unsatisfiable:  # nothing in this operation can be made invalid (e.g. GET /api/health)
                assert mode == schemathesis.GenerationMode.NEGATIVE, operation.label
    # Failures after a stream has started cannot change its status; they would show in the log.
    assert "Traceback" not in api.backend.log_text()


def with_known_model(case: schemathesis.Case) -> schemathesis.Case:
    if isinstance(case.body, dict):
        case.body["model"] = "groq:fake-large"
    return case
