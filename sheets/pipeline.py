"""How a sheet job moves rows: read them in order, run them through the processor,
and commit their results with the job's cursor and counters (`ctx.commit`).

Plain (CPU) processors go batch by batch. Async (I/O-bound) processors stream: up to
`concurrency` rows stay in flight across batch boundaries and the finished leading
rows are committed about once a second, so no batch waits for its slowest row.
Either way only an unbroken run of finished rows from the cursor is committed: after
a stop or a crash the cursor points at the first row without a stored result, and
nothing is counted twice.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Min
from django.utils import timezone

from jobs.public import Cancelled, JobContext, Preempted, SliceDone, StopSlice
from sheets.models import RowResult, Sheet, SheetRow
from sheets.processors import DEDUPE_KEY, Processor, RowOutcome, RowStream, run_rows

# Measured on a no-op job (PostgreSQL, 50k rows): 2,000 rows a commit is ~7 % faster than
# 1,000 (one COMMIT's flush is ~14 ms), 5,000 no faster; a batch is also a live update.
CPU_BATCH_ROWS = 2_000
MISSING_WINDOW = 5_000  # rows looked at per query for rows without a result
COMMIT_EVERY_SECONDS = 1.0
COLLECT_WAIT_SECONDS = 0.2


class RowSource:
    """The rows a job still has to do, in order; `take` reads the next ones and moves
    past them. Modes (the cursor's `mode`): "all", every row of the range from the
    cursor; "missing" (a failed-rows pass: its failed results were deleted), every row
    of the range from the cursor that has no result yet, the failed ones and those never
    processed alike; "failed", only rows with a failed result (cursors of jobs retried
    before "missing" existed: the job's end checks what that leaves undone)."""

    def __init__(self, ctx: JobContext, sheet: Sheet, params: dict[str, Any]) -> None:
        cursor = ctx.cursor or {}
        self.job_id = ctx.job_id
        self.sheet = sheet
        self.columns = params["columns"]
        self.sources: dict[str, int] = params.get("sources") or {}
        self.mode = cursor.get("mode", "all")
        self.start = params["start_row"]
        self.next = cursor.get("next", params["start_row"])
        self.end = params["start_row"] + params["row_count"]  # exclusive

    def take(self, size: int) -> list[tuple[int, dict[str, str]]]:
        if self.mode == "failed":
            failed = RowResult.objects.filter(
                job_id=self.job_id, failed=True, row_number__gte=self.next, row_number__lt=self.end
            ).order_by("row_number")
            numbers = list(failed.values_list("row_number", flat=True)[:size])
        elif self.mode == "missing":
            numbers = self._without_result(size)
        else:
            numbers = list(range(self.next, min(self.next + size, self.end)))
        if self.mode == "missing" and len(numbers) < size:
            self.next = self.end  # every row to the end was looked at: none is left
        elif numbers:
            self.next = numbers[-1] + 1
        return load_rows(self.sheet, numbers, self.columns, self.sources)

    def _without_result(self, size: int) -> list[int]:
        # Rows before the cursor are stored or in flight: only rows from it on count.
        return rows_without_result(self.job_id, self.next, self.end, size)

    def describe(self, last: int) -> str:
        """Where the job is, in the terms of its own range, as its progress counts it:
        "Row 12 of 400" beside "12 / 400", not "of 1000" (the sheet's rows)."""
        if self.start == 1:
            where = f"Row {last} of {self.end - 1}"
        else:
            where = f"Row {last} of rows {self.start}–{self.end - 1}"
        redoing = {
            "missing": " (redoing failed and unprocessed rows)",
            "failed": " (redoing failed rows)",
        }
        return where + redoing.get(self.mode, "")

    def rewind(self, number: int) -> None:
        self.next = number


def rows_without_result(job_id: int, start: int, end: int, size: int) -> list[int]:
    """The first `size` row numbers in [start, end) that have no result of the job, in
    order: one query per MISSING_WINDOW rows."""
    numbers: list[int] = []
    while len(numbers) < size and start < end:
        stop = min(start + MISSING_WINDOW, end)
        stored = set(
            RowResult.objects.filter(
                job_id=job_id, row_number__gte=start, row_number__lt=stop
            ).values_list("row_number", flat=True)
        )
        numbers += [n for n in range(start, stop) if n not in stored][: size - len(numbers)]
        start = stop
    return numbers


class ReuseKey:
    """The key of a row's answer: the processor, its options (secrets and pacing aside)
    and the row's inputs, hashed. Called with a row, it gives that row's key."""

    IGNORED = frozenset({"concurrency", "rpm", "reuse"})  # how, not what, to ask

    def __init__(self, processor: Processor, options: dict[str, Any]) -> None:
        secret = {option.name for option in processor.options if option.type == "secret"}
        meaning = {k: v for k, v in options.items() if k not in self.IGNORED | secret}
        self._base = hashlib.sha256(
            json.dumps([processor.name, meaning], sort_keys=True, default=str).encode()
        )

    def __call__(self, row: dict[str, str]) -> str:
        digest = self._base.copy()
        digest.update(json.dumps(row, sort_keys=True).encode())
        return digest.hexdigest()


class Reuse:
    """Answers already paid for: a row whose inputs, processor and options (secrets and
    pacing aside) equal a row the same owner had answered successfully takes that
    answer without a request. Every row's key is stored with its result for later runs.
    """

    def __init__(self, ctx: JobContext, processor: Processor, options: dict[str, Any]) -> None:
        self.enabled = processor.reusable and bool(options.get("reuse", True))
        self.owner_id = ctx.owner_id
        self.key = ReuseKey(processor, options)
        self.keys: dict[int, str] = {}

    def answered(self, rows: list[tuple[int, dict[str, str]]]) -> dict[int, RowOutcome]:
        """Outcomes of the rows answered before (one query), keyed by row number."""
        if not self.enabled or not rows:
            return {}
        for number, row in rows:
            self.keys[number] = self.key(row)
        wanted = {self.keys[number] for number, _ in rows}
        found = answered_before(wanted, self.owner_id)
        return {
            number: RowOutcome(
                number,
                dict(found[self.keys[number]][0]),
                "",
                0,
                0.0,
                reused=True,
                usage=found[self.keys[number]][1],
            )
            for number, _ in rows
            if self.keys[number] in found
        }


def answered_before(keys: set[str], owner_id: int | None) -> dict[str, tuple[dict, dict | None]]:
    """`{reuse key: (outputs, usage)}` of the owner's successful rows with these keys
    (one query per thousand keys: a batch is one query, a whole-sheet estimate a few)."""
    found: dict[str, tuple[dict, dict | None]] = {}
    wanted = sorted(keys)
    for start in range(0, len(wanted), 1000):
        earlier = RowResult.objects.filter(
            reuse_key__in=wanted[start : start + 1000], failed=False, job__owner_id=owner_id
        ).values_list("reuse_key", "outputs", "usage")
        found.update((key, (outputs, usage)) for key, outputs, usage in earlier)
    return found


def load_rows(
    sheet: Sheet, numbers: list[int], columns: list[str], sources: dict[str, int] | None = None
) -> list[tuple[int, dict]]:
    """`(number, {column: value})` for the input columns of these rows: one query, plus
    one per earlier job whose output columns are inputs here (`sources`)."""
    if not numbers:
        return []
    sources = sources or {}
    own = [c for c in columns if c not in sources]
    index = [sheet.columns.index(c) for c in own]
    rows = SheetRow.objects.filter(sheet=sheet, **_numbers_lookup("number", numbers)).order_by(
        "number"
    )
    loaded = [
        (number, {c: values[i] if i < len(values) else "" for c, i in zip(own, index, strict=True)})
        for number, values in rows.values_list("number", "values")
    ]
    for job_id in set(sources.values()):
        outputs = dict(
            RowResult.objects.filter(
                job_id=job_id, **_numbers_lookup("row_number", numbers)
            ).values_list("row_number", "outputs")
        )
        for number, row in loaded:
            for column, source in sources.items():
                if source == job_id:
                    row[column] = str((outputs.get(number) or {}).get(column, ""))
    return [(number, {c: row[c] for c in columns}) for number, row in loaded]


def _numbers_lookup(field: str, numbers: list[int]) -> dict[str, Any]:
    """A range for consecutive row numbers (the usual batch): cheaper to compile and to
    run than an IN list of a thousand."""
    if numbers == list(range(numbers[0], numbers[0] + len(numbers))):
        return {f"{field}__gte": numbers[0], f"{field}__lte": numbers[-1]}
    return {f"{field}__in": numbers}


# -- storing outcomes ----------------------------------------------------------------


def bounded(outcome: RowOutcome) -> RowOutcome:
    """The outcome, or a row error if an output is larger than a cell may hold
    (CONVEYOR_MAX_OUTPUT_CHARS): a 30 MB answer is not stored, and says so."""
    limit = settings.CONVEYOR_MAX_OUTPUT_CHARS
    for name, value in (outcome.outputs or {}).items():
        size = len(value) if isinstance(value, str) else len(str(value))
        if size > limit:
            outcome.outputs = None
            outcome.error = (
                f"output {name!r} holds {size:,} characters; the most stored is {limit:,} "
                "(CONVEYOR_MAX_OUTPUT_CHARS)"
            )
            break
    return outcome


@dataclass(slots=True)
class Result:
    """One row's result as stored (RowResult's columns): built and copied by the
    thousand, so a plain record rather than a model instance (whose __init__ and field
    descriptors were a fifth of a no-op sheet job's time)."""

    row_number: int
    outputs: dict
    error: str
    attempts: int
    duration: float
    dedupe_key: str
    reuse_key: str
    reused: bool
    usage: dict | None

    @property
    def failed(self) -> bool:
        return bool(self.error)


def build_results(outcomes: list[RowOutcome], keys: dict[int, str] | None = None) -> list[Result]:
    keys = keys or {}
    results = []
    for outcome in map(bounded, outcomes):
        outputs = dict(outcome.outputs or {})
        key = str(outputs.pop(DEDUPE_KEY, "") or "")[:255]
        results.append(
            Result(
                row_number=outcome.number,
                outputs=outputs,
                error=outcome.error,
                attempts=min(outcome.attempts, 32767),
                duration=outcome.duration,
                dedupe_key=key,
                reuse_key=keys.get(outcome.number, ""),
                reused=outcome.reused,
                usage=outcome.usage,
            )
        )
    return results


def mark_duplicates(job_id: int, results: list[Result]) -> None:
    """Fill `duplicate_of` with the first earlier row sharing the dedupe key."""
    keys = {r.dedupe_key for r in results if r.dedupe_key}
    if not keys:
        return
    first = dict(
        RowResult.objects.filter(job_id=job_id, dedupe_key__in=keys)
        .values("dedupe_key")
        .annotate(first=Min("row_number"))
        .values_list("dedupe_key", "first")
    )
    for result in sorted(results, key=lambda r: r.row_number):
        if not result.dedupe_key:
            continue
        earliest = first.get(result.dedupe_key)
        if earliest is None or earliest > result.row_number:
            first[result.dedupe_key] = result.row_number
        elif earliest < result.row_number:
            result.outputs["duplicate_of"] = earliest


RESULT_COLUMNS = [
    "job_id",
    "sheet_id",
    "row_number",
    "outputs",
    "error",
    "failed",
    "attempts",
    "duration",
    "dedupe_key",
    "reuse_key",
    "reused",
    "usage",
    "updated_at",
]
STAGE = "conveyor_rowresult_stage"


def store_results(job_id: int, sheet_id: int, results: list[Result]) -> None:
    """Upsert: a row redone after a crash replaces its result, never duplicates it.

    The ORM's bulk upsert builds a model and compiles parameters per row; this writes
    the rows as they are: PostgreSQL copies them into a temporary table and merges
    that with one INSERT ... ON CONFLICT; SQLite runs one prepared upsert for them all.
    """
    mark_duplicates(job_id, results)
    if not results:
        return
    connection = transaction.get_connection()
    now = RowResult._meta.get_field("updated_at").get_db_prep_save(timezone.now(), connection)
    rows = [_result_row(job_id, sheet_id, result, now) for result in results]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            _copy_upsert(cursor, rows)
        else:
            cursor.executemany(
                _upsert_sql(connection, "VALUES (" + ", ".join(["%s"] * len(RESULT_COLUMNS)) + ")"),
                rows,
            )


def _result_row(job_id: int, sheet_id: int, result: Result, now: Any) -> tuple:
    """The values of RESULT_COLUMNS, in their order."""
    usage = None if result.usage is None else json.dumps(result.usage)
    return (
        job_id,
        sheet_id,
        result.row_number,
        json.dumps(result.outputs),
        result.error,
        result.failed,
        result.attempts,
        result.duration,
        result.dedupe_key,
        result.reuse_key,
        result.reused,
        usage,
        now,
    )


def _upsert_sql(connection, source: str) -> str:
    quote = connection.ops.quote_name
    columns = ", ".join(quote(c) for c in RESULT_COLUMNS)
    updates = ", ".join(
        f"{quote(c)} = excluded.{quote(c)}"
        for c in RESULT_COLUMNS
        if c not in ("job_id", "row_number", "sheet_id")
    )
    return (
        f"INSERT INTO {quote(RowResult._meta.db_table)} ({columns}) {source} "
        f"ON CONFLICT ({quote('job_id')}, {quote('row_number')}) DO UPDATE SET {updates}"
    )


def _copy_upsert(cursor, rows: list[tuple]) -> None:
    """COPY into a temporary table of this database session (made if missing: a rolled
    back transaction may have taken it away), then one INSERT ... SELECT ... ON CONFLICT
    into the results, then empty the stage. One batch is hundreds of rows: the extra
    statements cost nothing next to the per-row work saved."""
    quote = cursor.db.ops.quote_name
    table = quote(RowResult._meta.db_table)
    cursor.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} AS "
        f"SELECT {', '.join(quote(c) for c in RESULT_COLUMNS)} FROM {table} WITH NO DATA"
    )
    with cursor.copy(
        f"COPY {STAGE} ({', '.join(quote(c) for c in RESULT_COLUMNS)}) FROM STDIN"
    ) as copy:
        for row in rows:
            copy.write_row(row)
    columns = ", ".join(quote(c) for c in RESULT_COLUMNS)
    cursor.execute(_upsert_sql(cursor.db, f"SELECT {columns} FROM {STAGE}"))
    cursor.execute(f"DELETE FROM {STAGE}")


