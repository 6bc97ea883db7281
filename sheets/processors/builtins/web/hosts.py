"""Per-host manners for `web`: at most `per_host` requests at once to a host, at least
`per_host_delay` seconds between their starts, and a pause when the host answers 429
or 503 with Retry-After.

Counted per host name (port aside) for everything this deployment fetches: with
`REDIS_URL` in Redis, so every slice, worker and machine shares the count; otherwise
in this process (each worker process then keeps its own). A row waiting for its host
does not count that wait against its row timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings

from sheets.processors import extend_row_deadline

PREFIX = "conveyor-web"
LEASE_SECONDS = 60.0  # a Redis slot of a worker that died frees itself after this
RENEW_SECONDS = 20.0
POLL_SECONDS = (0.01, 0.05)  # a Redis waiter's poll interval, jittered
MAX_REMEMBERED = 10_000  # hosts whose next start time this process keeps, past ones dropped
QUEUEING_ALLOWANCE = 86_400.0  # the row deadline is moved this far while queueing


class LocalHosts:
    """Host slots and start times in this process, shared by every event loop in it
    (a worker runs each slice's rows on a loop of its own). Waiters are served in
    order; a freed slot is handed to the first waiter directly."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, int] = defaultdict(int)
        self._waiters: dict[str, deque[tuple[asyncio.AbstractEventLoop, asyncio.Future]]] = (
            defaultdict(deque)
        )
        self._not_before: dict[str, float] = {}

    def in_use(self, host: str) -> int:
        with self._lock:
            return self._held.get(host, 0)

    async def acquire(self, host: str, limit: int) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._held[host] < limit and not self._waiters[host]:
                self._held[host] += 1
                return
            waiter = (loop, loop.create_future())
            self._waiters[host].append(waiter)
        try:
            await waiter[1]
        except asyncio.CancelledError:
            with self._lock:
                if waiter in self._waiters[host]:
                    self._waiters[host].remove(waiter)
                    raise
            if waiter[1].done() and not waiter[1].cancelled():
                self.release(host)  # handed a slot just as it was cancelled
            raise  # else the hand-over finds the future cancelled and passes the slot on

    def release(self, host: str) -> None:
        with self._lock:
            while self._waiters[host]:
                loop, future = self._waiters[host].popleft()
                if not loop.is_closed():
                    loop.call_soon_threadsafe(self._hand_over, host, future)
                    return
            self._held[host] -= 1
            if not self._held[host]:
                del self._held[host]
                self._waiters.pop(host, None)

    def _hand_over(self, host: str, future: asyncio.Future) -> None:
        if future.done():  # cancelled while the slot was on its way
            self.release(host)
        else:
            future.set_result(None)

    def reserve(self, host: str, delay: float) -> float:
        """Seconds to wait before this request may start; books the next start `delay` on."""
        now = time.monotonic()
        with self._lock:
            if len(self._not_before) > MAX_REMEMBERED:  # a worker that saw many hosts
                self._not_before = {h: t for h, t in self._not_before.items() if t > now}
            start = max(now, self._not_before.get(host, 0.0))
            if delay > 0 or start > now:
                self._not_before[host] = start + delay
            return start - now

    def pause(self, host: str, seconds: float) -> None:
        until = time.monotonic() + seconds
        with self._lock:
            self._not_before[host] = max(self._not_before.get(host, 0.0), until)


_local = LocalHosts()  # one per process

# One round trip a request: take a slot if one is free (KEYS[1], a sorted set: token ->
# lease expiry), then book its start (KEYS[2]: the host's next start time). ARGV: limit,
# token, lease, delay. Returns the seconds to wait before starting, or -1: no free slot.
ACQUIRE = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1e6
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return '-1'
end
redis.call('ZADD', KEYS[1], t + tonumber(ARGV[3]), ARGV[2])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3])) + 1)
local start = math.max(t, tonumber(redis.call('GET', KEYS[2]) or '0'))
local delay = tonumber(ARGV[4])
if delay > 0 or start > t then
  redis.call('SET', KEYS[2], tostring(start + delay), 'EX', math.ceil(start - t + delay) + 1)
