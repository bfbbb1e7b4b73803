"""MCP servers as tools, against a real MCP server (the SDK's MCPServer) on loopback.

Loopback needs `allow_private=True`, except in the refusal tests, which check that nothing connects at all.
Where a test needs a name rather than an address, a resolver double answers 127.0.0.1 for it: the guard still
checks that answer, and the connection is pinned to it.
"""

from __future__ import annotations

import asyncio
import datetime
import re
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from chatbot_app.services.tools.mcp_servers import McpClients, McpServerConfig, McpUnavailable, parse_mcp_servers
from chatbot_app.services.url_guard import PinnedTransport, RefusedUrl, check_url
from tests.fakes.mcp_server import TEST_HOST, FakeMcpServer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def to_loopback(*names: str):
    """A resolver double: these names resolve to 127.0.0.1 (and it counts the look-ups)."""

    async def resolve(host: str, port: int) -> list[str]:
        resolve.calls.append(host)
        if host not in names:
            raise OSError(f"unexpected look-up of {host}")
        return ["127.0.0.1"]

    resolve.calls = []
    return resolve


def config(url: str, **fields) -> McpServerConfig:
    return McpServerConfig(name="fake", url=url, **fields)


async def wait_for(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


@pytest.fixture
def own_server() -> Iterator[FakeMcpServer]:
    """A server of the test's own, for tests that stop or restart it."""
    server = FakeMcpServer().start()
    yield server
    server.stop()


@pytest.fixture
def legacy_server() -> Iterator[FakeMcpServer]:
    """A 2025-era server: no server/discover, and sessions (mcp-session-id) that a restart loses."""
    server = FakeMcpServer(legacy=True).start()
    yield server
    server.stop()


# -- configuration (CHATBOT_MCP_SERVERS) ---------------------------------------------------------------


def test_parses_the_servers_with_their_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WIKI_MCP_AUTH", raising=False)  # read at connect time, not now
    text = """[
        {"name": "wiki", "url": "https://mcp.example.com/mcp", "headers": {"Authorization": "WIKI_MCP_AUTH"},
         "default_on": true, "trusted": true},
        {"name": "local_2", "url": "http://127.0.0.1:8020/mcp", "enabled": false}
    ]"""
    assert parse_mcp_servers(text) == [
        McpServerConfig("wiki", "https://mcp.example.com/mcp", {"Authorization": "WIKI_MCP_AUTH"}, True, True, True),
        McpServerConfig("local_2", "http://127.0.0.1:8020/mcp", {}, False, False, False),
    ]
    assert parse_mcp_servers("  ") == []


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{", "not valid JSON"),
        ('{"name": "wiki"}', "must be a JSON list"),
        ('["wiki"]', "server 1: must be an object"),
        ('[{"url": "https://x.example/mcp"}]', "server 1: has no name"),
        ('[{"name": "wiki"}]', "server 'wiki': has no url"),
        ('[{"name": "Wiki", "url": "https://x.example/mcp"}]', "must be 1 to 32 lower-case letters"),
        ('[{"name": "-wiki", "url": "https://x.example/mcp"}]', "starting with a letter or a digit"),
        (f'[{{"name": "{"a" * 33}", "url": "https://x.example/mcp"}}]', "must be 1 to 32"),
        ('[{"name": "groq", "url": "https://x.example/mcp"}]', "is taken by the tools groq runs itself"),
        ('[{"name": "wiki", "url": "ftp://x.example/"}]', "must be an http(s) URL"),
        ('[{"name": "wiki", "url": "https://x.example/mcp", "trusted": "yes"}]', "trusted must be true or false"),
        ('[{"name": "wiki", "url": "https://x.example/mcp", "defualt_on": true}]', "unknown key 'defualt_on'"),
        ('[{"name": "wiki", "url": "https://x.example/mcp", "headers": ["A"]}]', "headers must be an object"),
        ('[{"name": "wiki", "url": "https://x.example/mcp", "headers": {"A": "Bearer xyz"}}]', "environment variable"),
        ('[{"name": "wiki", "url": "https://x.example/mcp", "headers": {"A b": "X"}}]', "is not a header name"),
        (
            '[{"name": "wiki", "url": "https://a.example/mcp"}, {"name": "wiki", "url": "https://b.example/mcp"}]',
            "names the server 'wiki' twice",
        ),
    ],
)
def test_bad_configurations_say_what_is_wrong(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=re.escape(words)):
        parse_mcp_servers(text)


