"""What a job handler sees: its parameters and cursor, `commit()` for a batch of work,
`progress()`, `checkpoint()` and a timeline logger.

A handler is written as if it ran the whole job: it starts from `ctx.cursor`, works in
batches and calls `ctx.commit(...)` after each. The commit stores the batch's results,
the new cursor and the progress in one transaction, then checks whether to stop:
cancel, pause, a higher-priority job waiting, the time limit, or the end of the slice.
Stopping raises a `StopSlice`; the runner catches it, and the next slice resumes from
the committed cursor, so a crash loses at most the batch in flight.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psutil
from django.conf import settings

from jobs.engine import controls, dispatch, secrets, transitions
from jobs.engine.db import atomic_retry
from jobs.engine.errors import (
    Cancelled,
    KindHeld,
    PauseRequested,
    Preempted,
    SliceDone,
    TimeLimitExceeded,
)
from jobs.engine.journal import announce, record_event
from jobs.models import Job, JobEvent

if TYPE_CHECKING:
    from jobs.engine.kinds import JobKind

_UNSET: Any = object()
_PROCESS = psutil.Process()


def _cpu_time() -> float:
    """This process's CPU seconds, all threads (os.times: far cheaper than process_time)."""
    times = os.times()
    return times.user + times.system


PROGRESS_EVENT_SECONDS = 5.0
PREEMPTION_CHECK_SECONDS = 1.0
CONTROL_CHECK_SECONDS = 1.0  # operators' holds (kind paused or capped): looked at this often


def add_spent(total: dict[str, float], more: dict[str, float]) -> dict[str, float]:
    """The sum of two `spent` dicts, key by key (floats kept to a millionth: cents of
    cents are plenty for a cost, and JSON should not grow 17-digit fractions)."""
    summed = dict(total)
    for name, value in more.items():
        value = summed.get(name, 0) + value
        summed[name] = round(value, 6) if isinstance(value, float) else value
    return summed


