"""How a slice runs: the django-q2 task claims the job's lease, runs its handler until
the handler finishes or stops at a checkpoint, then settles the outcome.

Every write after the claim is conditional on this worker still holding the lease,
so a worker that was presumed dead (and whose job was recovered elsewhere) can never
overwrite what its successor did.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from django_q.exceptions import TimeoutException

from jobs.engine import worker
from jobs.engine.context import (
    Cancelled,
    JobContext,
    LeaseLost,
    PauseRequested,
    Preempted,
    SliceDone,
    TimeLimitExceeded,
)
from jobs.engine.db import atomic_retry, lock_scheduler
from jobs.engine.dispatch import dispatch
from jobs.engine.dispatch import next_for_free_worker as dispatch_next
from jobs.engine.errors import backoff_seconds, describe, is_transient
from jobs.engine.journal import announce
from jobs.engine.kinds import UnknownKind, capped_kinds, get_kind
from jobs.engine.services import notify_owner, record_event
from jobs.models import Job, JobEvent, Notification

log = logging.getLogger(__name__)
Status = Job.Status


def run_slice(job_id: int) -> str:
    """The django-q2 task: run a slice of `job_id` if it can still be claimed, then keep
    this worker busy with the next best job's slices until the task's time budget is
    used (far below django-q2's timeout), and finally fill any other free capacity.
    """
    budget_ends = time.monotonic() + settings.CONVEYOR_TASK_BUDGET_SECONDS
    outcomes = []
    next_id: int | None = job_id
    while next_id is not None:
        outcome = run_one_slice(next_id)
        if outcome == "not claimed":
            break
        outcomes.append(outcome)
        next_id = dispatch_next() if time.monotonic() < budget_ends else None
    dispatch()
    return ", ".join(outcomes) or "not claimed"


def run_one_slice(job_id: int) -> str:
    """Claim `job_id` and run one slice of it in this process (tests drive jobs with it)."""
    name = worker.worker_name()
    job = atomic_retry(lambda: _claim(job_id, name))
    if job is None:
        return "not claimed"
    try:
        kind = get_kind(job.kind)
    except UnknownKind as exc:
        _settle_failed(job, name, str(exc))
        return "failed"
    ctx = JobContext(job, kind, name)
    with worker.running(ctx):
        return _run(ctx)


def _claim(job_id: int, name: str) -> Job | None:
    """Take the lease if the job is still runnable and its kind is below its cap."""
    lock_scheduler()
    now = timezone.now()
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        return None
    runnable = (
        job.status in (Status.QUEUED, Status.RETRYING, Status.RUNNING)
        and not job.lease_owner
        and (job.run_after is None or job.run_after <= now)
    )
    cap = capped_kinds().get(job.kind)
    if runnable and cap is not None:
        running = Job.objects.filter(kind=job.kind).exclude(lease_owner="").count()
        runnable = running < cap
    if not runnable:
        if job.dispatched_at and not job.lease_owner:
            Job.objects.filter(pk=job_id, lease_owner="").update(dispatched_at=None)
        return None
    previous = job.status
    job.status = Status.RUNNING
    job.lease_owner = name
    job.lease_expires_at = now + timedelta(seconds=settings.CONVEYOR_LEASE_SECONDS)
    job.heartbeat_at = now
    job.dispatched_at = None
    job.run_after = None
    job.started_at = job.started_at or now
    job.updated_at = now
    job.save(
        update_fields=[
            "status",
            "lease_owner",
            "lease_expires_at",
            "heartbeat_at",
            "dispatched_at",
            "run_after",
            "started_at",
            "updated_at",
        ]
    )
    if previous != Status.RUNNING:
        verb = "Started" if previous == Status.QUEUED and not job.cursor else "Running again"
        record_event(job, JobEvent.Kind.STATE, f"{verb} on {name}", status=Status.RUNNING)
    announce(job.pk)
    return job


def _run(ctx: JobContext) -> str:
    try:
        result = ctx.kind.handler(ctx)
    except LeaseLost:
        log.warning("job %s: lease lost; another worker has taken over", ctx.job_id)
        return "lease lost"
    except SliceDone:
        _settle(ctx, {}, None)
        return "slice done"
    except Preempted:
        return "preempted"
    except PauseRequested:
        _settle(ctx, {"status": Status.PAUSED, "requested": ""}, "Paused")
        return "paused"
    except Cancelled:
        now = timezone.now()
        fields = {
            "status": Status.CANCELLED,
            "requested": "",
            "cancelled_at": now,
            "finished_at": now,
        }
        _settle(ctx, fields, "Cancelled", notify=(Notification.Level.INFO, "was cancelled"))
        return "cancelled"
    except TimeLimitExceeded as exc:
        _fail(ctx, str(exc), "")
        return "failed"
    except Exception as exc:  # noqa: BLE001 - any handler error is the job's outcome
        _on_error(ctx, exc, traceback.format_exc())
        return "error"
    return _succeed(ctx, result)


def _settle(
    ctx: JobContext,
    fields: dict[str, Any],
    message: str | None,
    *,
    data: dict[str, Any] | None = None,
    notify: tuple[str, str] | None = None,
) -> bool:
    return _release(
        ctx.job_id,
        ctx.worker,
        {**fields, "run_seconds": ctx.run_seconds},
        message,
        data=data,
        notify=notify,
    )


def _release(
    job_id: int,
    lease_owner: str,
    fields: dict[str, Any],
    message: str | None,
    *,
    data: dict[str, Any] | None = None,
    notify: tuple[str, str] | None = None,
) -> bool:
    """Release the lease and apply `fields`, only if `lease_owner` still holds the job.

    The new state, its event and the owner's notification commit together.
    """

    def write() -> bool:
        now = timezone.now()
        held = Job.objects.filter(pk=job_id, lease_owner=lease_owner).update(
            **fields, lease_owner="", lease_expires_at=None, updated_at=now
        )
        if not held:
            return False
        if message is not None:
            status = fields.get("status", "")
            record_event(job_id, JobEvent.Kind.STATE, message, status=status, data=data)
        if notify is not None:
            job = Job.objects.get(pk=job_id)
            notify_owner(job, notify[0], f"{job.title} {notify[1]}")
        announce(job_id)
        return True

    return atomic_retry(write)


def _succeed(ctx: JobContext, result: Any) -> str:
    try:
        json.dumps(result)
    except (TypeError, ValueError):
        _fail(ctx, f"The handler returned a result that is not JSON: {type(result).__name__}", "")
        return "failed"
    now = timezone.now()
    errors = f" with {ctx.failed} row errors" if ctx.failed else ""
    message = f"Succeeded{errors}"
    fields = {"status": Status.SUCCEEDED, "result": result, "finished_at": now, "message": message}
    verb = f"finished{errors}"
    level = Notification.Level.ERROR if ctx.failed else Notification.Level.SUCCESS
    _settle(ctx, fields, message, notify=(level, verb))
    return "succeeded"


def _failed_fields(error: str, tb: str) -> dict[str, Any]:
    return {
        "status": Status.FAILED,
        "error": error,
        "traceback": tb,
        "finished_at": timezone.now(),
        "message": error[:500],
    }


def _fail(ctx: JobContext, error: str, tb: str) -> None:
    fields = _failed_fields(error, tb)
    _settle(ctx, fields, error, notify=(Notification.Level.ERROR, f"failed: {error}"[:400]))


def _on_error(ctx: JobContext, exc: Exception, tb: str) -> None:
    """Retry transient errors with backoff until `max_attempts`; fail on anything else."""
    error = describe(exc)
    transient = is_transient(exc) or isinstance(exc, TimeoutException)
    if not transient:
        _fail(ctx, error, tb)
        return
    attempt = ctx.attempts + 1
    if attempt >= ctx.max_attempts:
        _fail(ctx, f"Gave up after {attempt} attempts: {error}", tb)
        return
    delay = backoff_seconds(attempt)
    fields = {
        "status": Status.RETRYING,
        "attempts": attempt,
        "run_after": timezone.now() + timedelta(seconds=delay),
        "error": error,
        "traceback": tb,
    }
    message = f"Transient error: {error}; retrying in {delay:.1f} s (attempt {attempt + 1} of {ctx.max_attempts})"
    _settle(ctx, fields, message, data={"delay": delay, "attempt": attempt})


def _settle_failed(job: Job, name: str, error: str) -> None:
    """Fail a claimed job before its handler could start (e.g. unknown kind)."""
    fields = _failed_fields(error, "")
    _release(
        job.pk, name, fields, error, notify=(Notification.Level.ERROR, f"failed: {error}"[:400])
    )
