"""The `web` processor: fetch the URL in a column and extract facts about the page.

Outputs the HTTP status, the final URL after redirects, the title, the meta description
and the length of the main text (script, style, nav and the like stripped). An HTTP
error status (404, 500) is a result; network errors, timeouts, redirect loops and pages
over `max_bytes` are row errors. A URL without a scheme is fetched over https://.

Every connection goes through the guarded client of `sheets/processors/outbound.py`: private, loopback
and other non-public addresses are refused unless `CONVEYOR_WEB_ALLOW_PRIVATE` or
`CONVEYOR_WEB_ALLOWED_NETWORKS` allow them. Redirects are followed by hand, so each hop
gets a new check.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from django.conf import settings
from selectolax.lexbor import LexborHTMLParser

from sheets.processors import Option, OptionsError, RowError, match_column, processor
from sheets.processors.outbound import BlockedAddress, guarded_client, read_capped
from sheets.processors.ratelimit import describe_http_error, send_with_retries

WEB_RETRY_STATUSES = frozenset({429, 502, 503, 504})
HTML_TYPES = ("text/html", "application/xhtml+xml")
NOT_TEXT_TAGS = ["script", "style", "noscript", "template", "nav", "svg", "iframe"]
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")

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
]  # and `reuse`, which `reusable=True` adds
OUTPUTS = ["status", "final_url", "title", "description", "text_length"]


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


async def page_result(response: httpx.Response, url: str, max_bytes: int) -> dict[str, Any]:
    result: dict[str, Any] = {"status": response.status_code, "final_url": url}
    if not is_html(response):
        return {**result, "title": "", "description": "", "text_length": ""}
    too_big = f"the page is larger than max_bytes ({max_bytes:,} bytes); raise it to read this page"
    body = await read_capped(response, max_bytes, too_big)
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
    async with guarded_client(
        allow_private=settings.CONVEYOR_WEB_ALLOW_PRIVATE,
        allowed_networks=settings.CONVEYOR_WEB_ALLOWED_NETWORKS,
        connections=options["concurrency"] * 2,
        timeout=httpx.Timeout(options["timeout"]),
        headers={
            "User-Agent": settings.CONVEYOR_WEB_USER_AGENT,
            "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5",
        },
    ) as client:
        yield WebSession(client)