# -- listing -------------------------------------------------------------------------------------


async def test_lists_the_tools_with_their_read_only_flags(mcp_fake: FakeMcpServer) -> None:
    tools = {tool.name: tool for tool in await McpClients(allow_private=True).tools(config(mcp_fake.url))}
    assert set(tools) == {"lookup", "write_note", "slow", "broken", "huge"}
    assert {name for name, tool in tools.items() if not tool.read_only} == {"write_note"}
    lookup = tools["lookup"]
    assert (lookup.server, lookup.description) == ("fake", "Look up a fact by its key, e.g. capital-of-france.")
    assert lookup.parameters["properties"]["key"]["type"] == "string"
    assert lookup.parameters["required"] == ["key"]


async def test_the_list_is_asked_once_within_the_ttl(mcp_fake: FakeMcpServer) -> None:
    clock = Clock()
    clients = McpClients(allow_private=True, ttl_s=300, clock=clock)
    server = config(mcp_fake.url)
    first = await clients.tools(server)
    clock.now += 299
    assert await clients.tools(server) == first
    assert mcp_fake.rpc_methods().count("tools/list") == 1
    clock.now += 2
    await clients.tools(server)
    assert mcp_fake.rpc_methods().count("tools/list") == 2


async def test_replies_that_need_the_list_at_once_share_one_listing(mcp_fake: FakeMcpServer) -> None:
    clients = McpClients(allow_private=True)
    server = config(mcp_fake.url)
    mcp_fake.list_gate = gate = threading.Event()
    waiter = asyncio.create_task(clients.tools(server))
    # Until the listing is under way at the server (which runs in a thread: its log is polled).
    await asyncio.to_thread(_wait_for, lambda: "tools/list" in mcp_fake.rpc_methods())
    waiter.cancel()  # a reply stopped while it waits: the others' listing goes on
    others = [asyncio.create_task(clients.tools(server)) for _ in range(10)]
    await asyncio.sleep(0)  # they have joined the listing
    gate.set()

    lists = await asyncio.gather(*others)

    assert waiter.cancelled()
    assert all(tools == lists[0] for tools in lists) and len(lists[0]) == 5
    assert mcp_fake.rpc_methods() == ["server/discover", "tools/list"]  # one session, one listing


async def test_a_kept_list_is_served_while_the_server_is_down(own_server: FakeMcpServer) -> None:
    clients = McpClients(allow_private=True)
    first = await clients.tools(config(own_server.url))
    own_server.stop()
    assert await clients.tools(config(own_server.url)) == first


async def test_a_stopped_server_is_unavailable(own_server: FakeMcpServer) -> None:
    own_server.stop()
    clients = McpClients(allow_private=True)
    with pytest.raises(McpUnavailable, match=r"The MCP server fake is unavailable\. It could not be reached\."):
        await clients.tools(config(own_server.url))
    outcome = await clients.call(config(own_server.url), "lookup", {"key": "capital-of-france"})
    assert outcome.is_error
    assert outcome.text == "The tool lookup of the MCP server fake could not be run. It could not be reached."


# -- calls ---------------------------------------------------------------------------------------


async def test_a_call_returns_the_tools_text(mcp_fake: FakeMcpServer) -> None:
    clients = McpClients(allow_private=True)
    outcome = await clients.call(config(mcp_fake.url), "lookup", {"key": "capital-of-france"})
    assert (outcome.text, outcome.is_error, outcome.truncated) == ("Paris", False, False)
    outcome = await clients.call(config(mcp_fake.url), "write_note", {"text": "buy milk"})
    assert (outcome.text, outcome.is_error) == ("Noted (1 notes).", False)
    assert mcp_fake.notes == ["buy milk"]


async def test_a_tool_that_raises_gives_an_error_outcome(mcp_fake: FakeMcpServer) -> None:
    outcome = await McpClients(allow_private=True).call(config(mcp_fake.url), "broken", {})
    assert outcome.is_error and not outcome.truncated
    assert outcome.text.startswith("The tool broken of the MCP server fake reported an error: ")


@pytest.mark.parametrize(("tool", "arguments"), [("no_such_tool", {}), ("lookup", {"wrong": 1})])
async def test_a_call_the_server_rejects_gives_an_error_outcome(mcp_fake: FakeMcpServer, tool: str, arguments) -> None:
    outcome = await McpClients(allow_private=True).call(config(mcp_fake.url), tool, arguments)
    assert outcome.is_error
    assert outcome.text.startswith(f"The tool {tool} of the MCP server fake reported an error: ")


