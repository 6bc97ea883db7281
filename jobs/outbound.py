"""The core of the outbound guard: which addresses a request from Conveyor may reach.

`AddressGuard` is an httpcore network backend that resolves a host once, checks every
address it resolves to (public only, unless the operator allowed private addresses, a
network in `allowed_networks` or one of the operator's own hosts) and connects to the
address it checked, so a name that re-resolves to an internal address between the check
and the connect cannot slip through. `guarded_client()` is an httpx client built on it
that follows no redirects.

The engine's own outbound requests (webhook deliveries, `jobs.notices`) use it as is;
`sheets.processors.outbound` (through `jobs.public`) turns its refusals into row errors.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import httpcore

if TYPE_CHECKING:  # imported where a client is made: a cluster's processes fork without it
    import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class OutboundRefused(Exception):
    """A connection to an address the guard does not allow, or to an unknown host."""


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
    """An httpcore network backend that resolves, checks and connects to checked IPs.

    `refused` is the exception it raises (a subclass may raise its own: sheets raises
    row errors)."""

    refused: type[Exception] = OutboundRefused
    unknown_host: type[Exception] = OutboundRefused

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

    def why_not(self, host: str, address: IPAddress) -> str | None:
        """Why `address` (of `host`) may not be reached, or None if it may."""
        kind = address_kind(address)
        if kind is None or self.allow_private or host.lower() in self.allowed_hosts:
            return None
        if any(address in network for network in self.allowed_networks):
            return None
        shown = host if host == str(address) else f"{host} ({address})"
        return (
            f"refused to connect to {shown}: a {kind} address "
            "(private addresses are off; see CONVEYOR_WEB_ALLOW_PRIVATE)"
        )

    def check(self, host: str, address: IPAddress) -> None:
        if reason := self.why_not(host, address):
            raise self.refused(reason)

    async def resolve(self, host: str, port: int, timeout: float | None) -> list[IPAddress]:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except socket.gaierror as exc:
            if exc.errno == socket.EAI_NONAME:
                raise self.unknown_host(f"unknown host {host}") from None
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
    import httpx

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


def guarded_client(
    *,
    allow_private: bool = False,
    allowed_networks: Iterable[str] = (),
    allowed_hosts: Iterable[str] = (),
    connections: int = 10,
    guard_class: type[AddressGuard] = AddressGuard,
    **client_options: Any,
) -> httpx.AsyncClient:
    """An httpx client whose every connection is checked by `guard_class`."""
    import httpx

    guard = guard_class(allow_private, allowed_networks, allowed_hosts)
    return httpx.AsyncClient(
        transport=guarded_transport(guard, connections),
        follow_redirects=False,
        trust_env=False,
        **client_options,
    )
