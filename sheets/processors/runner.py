"""The row runner: a batch of rows through a processor's row function, one `RowOutcome`
each, and one bad row never stops the others.

Plain row functions run in order in the caller's thread (`run_rows`); `async def` ones
run `concurrency` at once on an event loop, each bounded by the row timeout, inside
the processor's session: per batch (`run_rows`) or for as long as a sheet job keeps
feeding rows (`RowStream`). Row functions report failures with `RowError`, retries with
`note_retry()`, and time spent queueing with `extend_row_deadline()`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sheets.processors.registry import Processor

DEDUPE_KEY = "_dedupe_key"  # in a row's outputs: rows with equal keys are duplicates
USAGE_KEY = "_usage"  # in a row's outputs: what the row cost, stored apart from columns
DEFAULT_CONCURRENCY = 4
STOP_POLL_SECONDS = 0.1


class UpstreamError(Exception):
    """Not this row's fault: the API every row goes to cannot answer any of them. The
    runner lets it through (the row is not failed); the sheet job stops sending."""


class UpstreamDown(UpstreamError):
    """The API at `host` is down (its circuit is open): try again at `retry_at` (epoch)."""

    def __init__(self, host: str, retry_at: float) -> None:
        super().__init__(f"the API at {host} is not answering")
        self.host = host
        self.retry_at = retry_at


class UpstreamRefused(UpstreamError):
    """The API refuses every request (401/403: a revoked or wrong key): `message` says
    why, in the API's words."""


@dataclass
class LiveLimit:
    """Rows in flight a stream allows, read before each row starts: a session that has
    one (`session.in_flight_limit`) raises and lowers it as the API allows."""

    value: int


class RowError(Exception):
    """This row failed; the message is shown to the user as the row's error. `usage`:
    what the failed attempt cost all the same (an answer outside the categories)."""

    def __init__(self, message: str = "", *, usage: dict[str, float] | None = None) -> None:
        super().__init__(message)
        self.usage = usage


@dataclass
class RowOutcome:
    number: int
    outputs: dict[str, Any] | None
    error: str
    attempts: int
    duration: float
    reused: bool = False
    usage: dict[str, float] | None = None  # what the row cost (USAGE_KEY); reused: originally


_retries: ContextVar[list[int] | None] = ContextVar("conveyor_row_retries", default=None)
_row_deadline: ContextVar[asyncio.Timeout | None] = ContextVar(
    "conveyor_row_deadline", default=None
)


def note_retry() -> None:
    """Count one more attempt of the current row: retry helpers call this per retry."""
    if (counter := _retries.get()) is not None:
        counter[0] += 1


def extend_row_deadline(seconds: float) -> None:
    """Give the current row `seconds` more before its `row_timeout` runs out.

    For time a row spends queueing rather than working (waiting for a rate-limit slot):
    call it before such a wait, so a low requests/min limit does not time rows out.
    """
    deadline = _row_deadline.get()
    if deadline is not None and (when := deadline.when()) is not None:
        deadline.reschedule(when + seconds)


def describe_exception(exc: BaseException) -> str:
    if isinstance(exc, RowError | UpstreamError):
        return str(exc) or "row failed"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _outcome(number: int, started: float, counter: list[int], **result: Any) -> RowOutcome:
    outputs = result.get("outputs")
    usage = outputs.pop(USAGE_KEY, None) if outputs else result.get("usage")
    return RowOutcome(
        number=number,
        outputs=outputs,
        error=result.get("error", ""),
        attempts=1 + counter[0],
        duration=time.monotonic() - started,
        usage=usage if isinstance(usage, dict) else None,
    )


def _error_usage(exc: BaseException) -> dict[str, float] | None:
    return exc.usage if isinstance(exc, RowError) else None


def _checked_outputs(outputs: Any) -> dict[str, Any]:
    if not isinstance(outputs, dict):
        raise TypeError(f"the row function returned {type(outputs).__name__}, not a dict")
    return outputs


def run_rows(
    processor: Processor,
    options: dict[str, Any],
    rows: list[tuple[int, dict[str, str]]],
    *,
    should_stop: Callable[[], bool],
    row_timeout: float | None = None,
    concurrency: int | None = None,
) -> list[RowOutcome]:
    """Process a batch of `(row number, row)`; returns one outcome per finished row.

    Sync processors run the rows in order and stop between rows once `should_stop()`
    is true. Async ones run up to `concurrency` rows at once (default: the options'
    `concurrency`, else 4), each bounded by `row_timeout` seconds; `should_stop()` is
    polled every 0.1 s and when true the rows in flight are cancelled (their requests
    aborted) and left out. Outcomes come in any order. `row_timeout` applies to async
    processors only: a running Python function cannot be interrupted safely.
    """
    if not processor.is_async:
        return list(_run_sync(processor, options, rows, should_stop))
    limit = concurrency or initial_concurrency(options)
    batch = _run_async(processor, options, rows, should_stop, row_timeout, limit)
    return _run_coroutine(batch)


