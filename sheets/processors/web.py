"""The `web` processor: fetch the URL in a column and extract facts about the page.

Outputs the HTTP status, the final URL after redirects, the title, the meta description
and the length of the main text (script, style, nav and the like stripped). An HTTP
error status (404, 500) is a result; network errors, timeouts, redirect loops and pages
over `max_bytes` are row errors. A URL without a scheme is fetched over https://.

Every connection is checked where it is made: the host name is resolved once, all its
addresses must be public (not private, loopback, link-local, reserved or multicast)
unless `CONVEYOR_WEB_ALLOW_PRIVATE` or `CONVEYOR_WEB_ALLOWED_NETWORKS` allow them, and
the connection goes to the address that was checked. Redirects are followed by hand,
so each hop gets a new check (and a host that re-resolves to an internal address
between the check and the connect cannot slip through).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx
from django.conf import settings
from selectolax.lexbor import LexborHTMLParser

from sheets.processors.base import Option, OptionsError, RowError, match_column, processor
from sheets.processors.ratelimit import describe_http_error, send_with_retries

WEB_RETRY_STATUSES = frozenset({429, 502, 503, 504})
HTML_TYPES = ("text/html", "application/xhtml+xml")
NOT_TEXT_TAGS = ["script", "style", "noscript", "template", "nav", "svg", "iframe"]
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

OPTIONS = [
    Option(
        "url_column",
        "URL column",
        "str",
        default="",
        help="The column holding the URLs (default: the first column).",
    ),
    Option("timeout", "Timeout (s)", "float", default=10.0, min=0.1, max=120),
    Option("max_bytes", "Largest page to read (bytes)", "int", default=2_000_000, min=1_000),
    Option("max_redirects", "Redirects to follow", "int", default=5, min=0, max=20),
    Option("concurrency", "Pages at once", "int", default=8, min=1, max=64),
    Option(
        "reuse",
        "Reuse earlier answers",
        "bool",
        default=True,
        help="Rows you already had answered (same inputs and options) cost no request.",
    ),
]
OUTPUTS = ["status", "final_url", "title", "description", "text_length"]


# --- addresses -------------------------------------------------------------


class BlockedAddress(RowError):
    """A connection to an address that fetching is not allowed to reach."""


def address_kind(address: IPAddress) -> str | None:
    """What makes `address` off limits ("loopback", "private", ...), or None if public."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    for kind in ("loopback", "private", "link_local", "multicast", "reserved", "unspecified"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if address.is_global else "non-public"


