"""Pacing requests to an API that says where its limit is, and a breaker for outages.

A `Pace` belongs to one processor session (one job's stream of rows) and sends each of
its requests through `Pace.send`:

- **The gate.** Requests to one endpoint with one key are spaced out by one shared
  schedule: each request reserves the next slot (the previous one plus 60/rpm seconds,
  or its estimated tokens x 60/tpm, whichever is longer), so every job and worker using
  the endpoint+key shares one pace. The rate is the lowest of the user's `rpm`/`tpm`,
  the operator's CONVEYOR_LLM_RPM/TPM for the endpoint and what the API says its limit
  is (`x-ratelimit-limit-requests/-tokens`, paced at 95 % of it). A 429 (or a
  `remaining` of 0) holds every request until `retry-after` (or the `reset`) is over.
- **Auto concurrency.** With `concurrency=auto` the rows in flight start at 4; with a
  known rate, at least that rate x the answers' mean time (+20 %), and they grow
  while answers come back no slower than 4x the fastest + 0.5 s, the gate does not
  hold them and the API's `remaining` shows room (by one per answer at first, then by
  one per round trip); a 429, a 5xx or a network error cuts them by 30 %. The rate's
  share of the stated limit falls while `remaining` falls below half of the fullest
  seen (someone else uses the key) and recovers above 80 %. The runner reads the live
  value (`LiveLimit`) before starting a row.
- **The breaker.** N consecutive connection failures, timeouts or 5xx answers from an
  endpoint (CONVEYOR_LLM_BREAKER_FAILURES), to more than one row's request (one row the
  API chokes on fails on its own), open its circuit for every job using it:
  requests raise `UpstreamDown` instead of being sent, and after the wait
  (CONVEYOR_LLM_BREAKER_SECONDS, doubling up to 10 minutes) one request probes it;
  its answer closes the circuit, its failure opens it again for longer.

The schedule and the breaker live where CONVEYOR_PACE_STORE says: in Redis when
REDIS_URL is set (shared by every worker on every machine), else in the database (the
same, one short transaction per request), or in this process's memory (shared by the
jobs of one worker process; each worker process then finds its share through the API's
headers).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import random
import re
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
from django.conf import settings
from django.utils import timezone

from jobs.public import apply_shared_state
from sheets.processors.ratelimit import (
    TRANSIENT_ERRORS,
    _retry_delay,
    backoff_seconds,
    describe_http_error,
    retry_after_seconds,
)
from sheets.processors.runner import (
    LiveLimit,
    RowError,
    UpstreamDown,
    extend_row_deadline,
    note_retry,
)

START_CONCURRENCY = 4
SAFETY = 0.95  # pace at this share of the limit the API reports
SERVER_ERRORS = frozenset({500, 502, 503, 504})
PROBE_POLL_SECONDS = 0.25
STEER_SECONDS = 0.5  # the share of the limit changes at most this often
BREAKER_MAX_SECONDS = 600.0
NAMESPACE = "conveyor-pace"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | None) -> float | None:
    """Seconds of an `x-ratelimit-reset-*` value: "1s", "6m0s", "20ms", "1.5s" or "2"."""
    if not text:
        return None
    text = text.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(number) * _UNITS[unit] for number, unit in parts)


def _header_int(headers: httpx.Headers, name: str) -> int | None:
    try:
        return int(float(headers[name]))
    except (KeyError, ValueError):
        return None


def endpoint_cap(caps: dict[str, int], base_url: str) -> int:
    """The operator's cap for `base_url` ("" in `caps`: any endpoint); 0: none."""
    base = base_url.rstrip("/")
    return caps.get(base) or caps.get("") or 0


def lowest(*caps: float | None) -> float:
    """The lowest positive cap, 0 when there is none."""
    positive = [cap for cap in caps if cap]
    return min(positive) if positive else 0.0


# -- the shared state: a schedule and a breaker per key -------------------------------


