"""A guard against server-side request forgery for URLs that users or admins configure (MCP servers).

`check_url` refuses a URL whose host is, or resolves to, an address inside the network the app runs in:
loopback, private, link-local (the cloud metadata service), shared (carrier NAT), multicast, reserved or
unspecified, also when such an address hides inside an IPv6 one. Every resolved address must pass: a name
with one public and one private address is refused.

A checked name must then be connected to at the address that was checked, never resolved again: a second
lookup could answer differently (DNS rebinding). `PinnedTransport` does that for httpx2 (the HTTP client of
the MCP SDK): it connects to the checked address, keeps the Host header, TLS SNI and the certificate check on
the original name, and sends nothing to any other origin, so a redirect can never lead it elsewhere.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

import httpx2

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Resolves (host, port) to IP address strings; tests pass a double, the app the system resolver.
Resolver = Callable[[str, int], Awaitable[list[str]]]

#: The metadata services of the clouds (AWS's IPv6 one included): credentials live there.
METADATA_ADDRESSES = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})
#: Carrier-grade NAT (RFC 6598): not public, yet neither `is_private` nor `is_reserved` in Python 3.11.
SHARED_NETWORK = ipaddress.ip_network("100.64.0.0/10")
#: IPv6 addresses that carry an IPv4 one a gateway connects to (NAT64, RFC 6052).
NAT64_NETWORK = ipaddress.ip_network("64:ff9b::/96")

DEFAULT_PORTS = {"http": 80, "https": 443}


class RefusedUrl(ValueError):
    """A URL the app will not connect to; the message is a sentence for the admin or the model."""


@dataclass(frozen=True, slots=True)
class CheckedUrl:
    """A URL that passed `check_url`, with the address to connect to."""

    url: str
    scheme: str
    host: str  # lower case, without IPv6 brackets
    port: int
    #: Every address the host resolved to (all of them passed); the first is the one connected to.
    addresses: tuple[str, ...]

    @property
    def address(self) -> str:
        return self.addresses[0]


async def system_resolve(host: str, port: int) -> list[str]:
    """The host's addresses from the system resolver, without blocking the event loop."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))  # each once, in the resolver's order


async def check_url(url: str, *, allow_private: bool, resolve: Resolver = system_resolve) -> CheckedUrl:
    """`url` with its host's addresses, or RefusedUrl saying why the app will not connect to it.

    Without `allow_private` only `https` to public addresses passes; with it, `http` and any address do
    (a server on the same host or network), but the address is still resolved once and pinned.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    shown_url = _shown_origin(parts)  # never its path, query or credentials: refusals reach the user and the logs
    allowed_schemes = ("https", "http") if allow_private else ("https",)
    if scheme not in allowed_schemes:
        raise RefusedUrl(f"{shown_url} is refused: only {' or '.join(allowed_schemes)} addresses are allowed.")
    host = parts.hostname
    if not host:
        raise RefusedUrl(f"{shown_url} is refused: it names no host.")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise RefusedUrl(f"{shown_url} is refused: its port is not a number from 0 to 65535.") from None
    addresses = [literal] if (literal := _ip_literal(host)) else await _resolve(host, port, resolve)
    for address in addresses:
        # The metadata service hands out the host's cloud credentials: never, not even with the flag.
        reason = blocked_reason(address) if not allow_private else _metadata_reason(address)
        if reason:
            shown = host if literal else f"{host} ({address})"
            raise RefusedUrl(f"{shown_url} is refused: {shown} is {reason}, and only public addresses are allowed.")
    return CheckedUrl(url.strip(), scheme, host, port, tuple(str(address) for address in addresses))


def _shown_origin(parts: SplitResult) -> str:
    host = parts.hostname or ""
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}" if host else f"{parts.scheme}:"


def blocked_reason(address: IPAddress) -> str | None:
    """Why `address` is inside a network the app must not reach from a configured URL, or None if public."""
    if isinstance(address, ipaddress.IPv6Address):
        if (inner := _translated_ipv4(address)) is not None:  # the connection ends at the IPv4 address
            reason = blocked_reason(inner)
            return reason and f"{reason} ({inner} inside an IPv6 address)"
        if address.sixtofour is not None and (reason := blocked_reason(address.sixtofour)):
            return f"{reason} ({address.sixtofour} inside an IPv6 address)"
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address in SHARED_NETWORK:
        return "a shared (carrier-grade NAT) address"
    if address.is_reserved:
        return "a reserved address"
    if address.is_private or not address.is_global:  # not global: documentation, benchmarking, ... ranges
        return "a private network address"
    return None


def _metadata_reason(address: IPAddress) -> str | None:
    inner = _translated_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else None
    return "a cloud metadata address" if address in METADATA_ADDRESSES or inner in METADATA_ADDRESSES else None


def _translated_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped or NAT64 IPv6 address stands for: where a connection to it ends up."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64_NETWORK:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def _resolve(host: str, port: int, resolve: Resolver) -> list[IPAddress]:
    try:
        found = await resolve(host, port)
    except OSError as exc:  # socket.gaierror: no such name, no network
        raise RefusedUrl(f"The host {host} could not be found ({exc.strerror or exc}).") from None
    addresses = [ipaddress.ip_address(address) for address in found]
    if not addresses:
        raise RefusedUrl(f"The host {host} could not be found.")
    return addresses


class PinnedTransport(httpx2.AsyncBaseTransport):
    """An httpx2 transport that sends requests for the checked origin to the checked address, and no others.

    The request the inner transport gets names the checked IP address, so nothing resolves the name again.
    It keeps the Host header of the original request (set when the request was built), and for https the
    `sni_hostname` extension makes httpcore send the original name as TLS SNI and check the certificate
    against it. A request for any other origin (scheme, host, port), such as a redirect a client chose to
    follow, is refused before anything connects.
    """

    def __init__(self, checked: CheckedUrl, *, verify: ssl.SSLContext | bool = True) -> None:
        self._checked = checked
        self._origin = _origin(httpx2.URL(checked.url))
        # No proxy here, whatever the environment says: a proxy would connect to the name on its own.
        self._inner = httpx2.AsyncHTTPTransport(verify=verify, proxy=None)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if _origin(request.url) != self._origin:
            scheme, host, port = _origin(request.url)
            raise RefusedUrl(
                f"A request to {scheme}://{host}:{port} was refused: this connection only goes to {self._checked.url}."
            )
        extensions = dict(request.extensions)
        if request.url.scheme == "https":
            extensions["sni_hostname"] = self._checked.host
        # A copy, so the caller's request (and redirects built from it) keep the original URL.
        pinned = httpx2.Request(
            request.method,
            request.url.copy_with(host=self._checked.address),
            headers=request.headers,  # the Host header among them: still the original name
            stream=request.stream,
            extensions=extensions,
        )
        return await self._inner.handle_async_request(pinned)

    async def aclose(self) -> None:
        await self._inner.aclose()


def _origin(url: httpx2.URL) -> tuple[str, str, int]:
    return url.scheme, url.host, url.port or DEFAULT_PORTS.get(url.scheme, 0)
