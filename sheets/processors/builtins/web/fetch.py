"""One GET for `web`: through the host's slot (hosts.py), with retries for transient
errors, the host paused on 429/503 Retry-After, the body read (capped) while the slot
is held. Redirects are not followed here (the caller follows them, each hop checked)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
from django.conf import settings

from sheets.processors import RowError, extend_row_deadline, note_retry
from sheets.processors.builtins.web.hosts import Hosts
from sheets.processors.builtins.web.live import LiveStats
from sheets.processors.builtins.web.urls import host_of
from sheets.processors.outbound import BlockedAddress, read_capped
from sheets.processors.ratelimit import (
    TRANSIENT_ERRORS,
    backoff_seconds,
    describe_http_error,
    retry_after_seconds,
)

RETRY_STATUSES = frozenset({429, 502, 503, 504})
PAUSE_STATUSES = frozenset({429, 503})  # their Retry-After pauses the whole host
HTML_TYPES = ("text/html", "application/xhtml+xml")


@dataclass(frozen=True)
class Fetched:
    """One response as `web` sees it; `body` is None when it was not read."""

    status: int
    location: str
    content_type: str
    charset: str | None
    content_language: str
    body: bytes | None


@dataclass(frozen=True)
class Manners:
    per_host: int
    delay: float  # seconds between request starts to one host


def is_html(content_type: str) -> bool:
    return not content_type or content_type in HTML_TYPES


class Fetcher:
    def __init__(self, client: httpx.AsyncClient, hosts: Hosts) -> None:
        self.client = client
        self.hosts = hosts
        self.live = LiveStats()

    async def get(
        self, url: str, manners: Manners, *, max_bytes: int, too_big: str, any_type: bool = False
    ) -> Fetched:
        """GET `url`; the body is read (at most `max_bytes`, else RowError(`too_big`))
        when it is HTML, or whatever it is with `any_type`, and it is not a redirect."""
        host = host_of(url)
        attempts = max(1, settings.CONVEYOR_WEB_MAX_ATTEMPTS)
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                note_retry()
            async with self.hosts.slot(host, manners.per_host, manners.delay), self._timed(host):
                try:
                    response = await self.client.send(
                        self.client.build_request("GET", url), stream=True
                    )
                except BlockedAddress:
                    raise
                except TRANSIENT_ERRORS as exc:
                    if attempt == attempts:
                        raise RowError(
                            f"{describe_http_error(exc)}; gave up after {attempts} attempts ({url})"
                        ) from None
                    wait = backoff_seconds(attempt)
                    response = None
                except httpx.HTTPError as exc:
                    raise RowError(f"{describe_http_error(exc)} ({url})") from None
                if response is not None:
                    try:
                        wait = await self._pause_if_asked(host, response, attempt)
                        if response.status_code not in RETRY_STATUSES or attempt == attempts:
                            return await self._read(response, max_bytes, too_big, any_type)
                    finally:
                        await response.aclose()
            await _back_off(wait)
        raise AssertionError("unreachable: attempts must be at least 1")

    @contextlib.asynccontextmanager
    async def _timed(self, host: str) -> AsyncIterator[None]:
        began = time.monotonic()
        self.live.started(host)
        try:
            yield
        finally:
            self.live.ended(host, time.monotonic() - began)

    async def _pause_if_asked(self, host: str, response: httpx.Response, attempt: int) -> float:
        """The wait before a retry; a 429/503 with Retry-After pauses the host for everyone."""
        after = retry_after_seconds(response)
        if after is None:
            return backoff_seconds(attempt)
        after = min(after, settings.CONVEYOR_HTTP_RETRY_MAX_SECONDS)
        if response.status_code in PAUSE_STATUSES and after > 0:
            await self.hosts.pause(host, after)
        return after

    async def _read(
        self, response: httpx.Response, max_bytes: int, too_big: str, any_type: bool
    ) -> Fetched:
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        redirect = response.has_redirect_location
        body = None
        if not redirect and (any_type or is_html(content_type)):
            body = await read_capped(response, max_bytes, too_big)
        return Fetched(
            status=response.status_code,
            location=response.headers.get("location", "") if redirect else "",
            content_type=content_type,
            charset=response.charset_encoding,
            content_language=response.headers.get("content-language", ""),
            body=body,
        )


async def _back_off(seconds: float) -> None:
    """Waiting to retry is not the row's work (see ratelimit._back_off)."""
    extend_row_deadline(seconds)
    await asyncio.sleep(seconds)