def _take(state: dict[str, float], now: float, interval: float, hold: float, threshold: int):
    """Admit one request: ("down", open_until), ("wait", 0) while another probes,
    or ("go", slot) with the slot reserved on the schedule; and the failures in a row."""
    failures = state.get("failures", 0)
    if state.get("open_until", 0) > now:
        return ("down", state["open_until"], failures)
    if failures >= threshold:  # half open: one request probes
        if state.get("probe_until", 0) > now:
            return ("wait", 0.0, failures)
        state["probe_until"] = now + hold
    slot = max(now, state.get("next", 0), state.get("blocked", 0))
    if interval:  # (a breaker's check reserves nothing: it changes no state)
        state["next"] = slot + interval
    return ("go", slot, failures)


def _shift(state: dict[str, float], now: float, seconds: float):
    state["next"] = max(now, max(state.get("next", 0), now) + seconds)


def _block(state: dict[str, float], now: float, until: float):
    state["blocked"] = max(state.get("blocked", 0), until)


def _failed(state: dict[str, float], now: float, threshold: int, base: float, request: float):
    """One more failure in a row; the circuit's open_until when it is (now) open, else 0.
    It opens only once the failures come from more than one request (`request`: one
    row's request and its retries), so one row the API chokes on cannot stop the job."""
    state["failures"] = state.get("failures", 0) + 1
    state.setdefault("first_request", request)
    if state["first_request"] != request:
        state["several"] = 1
    if state.get("open_until", 0) > now:
        return state["open_until"]
    if state["failures"] < threshold or not state.get("several"):
        return 0.0
    state["opened"] = state.get("opened", 0) + 1
    wait = min(BREAKER_MAX_SECONDS, base * 2 ** (state["opened"] - 1))
    state["open_until"] = now + wait
    state["probe_until"] = 0
    return state["open_until"]


def _release_probe(state: dict[str, float], now: float):
    state.pop("probe_until", None)


def _succeeded(state: dict[str, float], now: float):
    for name in ("failures", "opened", "open_until", "probe_until", "first_request", "several"):
        state.pop(name, None)