def initial_concurrency(options: dict[str, Any]) -> int:
    """The options' `concurrency` as a number of rows ("auto" or none: the default,
    which a session with a `LiveLimit` then steers)."""
    try:
        return max(1, int(options.get("concurrency") or DEFAULT_CONCURRENCY))
    except (TypeError, ValueError):
        return DEFAULT_CONCURRENCY


def _run_sync(
    proc: Processor,
    options: dict[str, Any],
    rows: list[tuple[int, dict[str, str]]],
    should_stop: Callable[[], bool],
) -> Iterator[RowOutcome]:
    for number, row in rows:
        if should_stop():
            return
        counter = [0]
        token = _retries.set(counter)
        started = time.monotonic()
        try:
            outputs = _checked_outputs(proc.fn(row, options))
            yield _outcome(number, started, counter, outputs=outputs)
        except Exception as exc:  # noqa: BLE001 - one bad row never stops the batch
            error = describe_exception(exc)
            yield _outcome(number, started, counter, error=error, usage=_error_usage(exc))
        finally:
            _retries.reset(token)


def _run_coroutine(coroutine: Coroutine[Any, Any, list[RowOutcome]]) -> list[RowOutcome]:
    """asyncio.run, or in a helper thread when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _run_async(
    proc: Processor,
    options: dict[str, Any],
    rows: list[tuple[int, dict[str, str]]],
    should_stop: Callable[[], bool],
    row_timeout: float | None,
    concurrency: int,
) -> list[RowOutcome]:
    outcomes: list[RowOutcome] = []
    if not rows or should_stop():
        return outcomes
    pending = iter(rows)
    async with proc.open_session(options) as session:

        async def worker() -> None:
            for number, row in pending:
                outcomes.append(await _run_one(proc, options, session, number, row, row_timeout))

        workers = [asyncio.create_task(worker()) for _ in range(min(concurrency, len(rows)))]
        await _wait_or_cancel(workers, should_stop)
    return outcomes


async def _wait_or_cancel(tasks: list[asyncio.Task[None]], should_stop: Callable[[], bool]) -> None:
    """Wait for `tasks`; when `should_stop()` turns true, cancel them and wait for that."""
    unfinished = set(tasks)
    while unfinished:
        _, unfinished = await asyncio.wait(unfinished, timeout=STOP_POLL_SECONDS)
        if unfinished and should_stop():
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)
            return
    for task in tasks:
        task.result()  # a crash in the runner itself (not in a row) must not pass silently


async def _run_one(
    proc: Processor,
    options: dict[str, Any],
    session: Any,
    number: int,
    row: dict[str, str],
    row_timeout: float | None,
    *,
    upstream_errors: bool = False,
) -> RowOutcome:
    """One row's outcome; an `UpstreamError` is raised with `upstream_errors` (a stream:
    its job stops), else it is the row's error (a batch, a preview)."""
    counter = [0]
    token = _retries.set(counter)
    started = time.monotonic()
    deadline = asyncio.timeout(row_timeout)
    try:
        async with deadline:
            _row_deadline.set(deadline)
            outputs = _checked_outputs(await proc.fn(row, options, session))
        return _outcome(number, started, counter, outputs=outputs)
    except UpstreamError as exc:
        if upstream_errors:
            raise
        return _outcome(number, started, counter, error=describe_exception(exc))
    except TimeoutError as exc:
        error = f"timed out after {row_timeout:g} s" if deadline.expired() else None
        return _outcome(number, started, counter, error=error or describe_exception(exc))
    except Exception as exc:  # noqa: BLE001 - one bad row never stops the batch
        error = describe_exception(exc)
        return _outcome(number, started, counter, error=error, usage=_error_usage(exc))
    finally:
        _retries.reset(token)