end
return tostring(start - t)
"""
# KEYS[1] the host's next start time, pushed back to now + ARGV[1] seconds at least.
PAUSE = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1e6
local until_ = math.max(t + tonumber(ARGV[1]), tonumber(redis.call('GET', KEYS[1]) or '0'))
redis.call('SET', KEYS[1], tostring(until_), 'EX', math.ceil(until_ - t) + 1)
return 1
"""


class RedisHosts:
    """The same, in Redis: slots are leases (renewed while held) so that a worker
    that dies frees its slots within a minute. A request costs one round trip before
    it starts; the slot is given back in the background."""

    def __init__(self, url: str) -> None:
        import redis.asyncio

        self.redis = redis.asyncio.Redis.from_url(url)
        self._acquire = self.redis.register_script(ACQUIRE)
        self._pause = self.redis.register_script(PAUSE)
        self._releasing: set[asyncio.Task[Any]] = set()

    async def acquire(self, host: str, limit: int, delay: float) -> tuple[str, float]:
        """A slot's token and the seconds to wait before starting the request."""
        token = uuid.uuid4().hex
        keys = [f"{PREFIX}:slots:{host}", f"{PREFIX}:next:{host}"]
        while (
            wait := float(await self._acquire(keys=keys, args=[limit, token, LEASE_SECONDS, delay]))
        ) < 0:
            await asyncio.sleep(random.uniform(*POLL_SECONDS))
        return token, wait

    async def renew(self, host: str, token: str) -> None:
        key = f"{PREFIX}:slots:{host}"
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            await self.redis.zadd(key, {token: time.time() + LEASE_SECONDS}, xx=True)

    def release(self, host: str, token: str) -> None:
        task = asyncio.ensure_future(self.redis.zrem(f"{PREFIX}:slots:{host}", token))
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def pause(self, host: str, seconds: float) -> None:
        await self._pause(keys=[f"{PREFIX}:next:{host}"], args=[seconds])

    async def aclose(self) -> None:
        if self._releasing:
            await asyncio.gather(*self._releasing, return_exceptions=True)
        await self.redis.aclose()


class Hosts:
    """What a `web` session uses: `async with hosts.slot(host, per_host, delay)` around
    each request; `pause(host, seconds)` on Retry-After. Waiting for the slot or the
    start time is queueing, not the row's work: the row's deadline moves by that much."""

    def __init__(self) -> None:
        self.local = _local
        self.shared = RedisHosts(settings.REDIS_URL) if settings.REDIS_URL else None

    @contextlib.asynccontextmanager
    async def slot(self, host: str, per_host: int, delay: float) -> AsyncIterator[None]:
        began = time.monotonic()
        extend_row_deadline(QUEUEING_ALLOWANCE)
        try:
            await self.local.acquire(host, per_host)
        except BaseException:
            extend_row_deadline(time.monotonic() - began - QUEUEING_ALLOWANCE)
            raise
        renewing: asyncio.Task[Any] | None = None
        token = ""
        try:
            if self.shared is not None:
                token, wait = await self.shared.acquire(host, per_host, delay)
                renewing = asyncio.create_task(self.shared.renew(host, token))
            else:
                wait = self.local.reserve(host, delay)
            if wait > 0:
                await asyncio.sleep(wait)
            extend_row_deadline(time.monotonic() - began - QUEUEING_ALLOWANCE)
            yield
        finally:
            if renewing is not None:
                renewing.cancel()
            if token:
                self.shared.release(host, token)
            self.local.release(host)

    async def pause(self, host: str, seconds: float) -> None:
        if self.shared is not None:
            await self.shared.pause(host, seconds)
        else:
            self.local.pause(host, seconds)

    async def aclose(self) -> None:
        if self.shared is not None:
            await self.shared.aclose()