async def test_a_huge_answer_is_cut_and_says_so(mcp_fake: FakeMcpServer) -> None:
    outcome = await McpClients(allow_private=True, max_result_chars=5_000).call(config(mcp_fake.url), "huge", {})
    assert outcome.truncated and not outcome.is_error
    assert outcome.text.startswith("All work and no play")
    assert len(outcome.text) < 5_200
    assert "cut" in outcome.text[5_000:] and "200,000" in outcome.text[5_000:]


async def test_a_slow_tool_times_out(mcp_fake: FakeMcpServer) -> None:
    started = time.monotonic()
    outcome = await McpClients(allow_private=True, timeout_s=1).call(config(mcp_fake.url), "slow", {"seconds": 30})
    assert outcome.is_error
    assert outcome.text == "The tool slow of the MCP server fake did not answer within 1 s."
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("kind", ["mcp_fake", "legacy_server"])
async def test_cancelling_a_call_returns_promptly(request: pytest.FixtureRequest, kind: str) -> None:
    server: FakeMcpServer = request.getfixturevalue(kind)
    call = asyncio.create_task(McpClients(allow_private=True).call(config(server.url), "slow", {"seconds": 30}))
    await wait_for(lambda: "tools/call" in server.rpc_methods())
    started = time.monotonic()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert time.monotonic() - started < 2