class RowStream:
    """Rows of an async processor kept in flight *across* batches.

    `run_rows` finishes a batch before the next starts, so each batch waits for its
    slowest row. A stream instead runs an event loop in a helper thread, inside one
    session for its whole life, and the caller (a sheet job, in its own thread) keeps
    feeding rows with `submit` and picks up finished ones with `collect`: with answer
    times that vary, throughput stays close to concurrency / latency.

        with RowStream(proc, options, concurrency=8) as stream:
            stream.submit(1, {"text": "..."})
            outcomes = stream.collect(timeout=0.5)

    How many rows run at once is read before each row starts: `concurrency` (or the
    options'), unless the session has a `LiveLimit` (`session.in_flight_limit`) that it
    steers. A row raising `UpstreamError` produces no outcome: the stream stops
    starting rows and `halted` holds the error for the caller.

    `cancel()` aborts the rows in flight (their requests are cancelled); leaving the
    `with` block by an exception cancels too, otherwise it waits for them.
    """

    def __init__(
        self,
        processor: Processor,
        options: dict[str, Any],
        *,
        row_timeout: float | None = None,
        concurrency: int | None = None,
    ) -> None:
        self.processor = processor
        self.options = options
        self.row_timeout = row_timeout
        self.limit = LiveLimit(max(1, concurrency or initial_concurrency(options)))
        self.in_flight = 0
        self.halted: UpstreamError | None = None
        self._session: Any = None
        self._outcomes: queue.SimpleQueue[RowOutcome | UpstreamError] = queue.SimpleQueue()
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rows: asyncio.Queue[tuple[int, dict[str, str]] | None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._run, name="row-stream", daemon=True)

    @property
    def concurrency(self) -> int:
        """Rows allowed in flight right now."""
        return max(1, self.limit.value)

    def status(self) -> str:
        """What the session says about its pace ("" when it says nothing)."""
        status = getattr(self._session, "pace_status", None)
        return status() if callable(status) else ""

    def __enter__(self) -> RowStream:
        self._thread.start()
        self._started.wait()
        self._raise_error()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close(cancel=exc_type is not None)

    def submit(self, number: int, row: dict[str, str]) -> None:
        self._raise_error()
        self.in_flight += 1
        self._call(self._rows.put_nowait, (number, row))

    def collect(self, timeout: float) -> list[RowOutcome]:
        """Finished rows: waits up to `timeout` for the first, then takes all that are ready."""
        found: list[RowOutcome | UpstreamError] = []
        if self.in_flight:
            with contextlib.suppress(queue.Empty):
                found.append(self._outcomes.get(timeout=timeout))
        while True:
            try:
                found.append(self._outcomes.get_nowait())
            except queue.Empty:
                break
        self.in_flight -= len(found)
        self._raise_error()
        outcomes = [item for item in found if isinstance(item, RowOutcome)]
        for item in found:
            if isinstance(item, UpstreamError) and self.halted is None:
                self.halted = item
        return outcomes

    def cancel(self) -> None:
        """Abort the rows in flight; they produce no outcomes."""
        self._call(self._cancel_all)
        self.in_flight = 0

    def close(self, cancel: bool = False) -> None:
        if cancel:
            self.cancel()
        elif self._rows is not None:
            self._call(self._rows.put_nowait, None)
        self._thread.join()

    # -- the helper thread ------------------------------------------------------------
    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(fn, *args)

    def _cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self._error = exc
        finally:
            self._started.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._rows = asyncio.Queue()
        async with self.processor.open_session(self.options) as session:
            self._session = session
            if isinstance(live := getattr(session, "in_flight_limit", None), LiveLimit):
                self.limit = live
            dispatcher = asyncio.create_task(self._dispatch(session))
            self._tasks.add(dispatcher)
            self._started.set()
            await asyncio.gather(dispatcher, return_exceptions=True)
            if running := [task for task in self._tasks if task is not dispatcher]:
                await asyncio.gather(*running, return_exceptions=True)

    async def _dispatch(self, session: Any) -> None:
        running: set[asyncio.Task[None]] = set()
        try:
            while (item := await self._rows.get()) is not None:
                while len(running) >= self.concurrency:
                    await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                task = asyncio.create_task(self._one(session, *item))
                for group in (running, self._tasks):
                    group.add(task)
                    task.add_done_callback(group.discard)
            if running:
                await asyncio.wait(running)
        except asyncio.CancelledError:
            for task in running:
                task.cancel()
            raise

    async def _one(self, session: Any, number: int, row: dict[str, str]) -> None:
        try:
            outcome = await _run_one(
                self.processor,
                self.options,
                session,
                number,
                row,
                self.row_timeout,
                upstream_errors=True,
            )
        except UpstreamError as exc:
            self._outcomes.put(exc)
        else:
            self._outcomes.put(outcome)