class JobContext:
    def __init__(self, job: Job, kind: JobKind, worker: str) -> None:
        self.job_id: int = job.pk
        self.claimed: Job = job  # the row as claimed (read-only): what a hook may describe
        self.kind = kind
        self.subkind: str = job.subkind
        self.label: str = job.label
        self.params: dict[str, Any] = secrets.unseal(job.params or {})
        self.secrets: set[str] = secrets.secrets_in(self.params)
        self.owner_id: int | None = job.owner_id
        self.priority: int = job.priority
        self.cursor: Any = job.cursor
        self.total: int | None = job.total
        self.processed: int = job.processed
        self.failed: int = job.failed
        self.worked_units: int = job.worked_units
        self.spent: dict[str, float] = dict(job.spent or {})
        self.message: str = job.message
        self.attempts: int = job.attempts
        self.max_attempts: int = job.max_attempts
        self.time_limit: float | None = job.time_limit
        self.worker = worker
        self.stop_event = threading.Event()
        self.logger = TimelineLogger(self)
        self._run_seconds_before = job.run_seconds
        self._budget_from = job.run_seconds_at_retry
        self._cpu_seconds_before = job.cpu_seconds
        self._peak_rss_mb = job.peak_rss_mb or 0.0
        self._cpu_started = _cpu_time()
        self._slice_started = time.monotonic()
        # A handler that cannot resume is not cut into slices: it runs until it ends
        # or is stopped (end_slice_now still ends it when its worker stops).
        slice_seconds = settings.CONVEYOR_SLICE_SECONDS if kind.resumable else math.inf
        self._slice_deadline = self._slice_started + slice_seconds
        self._requested = job.requested
        self._requested_read_at = time.monotonic()
        self._last_progress_event = time.monotonic()
        self._last_preemption_check = time.monotonic()
        self._last_control_check = -math.inf

    # -- time -------------------------------------------------------------
    @property
    def run_seconds(self) -> float:
        """Running time of the job so far, this slice included (queue time excluded)."""
        return self._run_seconds_before + (time.monotonic() - self._slice_started)

    def usage(self) -> dict[str, float]:
        """Running time, CPU time and peak memory so far, as stored on the job.

        CPU is this worker process's (all its threads, e.g. a processor's event loop);
        memory is the process's RSS, sampled at each commit.
        """
        rss_mb = _PROCESS.memory_info().rss / (1024 * 1024)
        self._peak_rss_mb = max(self._peak_rss_mb, rss_mb)
        cpu = self._cpu_seconds_before + (_cpu_time() - self._cpu_started)
        return {
            "run_seconds": self.run_seconds,
            "cpu_seconds": round(cpu, 3),
            "peak_rss_mb": round(self._peak_rss_mb, 1),
        }

    def budget_used(self) -> float:
        """Running time counted against the time limit: since the last retry."""
        return self.run_seconds - self._budget_from

    def time_limit_exceeded(self) -> bool:
        return self.time_limit is not None and self.budget_used() > self.time_limit

    def time_limit_error(self) -> str:
        """What a job past its time limit fails with: the limit and where it is set."""
        source = "the time_limit it was submitted with"
        if self.kind.time_limit_setting and self.time_limit == self.kind.time_limit:
            source = self.kind.time_limit_setting
        return (
            f"Time limit exceeded: ran {self.budget_used():.1f} s of running time; the "
            f"limit is {self.time_limit:g} s ({source})."
        )

    def slice_over(self) -> bool:
        """The slice has used its time: reach a checkpoint soon, without hurrying work."""
        return time.monotonic() > self._slice_deadline

    def higher_priority_waiting(self) -> bool:
        """Would a checkpoint now hand this job's worker to a waiting job? (A cheap look;
        streams use it to let work in flight finish before that checkpoint.)"""
        return dispatch.preempting_job(self.priority) is not None

    def end_slice_now(self) -> None:
        """End this slice at its next checkpoint (the worker is stopping). In-flight work
        is not cancelled: `should_stop()` turns true and streams wind down."""
        self._slice_deadline = time.monotonic()

    def should_stop(self) -> bool:
        """Cheap test for long I/O: True when the job should reach a checkpoint soon."""
        return self.stop_event.is_set() or self.slice_over()

    # -- committing work ----------------------------------------------------
    def commit(
        self,
        *,
        cursor: Any = _UNSET,
        processed: int | None = None,
        failed: int | None = None,
        total: int | None = _UNSET,
        message: str | None = None,
        write: Callable[[], Any] | None = None,
        spent: dict[str, float] | None = None,
        reused: int = 0,
    ) -> None:
        """Store a batch: `write()` (the results), cursor and counters in one transaction.

        Counters are absolute; `spent` is what this batch cost (e.g. tokens), added to
        the job's totals in the same transaction, so a batch redone after a crash is
        not counted twice. `reused`: units of this batch done without work (answers
        taken from earlier jobs): processed, but not in the rate (`Job.worked_units`).
        Then `checkpoint()` runs, which may raise `StopSlice`.
        """
        fields: dict[str, Any] = {}
        if spent:
            fields["spent"] = add_spent(self.spent, spent)
        if cursor is not _UNSET:
            fields["cursor"] = cursor
        if processed is not None:
            fields["processed"] = processed
            worked = processed - self.processed - reused
            if worked > 0:
                fields["worked_units"] = self.worked_units + worked
        if failed is not None:
            fields["failed"] = failed
        if total is not _UNSET:
            fields["total"] = total
        if message is not None:
            fields["message"] = message[:500]
        progressed = processed is not None and processed > self.processed
        if (progressed or cursor is not _UNSET) and self.kind.resumable:
            fields["attempts"] = 0  # a crash now loses only what follows: a new start
        stored = {**fields, **self.usage()}  # read before the transaction (it holds a lock)
        atomic_retry(lambda: self._commit(stored, write))
        for name, value in fields.items():
            setattr(self, name, value)
        self.checkpoint()

    def _commit(self, fields: dict[str, Any], write: Callable[[], Any] | None) -> None:
        """The batch's results and the job's progress, in the caller's transaction."""
        progress = None
        if time.monotonic() - self._last_progress_event >= PROGRESS_EVENT_SECONDS:
            self._last_progress_event = time.monotonic()
            progress = {
                "processed": fields.get("processed", self.processed),
                "failed": fields.get("failed", self.failed),
                "total": fields.get("total", self.total),
            }
        self._requested = transitions.progress(self.job_id, self.worker, fields, event=progress)
        self._requested_read_at = time.monotonic()
        if write is not None:
            write()

    def replace_input(
        self, params: dict[str, Any], *, total: int | None, entity_key: str, message: str
    ) -> None:
        """The handler read its input afresh (a scheduled job re-reading its Google
        Sheet): store the new params (secrets sealed), total and entity key with a
        timeline line; the job goes on with them. Before the first commit only."""
        fields = {"params": secrets.seal(params), "total": total, "entity_key": entity_key}
        atomic_retry(
            lambda: transitions.replace_input(self.job_id, self.worker, fields, self.scrub(message))
        )
        self.params, self.total = params, total

    def progress(self, done: int, total: int | None = None, message: str | None = None) -> None:
        """Report progress (absolute units done) and checkpoint."""
        self.commit(processed=done, total=self.total if total is None else total, message=message)

    # -- stopping -------------------------------------------------------------
    def _read_control(self) -> None:
        self._requested = (
            Job.objects.filter(pk=self.job_id).values_list("requested", flat=True).first() or ""
        )
        self._requested_read_at = time.monotonic()

    def checkpoint(self) -> None:
        """Stop here if asked to: raises a `StopSlice` subclass, else returns at once."""
        fresh = time.monotonic() - self._requested_read_at < 0.05
        if not fresh:
            self._read_control()
        if self._requested in (Job.Request.CANCEL, Job.Request.FORCE):
            raise Cancelled("Cancelled")
        if self._requested == Job.Request.PAUSE:
            raise PauseRequested("Paused")
        if self.time_limit_exceeded():
            raise TimeLimitExceeded(self.time_limit_error())
        now = time.monotonic()
        # A kind that cannot resume is not parked (it would start again from scratch):
        # its running jobs finish, its queued ones wait.
        if self.kind.resumable and now - self._last_control_check >= CONTROL_CHECK_SECONDS:
            self._last_control_check = now
            held = controls.hold_on(self.job_id, self.kind.name, self.subkind)
            if held is not None:
                raise KindHeld(*held)
        if self.kind.resumable and now - self._last_preemption_check >= PREEMPTION_CHECK_SECONDS:
            self._last_preemption_check = now
            # Cheap check first; the decision itself is taken under the lock.
            if dispatch.preempting_job(self.priority) is not None and dispatch.yield_to_waiting(
                self.job_id, self.worker, self.priority, self.run_seconds
            ):
                raise Preempted("Yielded to a higher-priority job")
        if now > self._slice_deadline:
            raise SliceDone("Slice finished")
        self.stop_event.clear()  # a stop request was withdrawn (e.g. resumed before pausing)

    def scrub(self, text: str) -> str:
        """`text` with this job's secrets and the server's keys masked."""
        return secrets.scrub(text, self.secrets)

    # -- timeline -------------------------------------------------------------
    def log(self, message: str, *, level: str = "info", **data: Any) -> None:
        """Append a line to the job's event timeline (its own small transaction)."""
        kind = JobEvent.Kind.ERROR if level in ("error", "critical") else JobEvent.Kind.LOG
        message = self.scrub(message)

        extra = {"level": level, **data} if data or level != "info" else None

        def write() -> None:
            record_event(self.job_id, kind, message, data=extra)
            announce(self.job_id)

        atomic_retry(write)


class TimelineLogger:
    """A logging-style facade over `JobContext.log` for code that expects a logger."""

    def __init__(self, ctx: JobContext) -> None:
        self._ctx = ctx
        self._log = logging.getLogger(f"jobs.{ctx.kind.name}")

    def _emit(self, level: str, message: str, *args: Any) -> None:
        text = self._ctx.scrub(message % args if args else message)
        getattr(self._log, level)("job %s: %s", self._ctx.job_id, text)
        self._ctx.log(text, level=level)

    def debug(self, message: str, *args: Any) -> None:
        self._log.debug("job %s: " + message, self._ctx.job_id, *args)

    def info(self, message: str, *args: Any) -> None:
        self._emit("info", message, *args)

    def warning(self, message: str, *args: Any) -> None:
        self._emit("warning", message, *args)

    def error(self, message: str, *args: Any) -> None:
        self._emit("error", message, *args)
