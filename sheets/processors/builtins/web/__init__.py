"""The `web` processor: fetch the URL in a column and read the page.

Outputs the HTTP status, the final URL after redirects, the title, the meta
description, the main text (script, style, navigation and the like stripped, whitespace
normalised, at most `max_text_chars`) and its full length, the declared language, the
e-mails and phones on the page (normalised like `clean` does), links to social
networks, and one column per `select` line; `outputs` keeps only the columns named. An
HTTP error status (404, 500) is a result; network errors, timeouts, redirect loops,
pages over `max_bytes` and URLs robots.txt disallows are row errors. A URL without a
scheme is fetched over https://.

Manners (hosts.py, robots.py): robots.txt is honoured unless `robots` is off; at most
`per_host` requests at once per host and `per_host_delay` between them, across the
deployment (Redis) or the process; Retry-After on 429/503 pauses the host. `concurrency`
is the pages in flight over all hosts: rows waiting for a busy host wait in a queue of
their own, and the rest keep going.

Every connection goes through the guarded client of `sheets/processors/outbound.py`:
private, loopback and other non-public addresses are refused unless
`CONVEYOR_WEB_ALLOW_PRIVATE` or `CONVEYOR_WEB_ALLOWED_NETWORKS` allow them. Redirects
are followed by hand, so each hop gets a new check (and a robots.txt check).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import httpx
from django.conf import settings
from selectolax.lexbor import LexborHTMLParser

from sheets.processors import Option, OptionsError, RowError, match_column, processor
from sheets.processors.builtins.web.extract import Select, page_facts
from sheets.processors.builtins.web.fetch import Fetched, Fetcher, Manners
from sheets.processors.builtins.web.hosts import Hosts
from sheets.processors.builtins.web.robots import MAX_ROBOTS_BYTES, Robots, RobotsCache
from sheets.processors.builtins.web.urls import normalise_url, redirect_target, with_scheme
from sheets.processors.outbound import BlockedAddress, guarded_client

__all__ = ["normalise_url", "with_scheme"]

MAX_SELECTS = 20
SELECT_LINE = re.compile(r"^\s*(?P<name>[^=]+?)\s*=\s*(?P<css>.+?)(?:\s+@(?P<attr>[\w:.-]+))?\s*$")

OPTIONS = [
    Option("url_column", "URL column", "str", default="",
           help="The column holding the URLs (default: the first column)."),
    Option("select", "Fields by CSS selector", "text", default="",
           help="One per line: name = CSS selector (the first match's text), or "
           "name = selector @attribute (e.g. logo = img.logo @src). One column each."),
    Option("outputs", "Columns to keep", "str", default="",
           help="Comma-separated, e.g. text, emails (default: all)."),
    Option("max_text_chars", "Longest text kept (characters)", "int", default=20_000, min=100),
    Option("robots", "Honour robots.txt", "bool", default=True),
    Option("per_host", "Pages at once per host", "int", default=2, min=1, max=16),
    Option("per_host_delay", "Seconds between pages of one host", "float", default=0.0,
           min=0, max=60),
    Option("concurrency", "Pages at once (all hosts)", "int", default=32, min=1, max=128),
    Option("timeout", "Timeout (s)", "float", default=10.0, min=0.1, max=120),
    Option("max_bytes", "Largest page to read (bytes)", "int", default=2_000_000, min=1_000),
    Option("max_redirects", "Redirects to follow", "int", default=5, min=0, max=20),
    Option("phone_region", "Default phone region", "str",
           default=lambda: settings.CONVEYOR_PHONE_REGION,
           help="Two-letter country code for numbers written without +country."),
]  # and `reuse`, which `reusable=True` adds  # fmt: skip
PAGE_OUTPUTS = [
    "status",
    "final_url",
    "title",
    "description",
    "text_length",
    "text",
    "lang",
    "emails",
    "phones",
    "social",
]


# --- options --------------------------------------------------------------------------


@lru_cache(maxsize=256)
def parse_selects(text: str) -> tuple[Select, ...]:
    """The `select` lines; ValueError (one message per bad line) when any is wrong."""
    selects: list[Select] = []
    problems: list[str] = []
    probe = LexborHTMLParser("<p></p>")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = SELECT_LINE.match(line)
        if not match:
            problems.append(f"line {number}: write name = CSS selector (or selector @attribute)")
            continue
        name, css, attr = match["name"], match["css"], match["attr"] or ""
        if name in PAGE_OUTPUTS or any(s.name == name for s in selects):
            problems.append(f"line {number}: the column {name!r} is already an output")
            continue
        try:
            probe.css_first(css)
        except Exception:  # noqa: BLE001 - lexbor says only that the selector is bad
            problems.append(f"line {number}: {css!r} is not a valid CSS selector")
            continue
        selects.append(Select(name, css, attr))
    if len(selects) > MAX_SELECTS:
        problems.append(f"at most {MAX_SELECTS} fields")
    if problems:
        raise ValueError("; ".join(problems))
    return tuple(selects)


def all_outputs(options: dict[str, Any]) -> list[str]:
    return PAGE_OUTPUTS + [select.name for select in parse_selects(options.get("select", ""))]


def output_columns(options: dict[str, Any], input_columns: list[str]) -> list[str]:
    kept = [name.strip() for name in options.get("outputs", "").split(",") if name.strip()]
    return kept or all_outputs(options)


def validate_web(options: dict[str, Any], input_columns: list[str]) -> dict[str, Any]:
    errors: dict[str, str] = {}
    options = dict(options)
    if options["max_bytes"] > (ceiling := settings.CONVEYOR_WEB_MAX_BYTES):
        errors["max_bytes"] = f"Must be at most {ceiling:,} bytes (CONVEYOR_WEB_MAX_BYTES)."
    if options["max_text_chars"] > (ceiling := settings.CONVEYOR_WEB_MAX_TEXT_CHARS):
        errors["max_text_chars"] = (
            f"Must be at most {ceiling:,} characters (CONVEYOR_WEB_MAX_TEXT_CHARS)."
        )
    region = str(options["phone_region"] or "").strip().upper()
    if not re.fullmatch(r"[A-Z]{2}", region):
        errors["phone_region"] = "Enter a two-letter country code such as US, GB or DE."
    options["phone_region"] = region
    try:
        available = all_outputs(options)
    except ValueError as exc:
        errors["select"] = str(exc)
        available = PAGE_OUTPUTS
    wanted = [name.strip() for name in options["outputs"].split(",") if name.strip()]
    if unknown := [name for name in wanted if name not in available]:
        errors["outputs"] = (
            f"No output {', '.join(map(repr, unknown))}. Outputs are: {', '.join(available)}."
        )
    options["outputs"] = ", ".join(dict.fromkeys(wanted))
    name = options["url_column"]
    if not name:
        if not input_columns:
            errors["url_column"] = "Choose the column holding the URLs."
        else:
            options["url_column"] = input_columns[0]
    elif input_columns:
        column = match_column(name, input_columns)
        if column is None:
            errors["url_column"] = f"No column {name!r}. Columns are: {', '.join(input_columns)}."
        options["url_column"] = column or name
    if errors:
        raise OptionsError(errors)
    return options


# --- the processor ---------------------------------------------------------------------


@dataclass
class WebSession:
    fetcher: Fetcher
    robots: Robots

    def pace_status(self) -> str:
        """Pages/min, hosts in flight, slowest hosts: the sheet job's progress message."""
        return self.fetcher.live.status()


