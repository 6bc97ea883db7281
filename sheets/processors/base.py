"""The processor registry and the row runner: what turns one spreadsheet row into outputs.

A processor is a row function plus the options it takes (rendered as a form) and the
output columns it fills. The sheet job handler validates the options once, then calls
`run_rows()` for each batch of rows and stores the `RowOutcome`s with its checkpoint.

Register one with the `@processor` decorator in any app module imported at start-up.
A plain function runs rows one after another; an `async def` one runs up to
`concurrency` rows at once on an event loop, and gets the object its optional session
hook yields (created once per batch, closed after it):

    import httpx
    from sheets.processors import Option, RowError, processor

    @processor(
        "geo.lookup",
        label="Geocode addresses",
        description="Looks up each address with the geocoding service.",
        options=[Option("address_column", "Address column", "str", required=True),
                 Option("concurrency", "Requests at once", "int", default=4, min=1, max=32)],
        outputs=["lat", "lon"],
    )
    async def geocode(row, options, client):
        response = await client.get("https://geo.example/search",
                                    params={"q": row[options["address_column"]]})
        if response.status_code == 404:
            raise RowError("address not found")  # this row fails, the job goes on
        return {"lat": response.json()["lat"], "lon": response.json()["lon"]}

    @geocode.session
    async def geocode_client(options):
        async with httpx.AsyncClient(timeout=10) as client:
            yield client

A plain row function is `def fn(row, options) -> dict` (no session). `@processor`
returns the registered `Processor`; `get_processor(name)` finds it again.
A row function returns a dict of output values. Raising `RowError("message")` fails the
row with that message; any other exception fails it with "ExcType: message". Either
way the other rows go on. Returning `DEDUPE_KEY` marks rows as duplicates of each other
(the handler fills the `duplicate_of` column across the whole sheet). Returning
`USAGE_KEY` (`{"prompt_tokens": 12, ...}`, numbers) reports what the row cost: it is
stored with the row (not as a column) and summed into the job's `spent` per batch;
`RowError(message, usage=...)` reports the cost of a paid answer that still failed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib
import inspect
import math
import queue
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

DEDUPE_KEY = "_dedupe_key"
USAGE_KEY = "_usage"
DEFAULT_CONCURRENCY = 4
STOP_POLL_SECONDS = 0.1
OPTION_TYPES = ("str", "text", "int", "float", "bool", "choice", "secret", "url", "columns")
TRUE_WORDS = {"1", "true", "yes", "on", "y"}
FALSE_WORDS = {"0", "false", "no", "off", "n", ""}

RowFunction = Callable[..., Any]
SessionFactory = Callable[[dict[str, Any]], AbstractAsyncContextManager[Any]]
Validator = Callable[[dict[str, Any], list[str]], dict[str, Any]]


class RowError(Exception):
    """This row failed; the message is shown to the user as the row's error. `usage`:
    what the failed attempt cost all the same (an answer outside the categories)."""

    def __init__(self, message: str = "", *, usage: dict[str, float] | None = None) -> None:
        super().__init__(message)
        self.usage = usage


class UnknownProcessor(LookupError):
    pass


class OptionsError(ValueError):
    """Invalid processor options; `errors` maps each option name to its message."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))


@dataclass(frozen=True)
class Option:
    """One processor option, rendered as a form field.

    `default` may be a zero-argument callable, read when options are validated (so a
    default can come from settings); `initial()` gives the resolved value for a form.
    """

    name: str
    label: str
    type: str = "str"
    default: Any = None
    required: bool = False
    help: str = ""
    choices: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None

    def __post_init__(self) -> None:
        if self.type not in OPTION_TYPES:
            raise ValueError(f"option {self.name!r}: unknown type {self.type!r}")
        if self.type == "choice" and not self.choices:
            raise ValueError(f"option {self.name!r}: a choice needs choices")

    def initial(self) -> Any:
        return self.default() if callable(self.default) else self.default

    def parse(self, raw: Any, input_columns: list[str]) -> Any:
        """The typed value of `raw`; raises ValueError with a user-facing message."""
        if self.type in ("int", "float"):
            return self._number(raw)
        if self.type == "bool":
            return _parse_bool(raw)
        if self.type == "columns":
            return parse_columns(raw, input_columns)
        text = str(raw) if self.type == "text" else str(raw).strip()
        if self.type == "secret" and any(ch.isspace() or not ch.isprintable() for ch in text):
            raise ValueError("A key is one line of visible characters, without spaces.")
        if self.type == "choice" and text not in self.choices:
            raise ValueError(f"Choose one of: {', '.join(self.choices)}.")
        if self.type == "url":
            return _parse_url(text)
        return text

    def _number(self, raw: Any) -> int | float:
        kind = int if self.type == "int" else float
        if isinstance(raw, bool):
            raise ValueError("Enter a number.")
        try:
            value = kind(str(raw).strip()) if isinstance(raw, str) else kind(raw)
        except (TypeError, ValueError):
            raise ValueError(
                "Enter a whole number." if kind is int else "Enter a number."
            ) from None
        if kind is int and isinstance(raw, float) and raw != value:
            raise ValueError("Enter a whole number.")
        if not math.isfinite(value):
            raise ValueError("Enter a number.")
        if self.min is not None and value < self.min:
            raise ValueError(f"Must be at least {self.min:g}.")
        if self.max is not None and value > self.max:
            raise ValueError(f"Must be at most {self.max:g}.")
        return value


