"""How a slice runs: the django-q2 task claims the job's lease, runs its handler until
the handler finishes or stops at a checkpoint, then settles the outcome.

Settling and starting the next job are one transaction: the worker releases (or
finishes) its job and claims the best claimable job itself (`dispatch.pick_next`), so
a worker goes from job to job without a broker round trip, for up to the task's time
budget. Every write after a claim is conditional on this worker still holding the
lease (`jobs.engine.transitions`), so a worker that was presumed dead (and whose job
was recovered elsewhere) can never overwrite what its successor did.

Whatever the handler raises ends its job, never its worker: `SystemExit`,
`KeyboardInterrupt` and other `BaseException`s fail the job once (only an interrupt
that a real signal raised goes on up). A handler that reaches no checkpoint when it
must stop (force stop, a cancel or its time limit past the grace) is ended by its
worker's heartbeat with `stop_by_force`, which writes the outcome before the worker
ends its own process (django-q2 starts a new one).
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django_q.conf import Conf
from django_q.exceptions import TimeoutException

from jobs.engine import dispatch, secrets, transitions, worker
from jobs.engine.context import JobContext
from jobs.engine.db import atomic_retry
from jobs.engine.errors import (
    Cancelled,
    KindHeld,
    LeaseLost,
    PauseJob,
    PauseRequested,
    Postponed,
    Preempted,
    SliceDone,
    TimeLimitExceeded,
    UnknownKind,
    backoff_seconds,
    describe,
    is_transient,
)
from jobs.engine.journal import Journal
from jobs.engine.kinds import get_kind, job_ended
from jobs.engine.transitions import Outcome
from jobs.models import Job

log = logging.getLogger(__name__)


@dataclass
class Settlement:
    """How a slice ended, to be written by `settle`: what this worker calls it (the
    task's result lists it) and the job's `Outcome` (None: the job is no longer this
    worker's to write: its lease was lost, or it yielded to a higher-priority job)."""

    name: str
    outcome: Outcome | None = None
    # Raised again once settled: django-q2's timeout, after which django-q2 replaces
    # the worker process.
    reraise: BaseException | None = None
    released: bool = False

    @property
    def ended(self) -> bool:
        """The job ended here (its kind's end hook is due)."""
        return self.released and self.outcome is not None and self.outcome.ended


def run_slice(job_id: int) -> str:
    """The django-q2 task: run a slice of `job_id` if it can still be claimed, then keep
    this worker busy with the next best job's slices until the task's time budget is
    used (far below django-q2's timeout), and finally fill any other free capacity.
    """
    name = worker.worker_name()
    if worker.stopping():  # a task prefetched before the cluster was told to stop
        transitions.clear_dispatch([job_id])
        return "worker stopping"
    budget_ends = time.monotonic() + settings.CONVEYOR_TASK_BUDGET_SECONDS
    outcomes = []
    job = dispatch.claim_dispatched(job_id, name)
    while job is not None:
        settlement = run_claimed(job, name)
        more = time.monotonic() < budget_ends and not worker.stopping()
        more = more and settlement.reraise is None
        ended = job
        job = atomic_retry(lambda s=settlement, j=job, m=more: settle(j.pk, name, s, then_next=m))
        _after_settle(ended, settlement)
        outcomes.append(settlement.name)
    if not worker.stopping():
        dispatch.dispatch()
    return ", ".join(outcomes) or "not claimed"


def run_one_slice(job_id: int) -> str:
    """Claim `job_id` and run one slice of it in this process (tests drive jobs with it)."""
    name = worker.worker_name()
    job = dispatch.claim_dispatched(job_id, name)
    if job is None:
        return "not claimed"
    settlement = run_claimed(job, name)
    atomic_retry(lambda: settle(job.pk, name, settlement))
    _after_settle(job, settlement)
    return settlement.name


def _after_settle(job: Job, settlement: Settlement) -> None:
    """After the commit: the kind's end hook for a job that ended here, and django-q2's
    timeout raised again (its worker is then replaced)."""
    if settlement.ended:
        job_ended(job.kind, job.pk, settlement.outcome.fields)
    if settlement.reraise is not None:
        raise settlement.reraise


def run_claimed(job: Job, name: str) -> Settlement:
    """Run a slice of a job this worker holds; how it ended is returned, not yet stored.

    A job that cannot even start (an unknown kind, params that cannot be decoded, a
    secret that cannot be unsealed) fails here, at once: left to escape, the error would
    end the django-q2 task with the job still leased, holding a worker slot until the
    lease expired, attempt after attempt, while other users' jobs waited."""
    try:
        ctx = JobContext(job, get_kind(job.kind), name)
    except UnknownKind as exc:
        return _failed(str(exc), "")
    except Exception as exc:  # noqa: BLE001 - whatever it is, the job cannot run
        log.warning("job %s could not start: %s", job.pk, exc)
        return _failed(secrets.scrub(f"Could not start: {describe(exc)}"), "")
    with worker.running(ctx, force=lambda cause: stop_by_force(ctx, name, cause)):
        return _run(ctx)


def settle(job_id: int, name: str, settlement: Settlement, then_next: bool = False) -> Job | None:
    """Store how the slice ended and, with `then_next`, claim this worker's next job,
    in one transaction (the caller's); their events and announcements go out together.
    """
    journal = Journal()
    if settlement.outcome is not None:
        released = transitions.end_slice(job_id, name, settlement.outcome, journal=journal)
        settlement.released = released
        if not released:
            log.warning("job %s: lease lost before its slice was settled", job_id)
    next_job = dispatch.pick_next(name, journal) if then_next else None
    journal.flush()
    return next_job


def _run(ctx: JobContext) -> Settlement:
    try:
        result = ctx.kind.handler(ctx)
    except LeaseLost:
        log.warning("job %s: lease lost; another worker has taken over", ctx.job_id)
        return Settlement("lease lost")
    except SliceDone:
        if worker.stopping():  # back to the queue, for whichever worker is up next
            requeued = Outcome.requeued("its worker is stopping")
            return _with_time(ctx, Settlement("requeued", requeued))
        return _with_time(ctx, Settlement("slice done", Outcome.next_slice()))
    except Preempted:
        return Settlement("preempted")
    except KindHeld as exc:
        return _with_time(ctx, Settlement("parked", Outcome.parked(exc.reason, exc.hold)))
    except PauseRequested:
        return _with_time(ctx, Settlement("paused", Outcome.paused()))
    except PauseJob as exc:
        return _with_time(ctx, Settlement("paused", Outcome.paused(exc.reason)))
    except Postponed as exc:
        return _with_time(ctx, Settlement("postponed", Outcome.postponed(exc.delay, exc.reason)))
    except Cancelled:
        return _with_time(ctx, Settlement("cancelled", Outcome.cancelled()))
    except TimeLimitExceeded as exc:
        return _with_time(ctx, _on_time_limit(ctx, str(exc)))
    except Exception as exc:  # noqa: BLE001 - any handler error is the job's outcome
        return _with_time(ctx, _on_error(ctx, exc, traceback.format_exc()))
    except TimeoutException as exc:  # django-q2's own timeout: a SystemExit
        error = (
            f"Stopped by django-q2's timeout of its worker's task ({Conf.TIMEOUT} s, "
            f"Q_CLUSTER['timeout']): it reached no checkpoint for that long."
        )
        settlement = _with_time(ctx, _failed(error, traceback.format_exc()))
        settlement.reraise = exc
        return settlement
    except BaseException as exc:  # SystemExit, KeyboardInterrupt, GeneratorExit, ...
        if worker.raised_by_signal(exc):
            raise  # a real Ctrl-C: stop this process, as asked
        error = (
            f"{describe(exc)}, raised by the job's code: it ends the job, not the worker "
            f"that runs it."
        )
        return _with_time(ctx, _failed(error, traceback.format_exc()))
    return _with_time(ctx, _succeeded(ctx, result))


def stop_by_force(ctx: JobContext, name: str, cause: str) -> bool:
    """End the slice in hand without its handler (run by this worker's heartbeat thread,
    while the handler is still busy): `cause` "force" (a force stop), "cancel" or
    "time limit" (no checkpoint within CONVEYOR_CANCEL_GRACE_SECONDS). Writes the
    outcome as `settle` would; True if the job ended here, after which the heartbeat
    ends this worker process (the handler cannot be stopped otherwise)."""
    grace = settings.CONVEYOR_CANCEL_GRACE_SECONDS
    replaced = f"its worker {name} was stopped (a new one replaces it)"
    if cause == "time limit":
        error = (
            f"{ctx.time_limit_error()} It reached no checkpoint within {grace:g} s "
            f"(CONVEYOR_CANCEL_GRACE_SECONDS), so {replaced}."
        )
        settlement = _on_time_limit(ctx, error)
    else:
        message = f"Cancelled by force stop: {replaced}"
        if cause == "cancel":
            message = (
                f"Cancelled by force: it reached no checkpoint within {grace:g} s of the "
                f"cancel (CONVEYOR_CANCEL_GRACE_SECONDS), so {replaced}"
            )
        settlement = Settlement("cancelled", Outcome.cancelled(message))
    outcome = _with_time(ctx, settlement).outcome
    ended = atomic_retry(lambda: transitions.stop_by_force(ctx.job_id, name, outcome))
    if ended:
        log.warning("job %s: %s", ctx.job_id, outcome.message)
        if outcome.ended:
            job_ended(ctx.kind.name, ctx.job_id, outcome.fields)
    return ended


def _with_time(ctx: JobContext, settlement: Settlement) -> Settlement:
    """The settlement with the job's running time, CPU and memory, and its secrets
    scrubbed from every text it stores (an upstream error may echo an API key)."""
    if settlement.outcome is not None:
        settlement.outcome.add_usage(ctx.usage())
        settlement.outcome.scrub(ctx.scrub)
    return settlement


def _succeeded(ctx: JobContext, result: Any) -> Settlement:
    try:
        json.dumps(result)
    except (TypeError, ValueError):
        return _failed(
            f"The handler returned a result that is not JSON: {type(result).__name__}", ""
        )
    return Settlement("succeeded", Outcome.succeeded(result, row_errors=ctx.failed))


def _failed(error: str, tb: str) -> Settlement:
    return Settlement("failed", Outcome.failed(error, tb))


def _on_error(ctx: JobContext, exc: Exception, tb: str) -> Settlement:
    """Retry transient errors with backoff until `max_attempts`; fail on anything else
    (a kind with one attempt, such as a Django task that did not opt into retries,
    fails on the first)."""
    error = describe(exc)
    if not is_transient(exc):
        return _failed(error, tb)
    attempt = ctx.attempts + 1
    if attempt >= ctx.max_attempts:
        if ctx.max_attempts <= 1:
            return _failed(error, tb)
        return _failed(f"Gave up after {attempt} attempts: {error}", tb)
    return _retrying(ctx, attempt, error, tb, f"Transient error: {error}")


def _on_time_limit(ctx: JobContext, error: str) -> Settlement:
    """Past its time limit the job fails; a kind that cannot resume (each run starts
    afresh, with the whole limit) runs again only while its attempts allow."""
    attempt = ctx.attempts + 1
    if ctx.kind.resumable or attempt >= ctx.max_attempts:
        return _failed(error, "")
    return _retrying(ctx, attempt, error, "", error.rstrip("."))


def _retrying(ctx: JobContext, attempt: int, error: str, tb: str, reason: str) -> Settlement:
    outcome = Outcome.retrying(
        attempt=attempt,
        max_attempts=ctx.max_attempts,
        error=error,
        tb=tb,
        delay=backoff_seconds(attempt),
        reason=reason,
        # a kind that cannot resume starts from the beginning, with a new time budget
        restart_at=None if ctx.kind.resumable else ctx.run_seconds,
    )
    return Settlement("error", outcome)
