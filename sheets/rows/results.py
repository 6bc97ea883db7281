"""Storing row outcomes as RowResult rows: bounded outputs, duplicate marks, and one
upsert per batch (COPY and a merge on PostgreSQL, one prepared upsert on SQLite), so a
row redone after a crash replaces its result and is never stored twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Min
from django.utils import timezone

from sheets.models import RowResult
from sheets.processors import DEDUPE_KEY, RowOutcome


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
