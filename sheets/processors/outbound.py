"""Every request a processor sends goes through here: one guarded HTTP client.

`guarded_client()` is an httpx client whose connections go through `AddressGuard` (its
core is the engine's, `jobs.outbound`, reached through `jobs.public`): the
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

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpx

from jobs.public import AddressGuard as EngineGuard
from jobs.public import guarded_client as engine_client
from sheets.processors.runner import RowError

SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def with_scheme(text: str) -> str:
    """`text` with https:// in front when it has no scheme ("example.com/a", "//cdn.x")."""
    if SCHEME.match(text):
        return text
    return "https:" + text if text.startswith("//") else "https://" + text


class BlockedAddress(RowError):
    """A connection to an address that fetching is not allowed to reach."""


class AddressGuard(EngineGuard):
    """The engine's guard (`jobs.outbound`), its refusals row errors."""

    refused = BlockedAddress
    unknown_host = RowError


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
    return engine_client(
        allow_private=allow_private,
        allowed_networks=allowed_networks,
        allowed_hosts=allowed_hosts,
        connections=connections,
        guard_class=AddressGuard,
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
