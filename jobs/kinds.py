"""The jobs app's own kinds: the demo counter, a worked example of a kind (found at
start-up like every app's `kinds` module). It counts to N, one batch at a time.

Parameters (all optional): `n` units (default 10), `batch` units per commit (1),
`delay` seconds of work per unit (0), `fail_units` unit numbers that fail as row
errors, `fail_at` unit number that fails the whole job, `transient_failures` number
of attempts that raise a transient error first, `crash_at` unit number at which the
worker process kills itself (a "poison" job).
"""

from __future__ import annotations

import os
import signal
import time

from django.utils import timezone

from jobs.engine.context import JobContext
from jobs.engine.errors import PermanentError, TransientError
from jobs.engine.kinds import job_kind
from jobs.extensions import UnitTable, extend_kind
from jobs.models import DemoUnit


def _work(ctx: JobContext, seconds: float) -> None:
    """Sleep in small steps so cancel/pause stop even a slow unit quickly."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if ctx.should_stop():
            ctx.checkpoint()
        time.sleep(min(left, 0.05))


def validate(params: dict, owner) -> dict:
    n = params.get("n", 10)
    if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= 10_000_000:
        raise ValueError("n must be an integer between 0 and 10,000,000")
    return params


def total(params: dict) -> int:
    return int(params.get("n", 10))


@job_kind("demo.count", label="Count to N", validate_params=validate, total_for=total)
def count(ctx: JobContext) -> dict:
    params = ctx.params
    n = int(params.get("n", 10))
    batch = max(1, int(params.get("batch", 1)))
    delay = float(params.get("delay", 0))
    fail_units = {int(u) for u in params.get("fail_units", [])}
    if ctx.attempts < int(params.get("transient_failures", 0)):
        raise TransientError(f"simulated transient failure on attempt {ctx.attempts + 1}")
    start = int(ctx.cursor or 0)
    if ctx.total != n:
        ctx.progress(start, total=n, message="Counting")
    failed = ctx.failed
    for first in range(start, n, batch):
        numbers = range(first, min(first + batch, n))
        started = timezone.now()
        for number in numbers:
            if number == params.get("crash_at"):
                os.kill(os.getpid(), signal.SIGKILL)
            if number == params.get("fail_at"):
                raise PermanentError(f"unit {number} is broken (fail_at)")
            _work(ctx, delay)
        failed += sum(1 for number in numbers if number in fail_units)
        units = [
            DemoUnit(
                job_id=ctx.job_id,
                number=number,
                worker=ctx.worker,
                started_at=started,
                finished_at=timezone.now(),
            )
            for number in numbers
        ]
        ctx.commit(
            cursor=numbers.stop,
            processed=numbers.stop,
            failed=failed,
            message=f"Counted {numbers.stop} of {n}",
            write=lambda units=units: DemoUnit.objects.bulk_create(units),
        )
    return {"counted": n, "failed_units": failed}


# The same handler with a concurrency cap of 1, as a single-threaded tool would need.
job_kind(
    "demo.serial",
    label="Count to N (one at a time)",
    concurrency=1,
    validate_params=validate,
    total_for=total,
)(count)

for name in ("demo.count", "demo.serial"):
    extend_kind(name, unit_table=UnitTable("jobs.DemoUnit", "job", "finished_at"))