def _parse_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    word = str(raw).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError("Enter yes or no.")


def _parse_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("Enter a full http:// or https:// URL.")
    return text.rstrip("/")


def match_column(name: str, input_columns: list[str]) -> str | None:
    """The input column called `name`: exact match first, then ignoring case."""
    if name in input_columns:
        return name
    folded = [column for column in input_columns if column.casefold() == name.casefold()]
    return folded[0] if len(folded) == 1 else None


def parse_columns(raw: Any, input_columns: list[str]) -> list[str]:
    """A comma-separated list (or a list) of input column names, checked against them."""
    names = raw if isinstance(raw, list | tuple) else str(raw).split(",")
    names = [str(name).strip() for name in names if str(name).strip()]
    if not input_columns:
        return names
    matched = [match_column(name, input_columns) for name in names]
    unknown = [name for name, column in zip(names, matched, strict=True) if column is None]
    if unknown:
        raise ValueError(
            f"Unknown column{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}. "
            f"Columns are: {', '.join(input_columns)}."
        )
    return list(dict.fromkeys(column for column in matched if column is not None))


def _is_blank(raw: Any) -> bool:
    return raw is None or (isinstance(raw, str) and not raw.strip())


@dataclass(eq=False)
class Processor:
    """A registered processor. Create with `@processor(...)`, not directly."""

    name: str
    label: str
    description: str
    options: tuple[Option, ...]
    io_bound: bool
    fn: RowFunction
    outputs: Sequence[str] | Callable[[dict[str, Any], list[str]], list[str]] = ()
    validator: Validator | None = None
    notice_text: str | Callable[[dict[str, Any]], str] = ""
    reusable: bool = False
    session_factory: SessionFactory | None = field(default=None, repr=False)

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)

    def validate_options(self, raw: dict[str, Any], input_columns: list[str]) -> dict[str, Any]:
        """Typed options with defaults filled in; raises `OptionsError` listing every problem."""
        known = {option.name for option in self.options}
        errors = {name: "Unknown option." for name in raw if name not in known}
        values: dict[str, Any] = {}
        for option in self.options:
            value = raw.get(option.name)
            if _is_blank(value) or value == []:
                values[option.name] = option.initial()
                if option.required and _is_blank(values[option.name]):
                    errors[option.name] = "This field is required."
                continue
            try:
                values[option.name] = option.parse(value, input_columns)
            except ValueError as exc:
                errors[option.name] = str(exc)
        if errors:
            raise OptionsError(errors)
        return self.validator(values, input_columns) if self.validator else values

    def output_columns(self, options: dict[str, Any], input_columns: list[str]) -> list[str]:
        if callable(self.outputs):
            return list(self.outputs(options, input_columns))
        return list(self.outputs)

    def notice(self, options: dict[str, Any]) -> str:
        """Text to show on the options form (setup help, what will happen); may be ""."""
        return self.notice_text(options) if callable(self.notice_text) else self.notice_text

    def session(self, factory: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
        """Decorator: `factory(options)` yields the per-batch session of an async processor.

        An async generator function (set up, `yield` the session, clean up) or a
        function returning an async context manager.
        """
        if inspect.isasyncgenfunction(factory):
            self.session_factory = asynccontextmanager(factory)
        else:
            self.session_factory = factory
        return factory

    def open_session(self, options: dict[str, Any]) -> AbstractAsyncContextManager[Any]:
        if self.session_factory is None:
            return nullcontext()
        return self.session_factory(options)


_registry: dict[str, Processor] = {}
BUILT_INS = (
    "sheets.processors.clean",
    "sheets.processors.copy",
    "sheets.processors.llm",
    "sheets.processors.web",
)
_built_ins_loaded = False


def _load_built_ins() -> None:
    """Import the built-in processors on first use rather than at start-up.

    Their libraries (httpx, limits, phonenumbers, selectolax: ~30 MB) would otherwise
    sit in every process of a cluster, and its sentinel, monitor and pusher never run
    a row (bench llm: cluster RSS). By name, like `autodiscover_modules`.
    """
    global _built_ins_loaded
    if not _built_ins_loaded:
        _built_ins_loaded = True
        for module in BUILT_INS:
            importlib.import_module(module)


def processor(
    name: str,
    *,
    label: str = "",
    description: str = "",
    options: Iterable[Option] = (),
    outputs: Sequence[str] | Callable[[dict[str, Any], list[str]], list[str]] = (),
    io_bound: bool | None = None,
    validate: Validator | None = None,
    notice: str | Callable[[dict[str, Any]], str] = "",
    session: Callable[[dict[str, Any]], Any] | None = None,
    reusable: bool = False,
) -> Callable[[RowFunction], Processor]:
    """Register a row function as the processor `name`; returns the `Processor`.

    outputs: the output column names, or `outputs(options, input_columns)`.
    io_bound: defaults to whether the row function is `async def` (which is required
        for io_bound processors: they run concurrently on an event loop).
    validate: `validate(options, input_columns)` after per-option parsing; returns the
        final options (it may fill defaults that depend on the columns) or raises
        `OptionsError`.
    notice: text (or `notice(options)`) for the options form.
    session: the per-batch session factory; same as decorating one with `@<proc>.session`.
    reusable: a row's answer depends only on its inputs and the options, so a row the
        owner already had answered (same inputs, processor and options, secrets aside)
        takes that answer without a request, unless the `reuse` option is off.
    """

    def register(fn: RowFunction) -> Processor:
        _load_built_ins()  # a name clash with a built-in is found now, not on first use
        is_async = inspect.iscoroutinefunction(fn)
        if io_bound and not is_async:
            raise TypeError(f"processor {name!r}: an io_bound row function must be async def")
        if name in _registry and _qualified(_registry[name].fn) != _qualified(fn):
            raise ValueError(f"processor {name!r} is already registered")
        proc = Processor(
            name=name,
            label=label or name,
            description=description,
            options=tuple(options),
            io_bound=is_async if io_bound is None else io_bound,
            fn=fn,
            outputs=outputs,
            validator=validate,
            notice_text=notice,
            reusable=reusable,
        )
        if session is not None:
            proc.session(session)
        _registry[name] = proc
        return proc

    return register


def _qualified(fn: RowFunction) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def get_processor(name: str) -> Processor:
    _load_built_ins()
    try:
        return _registry[name]
    except KeyError:
        available = ", ".join(sorted(_registry)) or "none"
        raise UnknownProcessor(
            f"Unknown processor {name!r}. Available processors: {available}."
        ) from None


def all_processors() -> list[Processor]:
    _load_built_ins()
    return sorted(_registry.values(), key=lambda proc: proc.label.casefold())


def unregister(name: str) -> None:
    """Remove a processor (for tests that register throwaway ones)."""
    _registry.pop(name, None)


# --- running rows -------------------------------------------------------------


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
    if isinstance(exc, RowError):
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
    limit = max(1, int(concurrency or options.get("concurrency") or DEFAULT_CONCURRENCY))
    batch = _run_async(processor, options, rows, should_stop, row_timeout, limit)
    return _run_coroutine(batch)


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
) -> RowOutcome:
    counter = [0]
    token = _retries.set(counter)
    started = time.monotonic()
    deadline = asyncio.timeout(row_timeout)
    try:
        async with deadline:
            _row_deadline.set(deadline)
            outputs = _checked_outputs(await proc.fn(row, options, session))
        return _outcome(number, started, counter, outputs=outputs)
    except TimeoutError as exc:
        error = f"timed out after {row_timeout:g} s" if deadline.expired() else None
        return _outcome(number, started, counter, error=error or describe_exception(exc))
    except Exception as exc:  # noqa: BLE001 - one bad row never stops the batch
        error = describe_exception(exc)
        return _outcome(number, started, counter, error=error, usage=_error_usage(exc))
    finally:
        _retries.reset(token)