class MemoryBoard:
    """The shared state in this process's memory (every stream thread of a worker)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, dict[str, float]] = {}

    async def apply(self, key: str, op: Callable[..., Any], *args: Any) -> Any:
        with self._lock:
            return op(self._states.setdefault(key, {}), time.time(), *args)

    async def aclose(self) -> None:
        return None


class RedisBoard:
    """The shared state in a Redis hash per key, changed in WATCH/MULTI transactions."""

    def __init__(self, url: str) -> None:
        import redis.asyncio

        self._redis = redis.asyncio.Redis.from_url(url)
        self._watch_error = redis.WatchError

    async def apply(self, key: str, op: Callable[..., Any], *args: Any) -> Any:
        name = f"{NAMESPACE}:{key}"
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(name)
                    raw = await pipe.get(name)
                    state = json.loads(raw) if raw else {}
                    result = op(state, time.time(), *args)
                    pipe.multi()
                    pipe.set(name, json.dumps(state), ex=3600)
                    await pipe.execute()
                    return result
                except self._watch_error:
                    continue

    async def aclose(self) -> None:
        await self._redis.aclose()


class DatabaseBoard:
    """The shared state in the database (`jobs.public.apply_shared_state`), for
    deployments without Redis: shared by every worker process using the database. Each
    change is one short transaction, run in one thread per process (one connection)."""

    _thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="conveyor-pace")

    async def apply(self, key: str, op: Callable[..., Any], *args: Any) -> Any:
        change = functools.partial(apply_shared_state, f"{NAMESPACE}:{key}", op, *args)
        return await asyncio.get_running_loop().run_in_executor(self._thread, change)

    async def aclose(self) -> None:
        return None


_memory_board = MemoryBoard()
_database_board = DatabaseBoard()


def open_board() -> MemoryBoard | RedisBoard | DatabaseBoard:
    """Where the pace is shared: CONVEYOR_PACE_STORE, by default Redis where the
    deployment has it, else the database."""
    store = settings.CONVEYOR_PACE_STORE or ("redis" if settings.REDIS_URL else "database")
    if store == "redis":
        return RedisBoard(settings.REDIS_URL)
    return _database_board if store == "database" else _memory_board


# -- one session's pace -----------------------------------------------------------------


class Pace:
    """How one session sends: through the shared gate and breaker, with a live limit on
    rows in flight that it raises and lowers (`concurrency="auto"`) or keeps (a number)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        host: str,
        concurrency: int | str,
        rpm: int = 0,
        tpm: int = 0,
        hold: float = 60.0,
    ) -> None:
        digest = hashlib.sha256(f"{base_url}\n{api_key}".encode()).hexdigest()[:16]
        self.key = f"gate:{digest}"
        self.breaker_key = f"breaker:{hashlib.sha256(base_url.encode()).hexdigest()[:16]}"
        self.host = host
        self.auto = concurrency == "auto"
        self.ceiling = max(1, settings.CONVEYOR_LLM_MAX_CONCURRENCY)
        start = min(START_CONCURRENCY, self.ceiling) if self.auto else int(concurrency)
        self.limit = LiveLimit(start)
        self._window = float(start)
        self._slow_start = True
        self.rpm_cap = lowest(rpm, endpoint_cap(settings.CONVEYOR_LLM_RPM, base_url))
        self.tpm_cap = lowest(tpm, endpoint_cap(settings.CONVEYOR_LLM_TPM, base_url))
        self.limit_requests: int | None = None  # what the API says
        self.limit_tokens: int | None = None
        self.hold = hold
        self.board = open_board()
        self.busy = 0  # rows inside send(), waiting or sending
        self.sending = 0  # requests in flight
        self.waiting_until = 0.0  # held by a 429 / the reset, as far as this session knows
        self._sent: deque[float] = deque()
        self._opened = time.monotonic()
        self._base_latency: float | None = None
        self._latency: float | None = None  # a moving average of the answers' times
        self._failures_seen = False
        self.share = 1.0  # of the API's limit, while others leave room
        self._full: dict[str, int] = {}  # the highest `remaining` seen: a full bucket
        self._steered = 0.0

    # -- what the job page shows ------------------------------------------------------
    def requests_per_minute(self) -> int:
        """Requests sent over the last 20 s (or since the session opened), per minute."""
        now = time.monotonic()
        while self._sent and self._sent[0] < now - 20:
            self._sent.popleft()
        return round(len(self._sent) * 60 / max(1.0, min(20.0, now - self._opened)))

    def status(self) -> str:
        plural = "" if self.sending == 1 else "s"
        text = f"{self.sending} request{plural} in flight, {self.requests_per_minute():,} req/min"
        if self.waiting_until > time.time():
            when = timezone.localtime(datetime.fromtimestamp(self.waiting_until, tz=UTC))
            text += f"; waiting for the rate limit until {when:%H:%M:%S}"
        return text

    # -- the rate ---------------------------------------------------------------------
    def interval(self, tokens: int) -> float:
        """Seconds this request takes of the gate's schedule."""
        share = SAFETY * self.share
        rpm = lowest(self.rpm_cap, self.limit_requests and self.limit_requests * share)
        tpm = lowest(self.tpm_cap, self.limit_tokens and self.limit_tokens * share)
        return max(60.0 / rpm if rpm else 0.0, tokens * 60.0 / tpm if tpm else 0.0)

    def _paced_rpm(self) -> float:
        """The requests/min the schedule allows this session (0: no limit known)."""
        share = SAFETY * self.share
        return lowest(self.rpm_cap, self.limit_requests and self.limit_requests * share)

    def correct_tokens(self, estimated: int, used: int) -> Awaitable[None] | None:
        """The gate's schedule moved later by what a request used beyond its estimate.
        Never earlier: providers count a request's estimate (prompt and max tokens)
        against the limit when it arrives, and do not give back what it did not use."""
        tpm = lowest(self.tpm_cap, self.limit_tokens and self.limit_tokens * SAFETY)
        if not tpm or used <= estimated:
            return None
        return self.board.apply(self.key, _shift, (used - estimated) * 60.0 / tpm)

    # -- sending ----------------------------------------------------------------------
    async def send(
        self, send: Callable[[], Awaitable[httpx.Response]], *, tokens: int, attempts: int
    ) -> httpx.Response:
        """`send()` through the gate and breaker, retried on 429, 5xx, timeouts and
        connection errors up to `attempts`. Raises `UpstreamDown` when the endpoint's
        circuit is (or becomes) open: the row is not failed, its job waits."""
        attempts = max(1, attempts)
        request = random.random()  # tells this request's failures from others'
        self.busy += 1
        try:
            for attempt in range(1, attempts + 1):
                if attempt > 1:
                    note_retry()
                waited, probing = await self._admit(tokens)
                try:
                    response = await self._attempt(send, waited, request)
                finally:
                    if probing:  # answered, failed or cancelled: another may probe now
                        await self.board.apply(self.breaker_key, _release_probe)
                if isinstance(response, Exception):
                    if attempt == attempts:
                        raise RowError(
                            f"{describe_http_error(response)}; gave up after {attempts} attempts"
                        ) from response
                    await _wait(backoff_seconds(attempt))
                    continue
                status = response.status_code
                if status not in SERVER_ERRORS and status != 429 or attempt == attempts:
                    return response
                await response.aclose()
                if status in SERVER_ERRORS:
                    await _wait(_retry_delay(response, attempt))
            raise AssertionError("unreachable: attempts is at least 1")
        finally:
            self.busy -= 1

    async def _attempt(
        self, send: Callable[[], Awaitable[httpx.Response]], waited: bool, request: float
    ) -> httpx.Response | Exception:
        """One request: its response (429 and 5xx counted), or the network error."""
        self.sending += 1
        self._sent.append(time.monotonic())
        started = time.monotonic()
        try:
            response = await send()
        except TRANSIENT_ERRORS as exc:
            await self._failure(request)
            return exc
        finally:
            self.sending -= 1
        await self._learn(response.headers)
        if response.status_code in SERVER_ERRORS:
            await self._failure(request)
            return response
        await self._alive()  # any other answer: the endpoint is up
        if response.status_code == 429:
            await self._throttled(response)
        else:
            await self._success(time.monotonic() - started, waited, response.headers)
        return response

    async def _admit(self, tokens: int) -> tuple[bool, bool]:
        """Wait for the breaker and the gate: (whether the gate held this request,
        whether it probes the endpoint for everyone)."""
        threshold = settings.CONVEYOR_LLM_BREAKER_FAILURES
        while True:
            verdict, when, failures = await self.board.apply(
                self.breaker_key, _take, 0.0, self.hold, threshold
            )
            self._failures_seen = self._failures_seen or failures > 0
            if verdict == "down":
                raise UpstreamDown(self.host, when)
            if verdict == "go":
                break
            await _wait(PROBE_POLL_SECONDS)  # another request probes the endpoint
        probing = failures >= threshold
        try:
            _, slot, _ = await self.board.apply(
                self.key, _take, self.interval(tokens), 0.0, 1 << 30
            )
            delay = slot - time.time()
            if delay > 0.005:
                await _wait(delay)
        except BaseException:
            if probing:
                await self.board.apply(self.breaker_key, _release_probe)
            raise
        return delay > 0.005, probing

    async def _failure(self, request: float) -> None:
        threshold = settings.CONVEYOR_LLM_BREAKER_FAILURES
        base = settings.CONVEYOR_LLM_BREAKER_SECONDS
        opened = await self.board.apply(self.breaker_key, _failed, threshold, base, request)
        if self.auto:
            self._shrink()
        if opened:
            raise UpstreamDown(self.host, opened)

    async def _alive(self) -> None:
        if self._failures_seen:  # the failures in a row end here
            self._failures_seen = False
            await self.board.apply(self.breaker_key, _succeeded)

    async def _success(self, latency: float, waited: bool, headers: httpx.Headers) -> None:
        if self._base_latency is None or latency < self._base_latency:
            self._base_latency = latency
        self._latency = latency if self._latency is None else 0.8 * self._latency + 0.2 * latency
        if self.auto and (rpm := self._paced_rpm()):
            # Enough rows in flight to keep the pace busy (Little's law), with a margin.
            needed = min(float(self.ceiling), rpm / 60 * self._latency * 1.2 + 1)
            if needed > self._window:
                self._window = needed
                self.limit.value = int(self._window)
        if not self.auto or waited or not self._room(headers):
            return
        if latency > 4 * self._base_latency + 0.5 or self.busy < self.limit.value:
            return  # the API slows down, or the rows in flight do not use the limit
        self._window += 1.0 if self._slow_start else 1.0 / self._window
        self._window = min(self._window, float(self.ceiling))
        self.limit.value = int(self._window)

    def _shrink(self) -> None:
        self._slow_start = False
        self._window = max(1.0, self._window * 0.7)
        self.limit.value = int(self._window)

    def _room(self, headers: httpx.Headers) -> bool:
        for kind in ("requests", "tokens"):
            remaining = _header_int(headers, f"x-ratelimit-remaining-{kind}")
            if remaining is not None and remaining < 0.1 * self._full.get(kind, 0):
                return False
        return True

    async def _learn(self, headers: httpx.Headers) -> None:
        """The API's limits; a hold until its reset when nothing remains; and this
        session's share of the limit, lowered while `remaining` falls (others use the
        same key: other worker processes, other programs) and raised while it is high."""
        self.limit_requests = _header_int(headers, "x-ratelimit-limit-requests") or (
            self.limit_requests
        )
        self.limit_tokens = _header_int(headers, "x-ratelimit-limit-tokens") or self.limit_tokens
        levels = []
        for kind in ("requests", "tokens"):
            remaining = _header_int(headers, f"x-ratelimit-remaining-{kind}")
            if remaining is None:
                continue
            full = self._full[kind] = max(self._full.get(kind, 0), remaining)
            levels.append(remaining / full if full else 0.0)
            reset = parse_duration(headers.get(f"x-ratelimit-reset-{kind}"))
            if remaining == 0 and reset:
                limit = _header_int(headers, f"x-ratelimit-limit-{kind}") or 1
                until = time.time() + min(reset, 60.0 / limit * 2)
                self._hold_until(until)
                await self.board.apply(self.key, _block, until)
        now = time.monotonic()
        if levels and now - self._steered >= STEER_SECONDS:
            level = min(levels)
            if level < 0.5:
                self.share, self._steered = max(0.05, self.share * 0.85), now
            elif level > 0.8 and self.share < 1.0:
                self.share, self._steered = min(1.0, self.share + 0.05), now

    async def _throttled(self, response: httpx.Response) -> None:
        after = retry_after_seconds(response)
        if after is None:
            after = parse_duration(response.headers.get("x-ratelimit-reset-requests")) or 1.0
        after = min(after, settings.CONVEYOR_HTTP_RETRY_MAX_SECONDS)
        until = time.time() + after + random.uniform(0, 0.05)
        self._hold_until(until)
        await self.board.apply(self.key, _block, until)
        self.share = max(0.05, self.share * 0.7)
        if self.auto:
            self._shrink()

    def _hold_until(self, until: float) -> None:
        self.waiting_until = max(self.waiting_until, until)

    async def aclose(self) -> None:
        await self.board.aclose()


async def _wait(seconds: float) -> None:
    """Queueing (the gate, a probe, a backoff) is not the row's processing time."""
    extend_row_deadline(seconds)
    await asyncio.sleep(seconds)
