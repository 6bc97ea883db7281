"""URLs for `web`: the cell's text as a URL to fetch, redirect targets, the host key."""

from __future__ import annotations

import httpx

from sheets.processors import RowError
from sheets.processors.outbound import with_scheme

__all__ = ["host_of", "normalise_url", "origin_of", "redirect_target", "with_scheme"]


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


def redirect_target(location: str, current: str) -> str:
    location = location.strip()
    try:
        target = httpx.URL(current).join(location)
    except httpx.InvalidURL:
        raise RowError(f"{current} redirected to an invalid URL: {location!r}") from None
    if target.scheme not in ("http", "https"):
        raise RowError(f"{current} redirected to a {target.scheme}:// URL, which is not fetched")
    return str(target.copy_with(fragment=None))


def host_of(url: str) -> str:
    """The host a politeness limit counts against: the name, lower-case, without port."""
    return httpx.URL(url).host.lower()


def origin_of(url: str) -> str:
    parsed = httpx.URL(url)
    return str(parsed.copy_with(path="/", query=None, fragment=None)).rstrip("/")