class RowStream:
    """Rows of an async processor kept `concurrency` in flight *across* batches.

    `run_rows` finishes a batch before the next starts, so each batch waits for its
    slowest row. A stream instead runs an event loop in a helper thread, inside one
    session for its whole life, and the caller (a sheet job, in its own thread) keeps
    feeding rows with `submit` and picks up finished ones with `collect`: with answer
    times that vary, throughput stays close to concurrency / latency.

        with RowStream(proc, options, concurrency=8) as stream:
            stream.submit(1, {"text": "..."})
            outcomes = stream.collect(timeout=0.5)

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
        self.concurrency = max(
            1, int(concurrency or options.get("concurrency") or DEFAULT_CONCURRENCY)
        )
        self.in_flight = 0
        self._outcomes: queue.SimpleQueue[RowOutcome] = queue.SimpleQueue()
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rows: asyncio.Queue[tuple[int, dict[str, str]] | None] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._thread = threading.Thread(target=self._run, name="row-stream", daemon=True)

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
        found: list[RowOutcome] = []
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
        return found

    def cancel(self) -> None:
        """Abort the rows in flight; they produce no outcomes."""
        for task in self._workers:
            self._call(task.cancel)
        self.in_flight = 0

    def close(self, cancel: bool = False) -> None:
        if cancel:
            self.cancel()
        elif self._rows is not None:
            for _ in range(self.concurrency):
                self._call(self._rows.put_nowait, None)
        self._thread.join()

    # -- the helper thread ------------------------------------------------------------
    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

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
            self._workers = [
                asyncio.create_task(self._work(session)) for _ in range(self.concurrency)
            ]
            self._started.set()
            await asyncio.gather(*self._workers, return_exceptions=True)

    async def _work(self, session: Any) -> None:
        while (item := await self._rows.get()) is not None:
            number, row = item
            outcome = await _run_one(
                self.processor, self.options, session, number, row, self.row_timeout
            )
            self._outcomes.put(outcome)
