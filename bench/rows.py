"""The rows benchmark: Conveyor's own cost per spreadsheet row, end to end.

- copy: a `sheets.process` job with the no-op `copy` processor over a 100,000-row
  sheet, submit -> succeeded with every RowResult stored, against (a) django-q2 used
  naively, one task per row that reads the row and inserts its result, and (b) the
  database's bulk-insert rate of the same RowResult rows (bulk_create, 1,000 a batch).
- clean: the `clean` processor over the same sheet, next to copy, for reference.
bench/README.md explains the method and how to read the ratios.
"""

from __future__ import annotations

import uuid

from django.db import transaction

from bench import sheetdata
from bench.common import Bench, Stopwatch, wait_for

BULK_BATCH = 1_000


def run(bench: Bench) -> None:
    rows = bench.size(100_000, 10_000)
    naive_rows = bench.size(2_000, 300)
    # A sheet job is one long job: the broker only starts it, so `clean` (a reference
    # figure) runs on the ORM-broker variants only; the Redis ones measure the baselines.
    with_clean = bench.variant.broker == "orm"
    user = sheetdata.owner()
    sheet = sheetdata.import_contacts(bench, rows, user)
    warm = sheetdata.import_contacts(bench, 300, user)
    job_timeout = 120 + rows / 200
    seconds: dict[str, float] = {}
    with bench.cluster("rows"):
        for processor in ("copy", "clean"):  # workers import and connect before timing
            sheetdata.run_job(warm, processor, timeout=60, user=user)
        for processor in ("copy", "clean") if with_clean else ("copy",):
            seconds[processor], job = sheetdata.run_job(
                sheet, processor, timeout=job_timeout, user=user
            )
            bench.detail(f"{processor}_run_seconds", round(job.run_seconds, 3))
            bench.say(_rate_text(f"Conveyor {processor}", rows, seconds[processor]))
        seconds["naive"] = naive_django_q2(sheet, naive_rows, user)
        bench.say(_rate_text("django-q2, a task per row", naive_rows, seconds["naive"]))
    seconds["bulk"] = bulk_insert(sheet, rows, user)
    bench.say(_rate_text("bulk_create of the same results", rows, seconds["bulk"]))
    bench.detail("seconds", {key: round(value, 3) for key, value in seconds.items()})
    bench.detail("rows", {"sheet": rows, "naive_django_q2": naive_rows})
    _record(bench, rows, naive_rows, seconds)


def _record(bench: Bench, rows: int, naive_rows: int, seconds: dict[str, float]) -> None:
    copy_rate = rows / seconds["copy"]
    bulk_rate, naive_rate = rows / seconds["bulk"], naive_rows / seconds["naive"]
    per_row, per_insert = 1e6 / copy_rate, 1e6 / bulk_rate
    bench.figure(
        "copy vs task per row",
        copy_rate,
        "rows/s",
        baseline=("django-q2, one task per row", naive_rate, "rows/s"),
        comment=f"{per_row:.0f} µs a row, against {1e6 / naive_rate:,.0f} µs a task",
        note=(
            f"a copy (no-op) job over {rows:,} rows, submit to succeeded with every result "
            f"stored, on one worker; against {naive_rows:,} django-q2 tasks, one per row, "
            "each reading its row and inserting its result, on the same cluster (first "
            "enqueue to last result stored)."
        ),
    )
    bench.figure(
        "copy vs bulk insert",
        copy_rate,
        "rows/s",
        baseline=("bulk_create of the same results", bulk_rate, "rows/s"),
        comment=f"{per_insert:.0f} µs a row to insert; {per_row - per_insert:+.0f} µs to read "
        "it, upsert the result and checkpoint",
        note=(
            "the same copy job against RowResult.objects.bulk_create of the same "
            f"{rows:,} results in batches of {BULK_BATCH:,}, one transaction each, from "
            "one process (no cluster running): the database's own insert rate."
        ),
    )
    if "clean" not in seconds:
        return
    clean_rate = rows / seconds["clean"]
    bench.figure(
        "clean",
        clean_rate,
        "rows/s",
        baseline=("copy (no-op) over the same sheet", copy_rate, "rows/s"),
        comment=f"the clean processor adds {1e6 / clean_rate - per_row:.0f} µs a row",
        note="the clean processor over the same sheet, for reference (ORM-broker variants "
        "only: the broker plays no part in a long job): its own work per row (e-mail, "
        "phone and URL validation, duplicate keys) is the difference.",
    )


def naive_django_q2(sheet, count: int, user) -> float:
    """`count` tasks, one per row; seconds from the first enqueue to the last result."""
    from django_q.tasks import async_task

    from bench.tasks import shared_broker
    from jobs.models import Job
    from sheets.models import RowResult

    job = _results_holder(user, "naive django-q2 baseline")
    broker = shared_broker()
    group = f"naive-{uuid.uuid4().hex[:8]}"
    watch = Stopwatch()
    for number in range(1, count + 1):
        async_task("bench.tasks.naive_row", job.pk, sheet.pk, number, broker=broker, group=group)
    stored = RowResult.objects.filter(job_id=job.pk)
    wait_for(
        lambda: stored.count() >= count,
        timeout=120 + count / 10,
        interval=0.1,
        what=f"{count} naive django-q2 tasks to store their results",
    )
    seconds = watch.stop()
    Job.objects.filter(pk=job.pk).delete()
    return seconds


def bulk_insert(sheet, count: int, user) -> float:
    """The same results as the copy job, bulk_created 1,000 a transaction."""
    from jobs.models import Job
    from sheets.models import RowResult

    job = _results_holder(user, "bulk insert baseline")
    columns = sheetdata.COLUMNS
    rows = list(sheetdata.contact_rows(count))
    with Stopwatch() as watch:
        for start in range(0, count, BULK_BATCH):
            batch = [
                RowResult(
                    job_id=job.pk,
                    sheet_id=sheet.pk,
                    row_number=start + offset + 1,
                    outputs={f"copy_{c}": v for c, v in zip(columns, values, strict=True)},
                )
                for offset, values in enumerate(rows[start : start + BULK_BATCH])
            ]
            with transaction.atomic():
                RowResult.objects.bulk_create(batch)
    stored = RowResult.objects.filter(job_id=job.pk).count()
    if stored != count:
        raise RuntimeError(f"bulk insert stored {stored} of {count} rows")
    Job.objects.filter(pk=job.pk).delete()
    return watch.seconds


def _results_holder(user, label: str):
    """A finished Job row for baseline results to belong to (nothing runs it)."""
    from jobs.models import Job

    return Job.objects.create(
        kind="demo.count", label=label, owner=user, status=Job.Status.SUCCEEDED
    )


def _rate_text(what: str, rows: int, seconds: float) -> str:
    return f"{what}: {rows:,} rows in {seconds:.2f} s = {rows / seconds:,.0f} rows/s"