@processor(
    "web",
    reusable=True,
    label="Web: fetch page text and facts",
    description="Fetches the URL in a column, politely (robots.txt, a few pages at once "
    "per host), and records the page's text, title, description, language, e-mails, "
    "phones, social links and any fields picked by CSS selector.",
    options=OPTIONS,
    outputs=output_columns,
    validate=validate_web,
)
async def web(row: dict[str, str], options: dict[str, Any], session: WebSession) -> dict:
    column = options["url_column"] or next(iter(row), "")
    url = normalise_url(row.get(column, ""))
    seen = {url}
    too_big = (
        f"the page is larger than max_bytes ({options['max_bytes']:,} bytes); "
        "raise it to read this page"
    )
    for hop in range(options["max_redirects"] + 1):
        delay = options["per_host_delay"]
        try:
            if options["robots"]:
                rules = await session.robots.check(url)
                delay = max(delay, rules.crawl_delay(session.robots.agent))
            page = await session.fetcher.get(
                url,
                Manners(options["per_host"], delay),
                max_bytes=options["max_bytes"],
                too_big=too_big,
            )
        except BlockedAddress as exc:
            raise BlockedAddress(f"redirected to {url}; {exc}" if hop else str(exc)) from None
        if not page.location:
            session.fetcher.live.page()
            return page_result(page, url, options)
        url = redirect_target(page.location, url)
        if url in seen:
            raise RowError(f"redirect loop: redirected back to {url}")
        seen.add(url)
    raise RowError(f"too many redirects (more than {options['max_redirects']})")


def page_result(page: Fetched, url: str, options: dict[str, Any]) -> dict[str, Any]:
    facts: dict[str, Any] = {"status": page.status, "final_url": url}
    if page.body is not None:
        html: str | bytes = page.body
        if page.charset:
            with contextlib.suppress(LookupError):  # a charset Python does not know
                html = page.body.decode(page.charset, errors="replace")
        facts.update(
            page_facts(
                html,
                max_text_chars=options["max_text_chars"],
                phone_region=options["phone_region"],
                selects=parse_selects(options["select"]),
                header_lang=page.content_language,
            )
        )
    return {name: facts.get(name, "") for name in output_columns(options, [])}


@web.session
async def web_session(options: dict[str, Any]) -> AsyncIterator[WebSession]:
    hosts = Hosts()
    manners = Manners(options["per_host"], options["per_host_delay"])
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
        fetcher = Fetcher(client, hosts)

        async def fetch_robots(url: str) -> Fetched:
            too_big = f"robots.txt is larger than {MAX_ROBOTS_BYTES:,} bytes"
            return await fetcher.get(
                url, manners, max_bytes=MAX_ROBOTS_BYTES, too_big=too_big, any_type=True
            )

        cache = RobotsCache(hosts.shared.redis if hosts.shared is not None else None)
        robots = Robots(fetch_robots, settings.CONVEYOR_WEB_USER_AGENT, cache)
        try:
            yield WebSession(fetcher, robots)
        finally:
            robots.cancel()
            await hosts.aclose()