def commit(
    ctx: JobContext,
    source: RowSource,
    done: list[RowOutcome],
    next_number: int,
    keys: dict[int, str] | None = None,
) -> None:
    """Results of `done` (finished rows in order) with the cursor and counters; checkpoint."""
    for outcome in done:
        outcome.error = ctx.scrub(outcome.error)  # an upstream may echo the API key
    results = build_results(done, keys)
    last = done[-1].number if done else next_number
    ctx.commit(
        cursor={"next": next_number, "mode": source.mode},
        processed=ctx.processed + len(results),
        failed=ctx.failed + sum(1 for r in results if r.failed),
        message=source.describe(last),
        write=lambda: store_results(ctx.job_id, source.sheet.pk, results),
        spent=batch_spent(done),
        reused=sum(1 for r in results if r.reused),
    )


def batch_spent(done: list[RowOutcome]) -> dict[str, float]:
    """What this batch's rows cost, summed (reused rows cost nothing this time)."""
    spent: dict[str, float] = {}
    for outcome in done:
        if outcome.reused or not outcome.usage:
            continue
        for name, value in outcome.usage.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                spent[name] = spent.get(name, 0) + value
    return spent


# -- the two ways of running --------------------------------------------------------------


def finished_prefix(numbers: list[int], outcomes: list[RowOutcome]) -> list[RowOutcome]:
    """Outcomes of the leading rows that all finished, in row order."""
    by_number = {o.number: o for o in outcomes}
    prefix = []
    for number in numbers:
        if number not in by_number:
            break
        prefix.append(by_number[number])
    return prefix


