"""Every request a processor sends goes through here: one guarded HTTP client.

`guarded_client()` is an httpx client whose connections go through `AddressGuard`: the
host name is resolved once, every address it resolves to must be public (not private,
loopback, link-local, reserved or multicast) unless the operator allowed it
(`allow_private`, `allowed_networks`, or the operator's own endpoints in
`allowed_hosts`), and the connection goes to the address that was checked, so a name
that re-resolves to an internal address between the check and the connect cannot slip
through. Redirects are not followed by the client (callers follow them by hand, each
hop checked again). `web` fetches users' URLs through it; `llm` talks to the
operator-listed endpoints through it; a new processor should use it too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from sheets.processors.runner import RowError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def with_scheme(text: str) -> str:
    """`text` with https:// in front when it has no scheme ("example.com/a", "//cdn.x")."""
    if SCHEME.match(text):
        return text
    return "https:" + text if text.startswith("//") else "https://" + text


class BlockedAddress(RowError):
    """A connection to an address that fetching is not allowed to reach."""


# IPv6 prefixes whose addresses carry an IPv4 address that a gateway will reach: NAT64
# (RFC 6052, 8215); 6to4 (2002::/16) and IPv4-mapped are read by `ipaddress` itself.
NAT64 = [ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48")]
# Public by `ipaddress`'s reckoning, yet no web site lives there: IETF protocol
# assignments (192.0.0.8 and friends) and the old 6to4 relay anycast.
NOT_WEB = [ipaddress.ip_network("192.0.0.0/24"), ipaddress.ip_network("192.88.99.0/24")]


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, NAT64), if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped or address.sixtofour:
        return address.ipv4_mapped or address.sixtofour
    if any(address in prefix for prefix in NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_kind(address: IPAddress) -> str | None:
    """What makes `address` off limits ("loopback", "private", ...), or None if public.
    An IPv6 address that carries an IPv4 one is judged by both."""
    inner = embedded_ipv4(address)
    if inner is not None and (kind := address_kind(inner)):
        return kind
    for kind in ("loopback", "private", "link_local", "multicast", "reserved", "unspecified"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    if any(address in network for network in NOT_WEB if network.version == address.version):
        return "non-public"
    return None if address.is_global else "non-public"


class AddressGuard(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that resolves, checks and connects to checked IPs."""

    def __init__(
        self,
        allow_private: bool,
        allowed_networks: Iterable[str] = (),
        allowed_hosts: Iterable[str] = (),
    ) -> None:
        self.allow_private = allow_private
        self.allowed_networks: list[IPNetwork] = [
            ipaddress.ip_network(net, strict=False) for net in allowed_networks
        ]
        self.allowed_hosts = {host.lower() for host in allowed_hosts}
        self._backend = httpcore.AnyIOBackend()

    def check(self, host: str, address: IPAddress) -> None:
        kind = address_kind(address)
        if kind is None or self.allow_private or host.lower() in self.allowed_hosts:
            return
        if any(address in network for network in self.allowed_networks):
            return
        shown = host if host == str(address) else f"{host} ({address})"
        raise BlockedAddress(
            f"refused to connect to {shown}: a {kind} address "
            "(private addresses are off; see CONVEYOR_WEB_ALLOW_PRIVATE)"
        )

    async def resolve(self, host: str, port: int, timeout: float | None) -> list[IPAddress]:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except socket.gaierror as exc:
            if exc.errno == socket.EAI_NONAME:
                raise RowError(f"unknown host {host}") from None
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc.strerror}") from None
        found = dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos)
        return list(found)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self.resolve(host, port, timeout)
        for address in addresses:
            self.check(host, address)
        error: Exception = httpcore.ConnectError(f"no address for {host}")
        for address in addresses:
            try:
                return await self._backend.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


def guarded_transport(guard: AddressGuard, connections: int) -> httpx.AsyncHTTPTransport:
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    # httpx (pinned) has no public hook for a network backend: give it a pool with ours.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=connections,
        max_keepalive_connections=connections,
        keepalive_expiry=5.0,
        network_backend=guard,
    )
    return transport


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def guarded_client(
    *,
    allow_private: bool = False,
    allowed_networks: Iterable[str] = (),
    allowed_hosts: Iterable[str] = (),
    connections: int = 10,
    **client_options: Any,
) -> httpx.AsyncClient:
    """An httpx client whose every connection is checked by `AddressGuard`."""
    guard = AddressGuard(allow_private, allowed_networks, allowed_hosts)
    return httpx.AsyncClient(
        transport=guarded_transport(guard, connections),
        follow_redirects=False,
        trust_env=False,
        **client_options,
    )


async def read_capped(response: httpx.Response, max_bytes: int, too_big: str) -> bytes:
    """The (decoded) body of a streamed response, or RowError(`too_big`) as soon as it
    grows past `max_bytes`: an upstream cannot make a worker hold more than that."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise RowError(too_big)
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > max_bytes:
            raise RowError(too_big)
    return bytes(body)


async def send_capped(
    client: httpx.AsyncClient, request: httpx.Request, max_bytes: int, too_big: str
) -> httpx.Response:
    """Send `request` and read at most `max_bytes` of its answer, then close it: the
    response returned holds the body in memory, as a plain `client.send` would."""
    response = await client.send(request, stream=True)
    try:
        body = await read_capped(response, max_bytes, too_big)
    finally:
        await response.aclose()
    headers = [
        (name, value)
        for name, value in response.headers.multi_items()
        if name.lower() not in ("content-encoding", "content-length", "transfer-encoding")
    ]
    return httpx.Response(
        response.status_code, headers=headers, content=body, request=response.request
    )
