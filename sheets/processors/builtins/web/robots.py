"""robots.txt for `web` (RFC 9309, parsed by Protego): fetched once per host and kept
for an hour (`CACHE_SECONDS`), in Redis when `REDIS_URL` is set (every slice, worker
and job shares it), else in this process; rows of one host wait for the one fetch.

As the RFC says: a robots.txt that is missing or refused (4xx) allows everything; one
that answers 5xx or 429 disallows everything (for the session: a later slice asks
again); a network error reading it is the row error of every row of that host in the
session (so a host that is down is not hammered); redirects are followed (at most 5,
each hop through the address guard). The rules that apply are those for the User-Agent's product token
(`Conveyor` in `Conveyor/0.1 (...)`). A Crawl-delay is honoured up to `MAX_CRAWL_DELAY`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from protego import Protego

from sheets.processors import RowError
from sheets.processors.builtins.web.fetch import Fetched
from sheets.processors.builtins.web.urls import origin_of, redirect_target

MAX_ROBOTS_BYTES = 500_000  # RFC 9309: at least 500 KiB must be parsed; we read no more
MAX_ROBOTS_REDIRECTS = 5
MAX_CRAWL_DELAY = 30.0
CACHE_SECONDS = 3600.0  # RFC 9309 asks for no more than 24 hours
ALLOW_ALL = "\0allow"  # cached for a robots.txt that was missing (4xx)
KEY = "conveyor-web:robots:"


class RobotsCache:
    """robots.txt texts by origin: in Redis when given a client, else in this process."""

    _local: dict[str, tuple[float, str]] = {}
    _lock = threading.Lock()

    def __init__(self, redis: Any = None) -> None:
        self.redis = redis

    async def get(self, origin: str) -> str | None:
        if self.redis is not None:
            value = await self.redis.get(KEY + origin)
            return value.decode("utf-8", errors="replace") if value is not None else None
        with self._lock:
            expires, text = self._local.get(origin, (0.0, ""))
        return text if expires > time.monotonic() else None

    async def put(self, origin: str, text: str) -> None:
        if self.redis is not None:
            await self.redis.set(KEY + origin, text.encode(), ex=int(CACHE_SECONDS))
            return
        with self._lock:
            if len(self._local) > 10_000:  # a worker that saw many hosts: start afresh
                self._local.clear()
            self._local[origin] = (time.monotonic() + CACHE_SECONDS, text)


@dataclass(frozen=True)
class Rules:
    parser: Protego | None  # None: everything allowed
    blocked: str = ""  # non-empty: everything disallowed, and why

    def allows(self, url: str, agent: str) -> bool:
        if self.blocked:
            return False
        return self.parser is None or self.parser.can_fetch(url, agent)

    def crawl_delay(self, agent: str) -> float:
        delay = self.parser.crawl_delay(agent) if self.parser is not None else None
        return min(float(delay or 0.0), MAX_CRAWL_DELAY)


Fetch = Callable[[str], Awaitable[Fetched]]


class Robots:
    """robots.txt rules per origin, each fetched once (concurrent rows wait for it)."""

    def __init__(self, fetch: Fetch, user_agent: str, cache: RobotsCache) -> None:
        self.fetch = fetch
        self.cache = cache
        self.agent = user_agent.split("/")[0].split()[0] if user_agent.strip() else "*"
        self._rules: dict[str, asyncio.Task[Rules]] = {}

    async def rules(self, url: str) -> Rules:
        origin = origin_of(url)
        if origin not in self._rules:
            self._rules[origin] = asyncio.ensure_future(self._load(origin))
        return await asyncio.shield(self._rules[origin])

    async def check(self, url: str) -> Rules:
        """The origin's rules; RowError when they disallow `url`."""
        rules = await self.rules(url)
        if not rules.allows(url, self.agent):
            robots = f"{origin_of(url)}/robots.txt"
            why = f" ({rules.blocked})" if rules.blocked else ""
            raise RowError(
                f"{robots} disallows {url} for {self.agent}{why}; set robots=no to fetch it anyway"
            )
        return rules

    async def _load(self, origin: str) -> Rules:
        cached = await self.cache.get(origin)
        if cached is None:
            rules, text = await self._fetch(origin)
            if text is not None:
                await self.cache.put(origin, text)
            return rules
        return Rules(None) if cached == ALLOW_ALL else Rules(Protego.parse(cached))

    async def _fetch(self, origin: str) -> tuple[Rules, str | None]:
        """The rules, and the text to cache (None: do not cache them)."""
        url = f"{origin}/robots.txt"
        for _ in range(MAX_ROBOTS_REDIRECTS + 1):
            # A refused address, a network error or a robots.txt too big to read fails
            # the rows of this host with that message (the page would fail alike).
            page = await self.fetch(url)
            if 300 <= page.status < 400 and page.location:
                try:
                    url = redirect_target(page.location, url)
                except RowError as exc:
                    return Rules(None, blocked=f"robots.txt could not be read: {exc}"), None
                continue
            if 200 <= page.status < 300:
                text = (page.body or b"").decode("utf-8", errors="replace")
                return Rules(Protego.parse(text)), text
            if 400 <= page.status < 500 and page.status != 429:
                return Rules(None), ALLOW_ALL
            return Rules(None, blocked=f"robots.txt answered HTTP {page.status}"), None
        return Rules(None, blocked="robots.txt redirected too many times"), None

    def cancel(self) -> None:
        for task in self._rules.values():
            task.cancel()