def run_in_batches(
    ctx: JobContext,
    source: RowSource,
    processor: Processor,
    options: dict[str, Any],
    row_timeout: float,
) -> None:
    while rows := source.take(CPU_BATCH_ROWS):
        numbers = [number for number, _ in rows]
        outcomes = run_rows(
            processor, options, rows, should_stop=ctx.stop_event.is_set, row_timeout=row_timeout
        )
        done = finished_prefix(numbers, outcomes)
        next_number = numbers[len(done)] if len(done) < len(numbers) else source.next
        source.rewind(next_number)
        commit(ctx, source, done, next_number)  # raises if a stop is pending


def run_streaming(
    ctx: JobContext,
    source: RowSource,
    processor: Processor,
    options: dict[str, Any],
    row_timeout: float,
) -> None:
    """Keep the processor's `concurrency` busy; commit finished leading rows every second.

    A successful answer is paid for, so it is never thrown away: when the slice ends,
    the job is paused or out of time, or a higher-priority job waits, no new rows start
    and the rows in flight finish and are committed before the slice stops. A commit's
    checkpoint that says "stop" while rows are in flight is held until they are done.
    Only a cancel aborts the requests in flight (those rows are simply not counted).
    Rows answered before (`Reuse`) go straight to the finished ones, with no request.
    """
    reuse = Reuse(ctx, processor, options)
    with RowStream(processor, options, row_timeout=row_timeout) as stream:
        started: deque[int] = deque()  # row numbers in flight or finished, in order
        finished: dict[int, RowOutcome] = {}
        exhausted = yielding = False
        held: StopSlice | None = None  # a stop the checkpoint asked for, rows still in flight
        last_commit = time.monotonic()
        while True:
            asked = ctx.stop_event.is_set()  # cancel, pause or time limit: the commit says which
            urgent = asked and (held is None or isinstance(held, SliceDone))
            winding_down = held is not None or yielding or ctx.should_stop()
            if not winding_down and not exhausted and stream.in_flight < 2 * stream.concurrency:
                rows = source.take(2 * stream.concurrency - stream.in_flight)
                exhausted = not rows
                answered = reuse.answered(rows)
                for number, row in rows:
                    started.append(number)
                    if number in answered:
                        finished[number] = answered[number]
                    else:
                        stream.submit(number, row)
            for outcome in stream.collect(timeout=COLLECT_WAIT_SECONDS):
                finished[outcome.number] = outcome
            idle = stream.in_flight == 0
            due = time.monotonic() - last_commit >= COMMIT_EVERY_SECONDS
            if not idle and not urgent:  # else commit now
                ready = bool(started) and started[0] in finished
                if yielding or not due or not (ready or asked):
                    continue
                if not asked and ctx.higher_priority_waiting():
                    yielding = True  # its checkpoint would hand the job over mid-flight
                    continue
            done = []
            while started and started[0] in finished:
                done.append(finished.pop(started.popleft()))
            try:
                commit(ctx, source, done, started[0] if started else source.next, reuse.keys)
            except Cancelled:
                stream.cancel()
                raise
            except StopSlice as stop:
                if idle or isinstance(stop, Preempted):
                    raise
                if isinstance(stop, SliceDone):
                    ctx.stop_event.clear()  # nothing was requested: a new request sets it again
                held = stop  # stop at the first commit once the rows in flight are done
            else:
                held, yielding = None, False  # nothing to stop for (any more): carry on
            last_commit = time.monotonic()
            if idle and exhausted and not started:
                return