class AddressGuard(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that resolves, checks and connects to checked IPs."""

    def __init__(self, allow_private: bool, allowed_networks: Iterable[str]) -> None:
        self.allow_private = allow_private
        self.allowed_networks: list[IPNetwork] = [
            ipaddress.ip_network(net, strict=False) for net in allowed_networks
        ]
        self._backend = httpcore.AnyIOBackend()

    def check(self, host: str, address: IPAddress) -> None:
        kind = address_kind(address)
        if kind is None or self.allow_private:
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


# --- URLs --------------------------------------------------------------------


def with_scheme(text: str) -> str:
    """`text` with https:// in front when it has no scheme ("example.com/a", "//cdn.x")."""
    if SCHEME.match(text):
        return text
    return "https:" + text if text.startswith("//") else "https://" + text


def normalise_url(value: str) -> str:
    """The URL to fetch: trimmed, with https:// when it has no scheme; RowError if unusable."""
    text = value.strip()
    if not text:
        raise RowError("no URL in this row")
    text = with_scheme(text)
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise RowError(f"not a valid URL: {value.strip()!r} ({exc})") from None
    if url.scheme not in ("http", "https"):
        raise RowError(f"cannot fetch {url.scheme}:// URLs, only http:// and https://")
    if not url.host:
        raise RowError(f"not a valid URL: {value.strip()!r} (no host)")
    return str(url)


def redirect_target(response: httpx.Response, current: str) -> str:
    location = response.headers.get("location", "").strip()
    try:
        target = httpx.URL(current).join(location)
    except httpx.InvalidURL:
        raise RowError(f"{current} redirected to an invalid URL: {location!r}") from None
    if target.scheme not in ("http", "https"):
        raise RowError(f"{current} redirected to a {target.scheme}:// URL, which is not fetched")
    return str(target.copy_with(fragment=None))


# --- pages ---------------------------------------------------------------------


def collapse(text: str | None) -> str:
    return " ".join((text or "").split())


def page_facts(html: str | bytes) -> dict[str, Any]:
    """Title, meta description and main text length of an HTML document."""
    tree = LexborHTMLParser(html, encoding=isinstance(html, bytes))
    title = tree.css_first("title")
    description = tree.css_first('meta[name="description" i]') or tree.css_first(
        'meta[property="og:description" i]'
    )
    tree.strip_tags(NOT_TEXT_TAGS)
    main = tree.css_first("main") or tree.css_first("article") or tree.body
    return {
        "title": collapse(title.text()) if title else "",
        "description": collapse(description.attributes.get("content")) if description else "",
        "text_length": len(collapse(main.text(separator=" "))) if main else 0,
    }


def is_html(response: httpx.Response) -> bool:
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    return not content_type or content_type in HTML_TYPES


async def read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    """The (decoded) body, or RowError as soon as it grows past `max_bytes`."""
    too_big = RowError(
        f"the page is larger than max_bytes ({max_bytes:,} bytes); raise it to read this page"
    )
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_big
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > max_bytes:
            raise too_big
    return bytes(body)


async def page_result(response: httpx.Response, url: str, max_bytes: int) -> dict[str, Any]:
    result: dict[str, Any] = {"status": response.status_code, "final_url": url}
    if not is_html(response):
        return {**result, "title": "", "description": "", "text_length": ""}
    body = await read_capped(response, max_bytes)
    charset = response.charset_encoding
    if charset:
        try:
            return {**result, **page_facts(body.decode(charset, errors="replace"))}
        except LookupError:
            pass
    return {**result, **page_facts(body)}


# --- the processor -------------------------------------------------------------


def validate_web(options: dict[str, Any], input_columns: list[str]) -> dict[str, Any]:
    ceiling = settings.CONVEYOR_WEB_MAX_BYTES
    if options["max_bytes"] > ceiling:
        raise OptionsError(
            {"max_bytes": f"Must be at most {ceiling:,} bytes (CONVEYOR_WEB_MAX_BYTES)."}
        )
    name = options["url_column"]
    if not name:
        if not input_columns:
            raise OptionsError({"url_column": "Choose the column holding the URLs."})
        return {**options, "url_column": input_columns[0]}
    column = match_column(name, input_columns) if input_columns else name
    if column is None:
        raise OptionsError(
            {"url_column": f"No column {name!r}. Columns are: {', '.join(input_columns)}."}
        )
    return {**options, "url_column": column}


@dataclass
class WebSession:
    client: httpx.AsyncClient


@processor(
    "web",
    reusable=True,
    label="Web: fetch page facts",
    description="Fetches the URL in a column and records the status, final URL, title, "
    "meta description and main text length.",
    options=OPTIONS,
    outputs=OUTPUTS,
    validate=validate_web,
)
async def web(row: dict[str, str], options: dict[str, Any], session: WebSession) -> dict:
    column = options["url_column"] or next(iter(row), "")
    url = normalise_url(row.get(column, ""))
    seen = {url}
    for hop in range(options["max_redirects"] + 1):
        try:
            response = await fetch_once(session.client, url)
        except BlockedAddress as exc:
            raise BlockedAddress(f"redirected to {url}; {exc}" if hop else str(exc)) from None
        try:
            if not response.has_redirect_location:
                return await page_result(response, url, options["max_bytes"])
            url = redirect_target(response, url)
        finally:
            await response.aclose()
        if url in seen:
            raise RowError(f"redirect loop: redirected back to {url}")
        seen.add(url)
    raise RowError(f"too many redirects (more than {options['max_redirects']})")


async def fetch_once(client: httpx.AsyncClient, url: str) -> httpx.Response:
    """GET one URL (no redirects followed), streaming, with retries for transient errors."""
    try:
        return await send_with_retries(
            lambda: client.send(client.build_request("GET", url), stream=True),
            attempts=settings.CONVEYOR_WEB_MAX_ATTEMPTS,
            retry_statuses=WEB_RETRY_STATUSES,
        )
    except BlockedAddress:
        raise
    except RowError as exc:
        raise RowError(f"{exc} ({url})") from None
    except httpx.HTTPError as exc:
        raise RowError(f"{describe_http_error(exc)} ({url})") from None


@web.session
async def web_session(options: dict[str, Any]) -> AsyncIterator[WebSession]:
    guard = AddressGuard(
        allow_private=settings.CONVEYOR_WEB_ALLOW_PRIVATE,
        allowed_networks=settings.CONVEYOR_WEB_ALLOWED_NETWORKS,
    )
    transport = guarded_transport(guard, connections=options["concurrency"] * 2)
    async with httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(options["timeout"]),
        follow_redirects=False,
        trust_env=False,
        headers={
            "User-Agent": settings.CONVEYOR_WEB_USER_AGENT,
            "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5",
        },
    ) as client:
        yield WebSession(client)
