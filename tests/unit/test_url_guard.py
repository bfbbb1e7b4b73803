"""The SSRF guard: which URLs pass, which are refused and why, and what the pinned transport refuses.

Names are resolved by a double; IP literals must not be resolved at all. The pinned transport's connection
itself (address, Host, SNI, certificate) is tested against real servers in tests/integration/test_mcp_servers.py.
"""

from __future__ import annotations

import ipaddress
import socket

import httpx2
import pytest

from chatbot_app.services.url_guard import CheckedUrl, PinnedTransport, RefusedUrl, check_url

# Address -> the words of the refusal.
INTERNAL = {
    "127.0.0.1": "loopback",
    "127.8.9.10": "loopback",
    "10.1.2.3": "private",
    "172.16.0.1": "private",
    "172.31.255.254": "private",
    "192.168.1.1": "private",
    "169.254.169.254": "cloud metadata",
    "169.254.10.1": "link-local",
    "fd00:ec2::254": "cloud metadata",
    "::1": "loopback",
    "::ffff:127.0.0.1": "loopback",
    "::ffff:10.0.0.1": "private",
    "64:ff9b::a9fe:a9fe": "cloud metadata",  # NAT64 of 169.254.169.254
    "2002:a00:1::": "private",  # 6to4 of 10.0.0.1
    "100.64.0.1": "shared",
    "0.0.0.0": "unspecified",
    "::": "unspecified",
    "224.0.0.1": "multicast",
    "fe80::1": "link-local",
    "fc00::1": "private",
    "240.0.0.1": "reserved",
}
PUBLIC = ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"]


def resolver(table: dict[str, list[str]]):
    """A resolver double that knows `table`, and counts its look-ups."""

    async def resolve(host: str, port: int) -> list[str]:
        resolve.calls.append((host, port))
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    resolve.calls = []
    return resolve


def literal_url(address: str, scheme: str = "https") -> str:
    return f"{scheme}://[{address}]/mcp" if ":" in address else f"{scheme}://{address}/mcp"


@pytest.mark.parametrize(("address", "words"), INTERNAL.items())
async def test_internal_ip_literals_are_refused_without_a_lookup(address: str, words: str) -> None:
    resolve = resolver({})
    with pytest.raises(RefusedUrl, match=words) as refused:
        await check_url(literal_url(address), allow_private=False, resolve=resolve)
    assert "only public addresses are allowed" in str(refused.value)
    assert resolve.calls == []


@pytest.mark.parametrize(("address", "words"), INTERNAL.items())
async def test_a_name_resolving_to_an_internal_address_is_refused(address: str, words: str) -> None:
    resolve = resolver({"mcp.example.com": [address]})
    with pytest.raises(RefusedUrl, match=words) as refused:
        await check_url("https://mcp.example.com/mcp", allow_private=False, resolve=resolve)
    assert f"mcp.example.com ({ipaddress.ip_address(address)}) is" in str(refused.value)
    assert resolve.calls == [("mcp.example.com", 443)]


async def test_one_internal_address_among_public_ones_is_enough_to_refuse() -> None:
    resolve = resolver({"mcp.example.com": ["8.8.8.8", "10.0.0.7"]})
    with pytest.raises(RefusedUrl, match=r"10\.0\.0\.7\) is a private network address"):
        await check_url("https://mcp.example.com/mcp", allow_private=False, resolve=resolve)


@pytest.mark.parametrize("address", PUBLIC)
async def test_public_addresses_pass(address: str) -> None:
    checked = await check_url(literal_url(address), allow_private=False, resolve=resolver({}))
    assert checked.address == address
    assert checked.port == 443


async def test_a_public_name_passes_with_its_addresses() -> None:
    resolve = resolver({"mcp.example.com": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]})
    checked = await check_url("https://MCP.example.com:8443/mcp?x=1", allow_private=False, resolve=resolve)
    assert checked == CheckedUrl(
        url="https://MCP.example.com:8443/mcp?x=1",
        scheme="https",
        host="mcp.example.com",
        port=8443,
        addresses=("93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"),
    )
    assert checked.address == "93.184.215.14"  # the first is the one connected to


