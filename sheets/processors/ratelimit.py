"""Pacing calls to upstream services: a requests/min limit and retries with backoff.

`RateLimiter` spaces requests with the `limits` library: in Redis when `REDIS_URL` is
set, so every worker on every machine shares one limit; otherwise in this process's
memory (then each worker process keeps its own count). Rows wait for a free slot rather
than fail, and the wait does not count against the row's timeout. `send_with_retries`
retries failed requests only (HTTP 429/5xx, timeouts and connection errors) with
exponential backoff and jitter, honouring Retry-After; the backoff does not count against
the row's timeout either. Each attempt counts in the row's `RowOutcome.attempts`.
"""

from __future__ import annotations

import asyncio
import email.utils
import inspect
import math
import random
import time
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime
from typing import Any

import httpx
from django.conf import settings
from limits import RateLimitItem, RateLimitItemPerSecond
from limits import strategies as sync_strategies
from limits.aio import strategies as async_strategies
from limits.aio.storage import RedisStorage
from limits.storage import MemoryStorage

from sheets.processors.runner import RowError, extend_row_deadline, note_retry

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
TRANSIENT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
NAMESPACE = "conveyor-rpm"

# One in-memory limiter per process, shared by every batch and job this process runs.
_memory_limiter = sync_strategies.MovingWindowRateLimiter(MemoryStorage())


def per_minute_window(per_minute: int) -> RateLimitItem:
    """`per_minute` as the shortest equivalent window, so requests are spread out.

    120/min becomes 2 per second and 6/min 1 per 10 s, never more than `per_minute` in
    any minute, instead of a burst of `per_minute` requests at the start of each minute.
    """
    seconds = 60 // math.gcd(per_minute, 60)
    return RateLimitItemPerSecond(per_minute * seconds // 60, seconds)


class RateLimiter:
    """At most `per_minute` acquisitions per minute for `key`, across workers with Redis."""

    def __init__(self, per_minute: int, key: str) -> None:
        self.item = per_minute_window(per_minute)
        self.key = key
        self._redis_pool: Any = None
        if settings.REDIS_URL:
            import redis.asyncio

            self._redis_pool = redis.asyncio.ConnectionPool.from_url(settings.REDIS_URL)
            storage = RedisStorage(
                f"async+{settings.REDIS_URL}",
                implementation="redispy",
                connection_pool=self._redis_pool,
            )
            self._strategy: Any = async_strategies.MovingWindowRateLimiter(storage)
        else:
            self._strategy = _memory_limiter

    async def acquire(self) -> None:
        """Wait until a request may be sent, then count it."""
        while not await _maybe_await(self._strategy.hit(self.item, NAMESPACE, self.key)):
            stats = await _maybe_await(
                self._strategy.get_window_stats(self.item, NAMESPACE, self.key)
            )
            wait = max(0.01, stats.reset_time - time.time()) + random.uniform(0, 0.02)
            extend_row_deadline(wait)  # queueing for a slot is not the row's processing time
            await asyncio.sleep(wait)

    async def aclose(self) -> None:
        if self._redis_pool is not None:
            await self._redis_pool.disconnect()


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The Retry-After header in seconds (it may be a number or an HTTP date)."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff with jitter: about base * 2^(attempt-1), capped."""
    ceiling = min(
        settings.CONVEYOR_HTTP_RETRY_MAX_SECONDS,
        settings.CONVEYOR_HTTP_RETRY_BASE_SECONDS * 2 ** (attempt - 1),
    )
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def describe_http_error(exc: Exception) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def send_with_retries(
    send: Callable[[], Awaitable[httpx.Response]],
    *,
    attempts: int,
    limiter: RateLimiter | None = None,
    retry_statuses: Collection[int] = RETRY_STATUSES,
) -> httpx.Response:
    """Call `send()` until it gives a response outside `retry_statuses`, or give up.

    After the last attempt a retryable status is returned like any other; a transient
    network error becomes a `RowError`. Other exceptions pass through at once.
    """
    attempts = max(1, attempts)
    for attempt in range(1, attempts + 1):
        if attempt > 1:
            note_retry()
        if limiter is not None:
            await limiter.acquire()
        try:
            response = await send()
        except TRANSIENT_ERRORS as exc:
            if attempt == attempts:
                raise RowError(
                    f"{describe_http_error(exc)}; gave up after {attempts} attempts"
                ) from exc
            await _back_off(backoff_seconds(attempt))
            continue
        if response.status_code not in retry_statuses or attempt == attempts:
            return response
        await response.aclose()
        await _back_off(_retry_delay(response, attempt))
    raise AssertionError("unreachable: attempts must be at least 1")


async def _back_off(seconds: float) -> None:
    """Wait before a retry. Like a rate-limit wait, this is not the row's processing
    time: were it counted, the row could time out during its next request, abandoning
    an answer that may already be paid for."""
    extend_row_deadline(seconds)
    await asyncio.sleep(seconds)


def _retry_delay(response: httpx.Response, attempt: int) -> float:
    after = retry_after_seconds(response)
    if after is None:
        return backoff_seconds(attempt)
    return min(after, settings.CONVEYOR_HTTP_RETRY_MAX_SECONDS) + random.uniform(0, 0.05)