async def test_a_header_takes_its_value_from_the_environment(
    mcp_fake: FakeMcpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = config(mcp_fake.url, headers={"Authorization": "FAKE_MCP_TOKEN"})
    clients = McpClients(allow_private=True)
    monkeypatch.delenv("FAKE_MCP_TOKEN", raising=False)
    with pytest.raises(McpUnavailable, match="needs the environment variable FAKE_MCP_TOKEN"):
        await clients.tools(server)
    assert mcp_fake.requests == []
    monkeypatch.setenv("FAKE_MCP_TOKEN", "Bearer s3cret")
    assert (await clients.call(server, "lookup", {"key": "capital-of-france"})).text == "Paris"
    assert {request.headers.get("authorization") for request in mcp_fake.requests} == {"Bearer s3cret"}


# -- restarts and lost sessions --------------------------------------------------------------------


@pytest.mark.parametrize("legacy", [False, True])
async def test_calls_work_across_a_server_restart(own_server: FakeMcpServer, legacy: bool) -> None:
    own_server.legacy = legacy
    clients = McpClients(allow_private=True)
    assert (await clients.call(config(own_server.url), "lookup", {"key": "capital-of-france"})).text == "Paris"
    own_server.restart()
    assert (await clients.call(config(own_server.url), "lookup", {"key": "capital-of-france"})).text == "Paris"


async def test_a_lost_session_is_retried_once_in_a_new_one(legacy_server: FakeMcpServer) -> None:
    legacy_server.lose_next_session()
    outcome = await McpClients(allow_private=True).call(config(legacy_server.url), "write_note", {"text": "once"})
    assert (outcome.text, outcome.is_error) == ("Noted (1 notes).", False)
    assert legacy_server.rpc_methods().count("initialize") == 2
    assert legacy_server.notes == ["once"]  # the lost session's call never ran


async def test_a_session_lost_twice_is_not_retried_again(legacy_server: FakeMcpServer) -> None:
    legacy_server.lose_next_session(times=2)
    outcome = await McpClients(allow_private=True).call(config(legacy_server.url), "lookup", {"key": "x"})
    assert outcome.is_error
    assert outcome.text == (
        "The tool lookup of the MCP server fake could not be run. It answered with an error: Session not found."
    )
    assert legacy_server.rpc_methods().count("initialize") == 2


# -- the guard, for real -----------------------------------------------------------------------------


class Listener:
    """A TCP listener on loopback that counts connections, answering them with `reply` (or nothing)."""

    def __init__(self, reply: bytes = b"") -> None:
        self.reply = reply
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Listener:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(self.reply)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.mark.parametrize(
    "url", ["https://127.0.0.1:{port}/mcp", "https://[::1]:{port}/mcp", f"https://{TEST_HOST}:{{port}}/mcp"]
)
async def test_without_allow_private_a_loopback_server_is_refused_without_connecting(url: str) -> None:
    resolve = to_loopback(TEST_HOST)
    async with Listener() as listener:
        clients = McpClients(allow_private=False, resolve=resolve)
        server = config(url.format(port=listener.port))
        with pytest.raises(McpUnavailable, match=r"is a loopback address, and only public addresses are allowed\."):
            await clients.tools(server)
        outcome = await clients.call(server, "lookup", {"key": "x"})
        assert outcome.is_error and "is a loopback address" in outcome.text
    assert listener.connections == 0


async def test_without_allow_private_the_real_servers_url_is_refused(mcp_fake: FakeMcpServer) -> None:
    with pytest.raises(McpUnavailable, match="only https addresses are allowed"):
        await McpClients(allow_private=False).tools(config(mcp_fake.url))
    assert mcp_fake.requests == []


async def test_the_connection_keeps_the_configured_name_in_the_host_header(mcp_fake: FakeMcpServer) -> None:
    resolve = to_loopback(TEST_HOST)
    clients = McpClients(allow_private=True, resolve=resolve)
    url = f"http://{TEST_HOST}:{mcp_fake.port}/mcp"  # the name resolves nowhere but in the double
    assert (await clients.call(config(url), "lookup", {"key": "capital-of-france"})).text == "Paris"
    assert {request.headers["host"] for request in mcp_fake.requests} == {f"{TEST_HOST}:{mcp_fake.port}"}
    assert resolve.calls == [TEST_HOST]  # looked up once, by the guard: the connection used its answer


@pytest.mark.parametrize("target", ["http://127.0.0.1:{port}/mcp", "http://169.254.169.254/latest/meta-data/"])
async def test_a_redirect_off_the_checked_origin_is_not_followed(target: str) -> None:
    """A server that passed the guard answers 307 to elsewhere: nothing follows it, the error names it."""
    async with Listener() as elsewhere:
        location = target.format(port=elsewhere.port)
        redirect = f"HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode()
        async with Listener(redirect) as first_hop:
            with pytest.raises(McpUnavailable, match=f"Redirect to {location} not followed"):
                await McpClients(allow_private=True).tools(config(f"http://127.0.0.1:{first_hop.port}/mcp"))
            assert first_hop.connections >= 1
            # A client that does follow redirects is stopped by the pinned transport itself.
            checked = await check_url(f"http://127.0.0.1:{first_hop.port}/mcp", allow_private=True)
            async with httpx2.AsyncClient(transport=PinnedTransport(checked), follow_redirects=True) as client:
                with pytest.raises(RefusedUrl, match="this connection only goes to"):
                    await client.get(checked.url)
    assert elsewhere.connections == 0


# -- TLS: the pinned address with the configured name's certificate ----------------------------------------


def certificate(name: str, directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for `name`, and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / f"{name}.pem", directory / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


class TlsServer:
    """HTTPS on 127.0.0.1 with a certificate for `name`: records the SNI and Host it is sent."""

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert_file, key_file)
        self.context.sni_callback = lambda _socket, name, _context: self.sni.append(name)
        self.sni: list[str | None] = []
        self.hosts: list[str] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            writer.close()
            return
        self.hosts += [line.split(":", 1)[1].strip() for line in head.split("\r\n") if line.lower().startswith("host:")]
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    async def __aenter__(self) -> TlsServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        self.server.close()


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[TlsServer, ssl.SSLContext]]:
    cert_file, key_file = certificate(TEST_HOST, tmp_path)
    async with TlsServer(cert_file, key_file) as server:
        yield server, ssl.create_default_context(cafile=str(cert_file))


async def test_https_goes_to_the_checked_address_with_the_names_sni_and_certificate(tls_server) -> None:
    server, trust = tls_server
    url = f"https://{TEST_HOST}:{server.port}/"
    checked = await check_url(url, allow_private=True, resolve=to_loopback(TEST_HOST))
    async with httpx2.AsyncClient(transport=PinnedTransport(checked, verify=trust)) as client:
        response = await client.get(url)
    assert (response.status_code, response.text) == (200, "ok")
    assert server.sni == [TEST_HOST]
    assert server.hosts == [f"{TEST_HOST}:{server.port}"]


async def test_the_certificate_is_checked_against_the_configured_name(tls_server) -> None:
    server, trust = tls_server
    other = "other.example.test"  # pinned to the same address, but the certificate is not for it
    url = f"https://{other}:{server.port}/"
    checked = await check_url(url, allow_private=True, resolve=to_loopback(other))
    async with httpx2.AsyncClient(transport=PinnedTransport(checked, verify=trust)) as client:
        with pytest.raises(httpx2.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get(url)
    assert server.hosts == []


def _wait_for(condition: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)