async def test_http_is_refused_without_the_flag_even_to_a_public_address() -> None:
    with pytest.raises(RefusedUrl, match="only https addresses are allowed"):
        await check_url("http://8.8.8.8/mcp", allow_private=False, resolve=resolver({}))


@pytest.mark.parametrize("address", [a for a, kind in INTERNAL.items() if kind == "cloud metadata"])
async def test_the_metadata_service_is_refused_even_with_the_flag(address: str) -> None:
    with pytest.raises(RefusedUrl, match="cloud metadata"):
        await check_url(literal_url(address, "http"), allow_private=True, resolve=resolver({}))
    resolve = resolver({"metadata.internal": [address]})
    with pytest.raises(RefusedUrl, match="cloud metadata"):
        await check_url("http://metadata.internal/latest", allow_private=True, resolve=resolve)


@pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/passwd", "gopher://127.0.0.1:6379/_x", "//x/y"])
async def test_other_schemes_are_refused_even_with_the_flag(url: str) -> None:
    with pytest.raises(RefusedUrl, match="only https or http addresses are allowed"):
        await check_url(url, allow_private=True, resolve=resolver({}))


@pytest.mark.parametrize("address", [a for a, kind in INTERNAL.items() if kind != "cloud metadata"])
async def test_every_internal_address_but_metadata_passes_with_allow_private(address: str) -> None:
    for scheme in ("http", "https"):
        checked = await check_url(literal_url(address, scheme), allow_private=True, resolve=resolver({}))
        assert checked.address == str(ipaddress.ip_address(address))
    resolve = resolver({"mcp.internal": [address]})
    checked = await check_url("http://mcp.internal:8000/mcp", allow_private=True, resolve=resolve)
    assert (checked.scheme, checked.port, checked.addresses) == ("http", 8000, (str(ipaddress.ip_address(address)),))


async def test_an_unknown_name_is_refused_with_a_sentence() -> None:
    with pytest.raises(RefusedUrl, match=r"The host nowhere\.example could not be found"):
        await check_url("https://nowhere.example/mcp", allow_private=False, resolve=resolver({}))


async def test_a_name_resolving_to_nothing_is_refused() -> None:
    with pytest.raises(RefusedUrl, match="could not be found"):
        await check_url("https://empty.example/mcp", allow_private=True, resolve=resolver({"empty.example": []}))


@pytest.mark.parametrize(
    ("url", "words"),
    [("https:///mcp", "names no host"), ("https://example.com:99999/", "port"), ("https://example.com:x/", "port")],
)
async def test_malformed_urls_are_refused(url: str, words: str) -> None:
    with pytest.raises(RefusedUrl, match=words):
        await check_url(url, allow_private=True, resolve=resolver({"example.com": ["8.8.8.8"]}))


async def test_the_system_resolver_is_used_by_default() -> None:
    checked = await check_url("http://localhost:9/x", allow_private=True)
    assert checked.addresses and all(address in ("127.0.0.1", "::1") for address in checked.addresses)
    with pytest.raises(RefusedUrl, match="loopback"):
        await check_url("https://localhost/x", allow_private=False)


@pytest.mark.parametrize(
    "other",
    [
        "https://evil.example/mcp",  # another host
        "https://mcp.example.com:8443/mcp",  # another port
        "http://mcp.example.com/mcp",  # another scheme
        "http://169.254.169.254/latest/meta-data/",
    ],
)
async def test_the_pinned_transport_refuses_any_other_origin_before_connecting(other: str) -> None:
    checked = CheckedUrl("https://mcp.example.com/mcp", "https", "mcp.example.com", 443, ("192.0.2.1",))
    transport = PinnedTransport(checked)
    with pytest.raises(RefusedUrl, match=r"this connection only goes to https://mcp\.example\.com/mcp"):
        await transport.handle_async_request(httpx2.Request("GET", other))
    await transport.aclose()
