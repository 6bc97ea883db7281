"""THE writer of job state: every change of a job's status, lease, dispatch mark or
progress is a named transition here (`claim`, `progress`, `end_slice` with its
`Outcome`, `yield_to`, `stop_by_force`, `rescue`, `pause`, `cancel`, `resume`, `retry`,
`delete`, ...).

Each transition owns the fields it writes (so a cancelled job looks the same whoever
cancelled it) and applies only while the job is in a status it may leave
(`TRANSITIONS`) and, for a worker's writes, only while that worker still holds the
lease: one conditional UPDATE (or INSERT/DELETE, compiled in `jobs.engine.sql`) that
writes the transition's event and notification and announces the change, in the
caller's transaction (callers wrap it in `atomic_retry`). Callers say which outcome,
never which fields; nothing else updates `Job` rows.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import F, QuerySet
from django.utils import timezone

from jobs.engine import sql
from jobs.engine.errors import JobActionError, LeaseLost
from jobs.engine.journal import Event, Journal
from jobs.models import Job, JobDependency, JobEvent, Notification, held_back_condition

Status = Job.Status
Request = Job.Request
STATE = JobEvent.Kind.STATE
LOG = JobEvent.Kind.LOG

# Allowed transitions: new status -> statuses it may be entered from; no transition
# enters a status from elsewhere (tests/jobs/engine/test_transitions.py walks every
# pair). RUNNING -> RUNNING is a new slice of a job already started.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    Status.QUEUED: (
        Status.RUNNING,  # requeue, yield_to, rescue (restart)
        Status.PAUSED,  # resume
        Status.SUCCEEDED,  # retry
        Status.FAILED,
        Status.CANCELLED,
    ),
    Status.RUNNING: (Status.QUEUED, Status.RETRYING, Status.RUNNING),  # claim
    Status.PAUSED: (Status.QUEUED, Status.RETRYING, Status.RUNNING),  # pause
    Status.RETRYING: (Status.RUNNING,),  # retry_later
    Status.SUCCEEDED: (Status.RUNNING,),  # succeeded
    Status.FAILED: (Status.RUNNING,),  # failed, rescue (gave up)
    Status.CANCELLED: (Status.QUEUED, Status.RETRYING, Status.RUNNING, Status.PAUSED),
}
CLAIMABLE = (Status.QUEUED, Status.RETRYING, Status.RUNNING)
# What `progress` may write: a batch's counters, cursor and usage, never a status.
PROGRESS_FIELDS = frozenset(
    {
        "cursor",
        "processed",
        "failed",
        "total",
        "message",
        "spent",
        "worked_units",
        "attempts",
        "run_seconds",
        "cpu_seconds",
        "peak_rss_mb",
    }
)


def _by(user: Any) -> str:
    return f" by {user.get_username()}" if user is not None else ""


def _lease_expiry(now: datetime) -> datetime:
    return now + timedelta(seconds=settings.CONVEYOR_LEASE_SECONDS)


# -- the fields each status owns ------------------------------------------------------


def _cancelled(now: datetime) -> dict[str, Any]:
    return {
        "status": Status.CANCELLED,
        "requested": "",
        "dispatched_at": None,
        "run_after": None,
        "cancelled_at": now,
        "finished_at": now,
    }


def _paused() -> dict[str, Any]:
    return {"status": Status.PAUSED, "requested": "", "dispatched_at": None}


def _failed(error: str, tb: str, now: datetime) -> dict[str, Any]:
    return {
        "status": Status.FAILED,
        "error": error,
        "traceback": tb,
        "finished_at": now,
        "message": error[:500],
        "requested": "",
    }


def _succeeded(result: Any, message: str, now: datetime) -> dict[str, Any]:
    """A success clears the error of an earlier attempt (it is on the timeline), and a
    pause its handler never reached."""
    return {
        "status": Status.SUCCEEDED,
        "result": result,
        "finished_at": now,
        "message": message,
        "error": "",
        "traceback": "",
        "requested": "",
    }


def _retrying(attempt: int, error: str, tb: str, delay: float, now: datetime) -> dict[str, Any]:
    """A failed attempt that will be tried again after `delay` seconds."""
    return {
        "status": Status.RETRYING,
        "attempts": attempt,
        "run_after": now + timedelta(seconds=delay),
        "error": error,
        "traceback": tb,
    }


def _queued_again() -> dict[str, Any]:
    """A finished job queued again: a fresh attempt count and running-time budget (the
    running time itself goes on, so rate and ETA stay true; a rerun from the start
    resets it with the counters)."""
    return {
        "status": Status.QUEUED,
        "error": "",
        "traceback": "",
        "result": None,
        "attempts": 0,
        "requested": "",
        "run_after": None,
        "dispatched_at": None,
        "finished_at": None,
        "cancelled_at": None,
    }


def _released(now: datetime) -> dict[str, Any]:
    return {"lease_owner": "", "lease_expires_at": None, "updated_at": now}


# -- how a worker's slice ends ------------------------------------------------------------


@dataclass
class Outcome:
    """How a worker's slice ends, decided when its handler returns or raises and
    written by `end_slice` (or by `stop_by_force`, from the worker's heartbeat): the
    fields of the status the job enters (none: it stays running for its next slice),
    the timeline line and the owner's notification ("<title> <text>").

    Made by the named constructors below, which own those fields."""

    fields: dict[str, Any] = field(default_factory=dict)
    message: str | None = None
    data: dict[str, Any] | None = None
    notification: tuple[str, str] | None = None

    @property
    def status(self) -> str:
        return self.fields.get("status", "")

    @property
    def ended(self) -> bool:
        return self.status in Job.TERMINAL

    @classmethod
    def next_slice(cls) -> Outcome:
        """The slice ended at a checkpoint; the job stays running for its next one."""
        return cls()

    @classmethod
    def succeeded(cls, result: Any, row_errors: int = 0) -> Outcome:
        errors = f" with {row_errors} row errors" if row_errors else ""
        message = f"Succeeded{errors}"
        level = Notification.Level.ERROR if row_errors else Notification.Level.SUCCESS
        fields = _succeeded(result, message, timezone.now())
        return cls(fields, message, notification=(level, f"finished{errors}"))

    @classmethod
    def failed(cls, error: str, tb: str = "") -> Outcome:
        note = (Notification.Level.ERROR, f"failed: {error}"[:400])
        return cls(_failed(error, tb, timezone.now()), error, notification=note)

    @classmethod
    def retrying(
        cls,
        *,
        attempt: int,
        max_attempts: int,
        error: str,
        tb: str,
        delay: float,
        reason: str,
        restart_at: float | None = None,
    ) -> Outcome:
        """Attempt `attempt` failed (`reason`); the job runs again after `delay` s.
        `restart_at`: the running time at which a kind that cannot resume starts
        again from the beginning, with a new time budget."""
        fields = _retrying(attempt, error, tb, delay, timezone.now())
        again = "retrying"
        if restart_at is not None:
            fields["run_seconds_at_retry"] = restart_at
            again = "restarting from the beginning"
        message = f"{reason}; {again} in {delay:.1f} s (attempt {attempt + 1} of {max_attempts})"
        return cls(fields, message, data={"delay": delay, "attempt": attempt})

    @classmethod
    def cancelled(cls, message: str | None = None) -> Outcome:
        """Cancelled at a checkpoint ("Cancelled"), or by `message` (a force stop), which
        then is also the job's message."""
        fields = _cancelled(timezone.now())
        if message is not None:
            fields["message"] = message[:500]
        note = (Notification.Level.INFO, "was cancelled")
        return cls(fields, message or "Cancelled", notification=note)

    @classmethod
    def paused(cls, reason: str | None = None) -> Outcome:
        """Paused at a checkpoint as asked ("Paused"), or by the job itself for `reason`,
        which is then its message and the owner's notification."""
        if reason is None:
            return cls(_paused(), "Paused")
        fields = {**_paused(), "message": reason[:500]}
        note = (Notification.Level.INFO, f"paused: {reason}"[:400])
        return cls(fields, f"Paused: {reason}", notification=note)

    @classmethod
    def postponed(cls, delay: float, reason: str) -> Outcome:
        """Waiting `delay` s for something outside the job; no attempt is counted."""
        run_after = timezone.now() + timedelta(seconds=delay)
        fields = {"status": Status.RETRYING, "run_after": run_after, "message": reason[:500]}
        return cls(fields, reason, data={"delay": delay})

    @classmethod
    def parked(cls, reason: str, hold: str) -> Outcome:
        """Back to the queue because an operator holds its kind (`hold`, kept in the
        event's data so that lifting the hold can say so on the timeline)."""
        return cls({"status": Status.QUEUED}, f"Parked: {reason}", data={"hold": hold})

    @classmethod
    def requeued(cls, reason: str) -> Outcome:
        """Back to the queue, for whichever worker is up next."""
        return cls({"status": Status.QUEUED}, f"Requeued: {reason}")

    def add_usage(self, usage: dict[str, float]) -> None:
        """The job's running time, CPU and memory so far, stored with the outcome."""
        self.fields.update(usage)

    def scrub(self, scrub: Callable[[str], str]) -> None:
        """Every text the outcome stores passed through `scrub` (an upstream error may
        echo an API key)."""
        for name in ("error", "traceback", "message"):
            if self.fields.get(name):
                self.fields[name] = scrub(self.fields[name])
        if self.message:
            self.message = scrub(self.message)
        if self.notification:
            level, text = self.notification
            self.notification = (level, scrub(text))


# -- low-level writes ----------------------------------------------------------------


def _rows(job_id: int, sources: Iterable[str] | None = None, *, owner: str | None = None):
    rows = Job.objects.filter(pk=job_id)
    if sources is not None:
        rows = rows.filter(status__in=list(sources))
    if owner is not None:
        rows = rows.filter(lease_owner=owner)
    return rows


def _update(rows: QuerySet[Job], fields: dict[str, Any]) -> int:
    fields.setdefault("updated_at", timezone.now())
    return rows.update(**fields)


@contextlib.contextmanager
def _journal(journal: Journal | None) -> Iterator[Journal]:
    """The caller's journal, or one of our own written when the transition is done."""
    if journal is not None:
        yield journal
        return
    own = Journal()
    yield own
    own.flush()


# -- submit ----------------------------------------------------------------------------


def _active_of(owner_id: int | None) -> QuerySet[Job]:
    return Job.objects.filter(owner_id=owner_id, status__in=Job.ACTIVE).order_by()


def create_in_one_statement(job: Job, capacity: tuple[str, list]) -> tuple[bool, int]:
    """PostgreSQL: one queued job's INSERT with its "Queued" event and announcement, in
    one statement (a submit's round trips each wait for a server process that shares
    the CPUs with the workers).

    `capacity`: SQL of one row (free workers beyond the jobs already waiting, the
    scheduling lock only tried; free workers) and its parameters, evaluated in the same
    statement: the job is marked dispatched if the first is positive. Returns (marked
    dispatched, free workers).
    """
    now = timezone.now()
    job.status, job.created_at, job.updated_at, job.dispatched_at = Status.QUEUED, now, now, now
    event = Event(0, STATE, "Queued", Status.QUEUED, at=now)
    dispatched, free = sql.insert_one_with_event(job, capacity, event)
    job.dispatched_at = now if dispatched else None
    return dispatched, free


def create(
    jobs: list[Job],
    journal: Journal | None = None,
    *,
    after: list[int] | None = None,
    after_any: list[int] | None = None,
    dispatched: bool = False,
) -> list[Job]:
    """Insert queued jobs with their "Queued" events; one statement per table.

    Each job's `turn` is the number of active jobs its owner already has: computed in
    the INSERT for one job, counted once per owner for many. `after` (one job only):
    the jobs it waits for; it becomes runnable once all of them succeeded. `after_any`:
    jobs it waits for whatever their outcome (runnable once they all ended).
    `dispatched`: the caller sends their slice tasks after the commit (a free worker
    was reserved for them), so `dispatch()` must not pick them again.
    """
    now = timezone.now()
    for job in jobs:
        job.status = Status.QUEUED
        job.created_at = job.updated_at = now
        job.dispatched_at = now if dispatched else None
    after_any = [up for up in after_any or () if up not in (after or ())]
    if after or after_any:
        jobs[0].upstream_pending = _mark_upstream(after or [], after_any)
    if len(jobs) == 1:
        sql.insert_one(jobs[0])
        if after or after_any:
            links = [JobDependency(job=jobs[0], depends_on_id=up) for up in after or ()]
            links += [
                JobDependency(job=jobs[0], depends_on_id=up, any_outcome=True) for up in after_any
            ]
            JobDependency.objects.bulk_create(links)
    else:
        taken: dict[int | None, int] = {}
        for job in jobs:
            if job.owner_id not in taken:
                taken[job.owner_id] = _active_of(job.owner_id).count()
            job.turn = taken[job.owner_id]
            taken[job.owner_id] += 1
        jobs = Job.objects.bulk_create(jobs)
    with _journal(journal) as notes:
        for job in jobs:
            notes.event(job.pk, STATE, "Queued", Status.QUEUED, at=now)
            notes.changed(job.pk)
    return jobs


def _mark_upstream(after: list[int], after_any: list[int] = ()) -> int:
    """Flag the jobs a new job waits for, and count those that have not succeeded yet
    (of `after_any`, those that have not ended).

    One UPDATE ... RETURNING: it takes the rows' locks, so an upstream job finishing at
    the same moment either sees the flag (and settles the new job) or has already
    committed the status this returns.
    """
    found = dict(
        sql.update_returning(
            Job.objects.filter(pk__in=[*after, *after_any]),
            {"has_dependents": True},
            ["id", "status"],
        )
    )
    for upstream in [*after, *after_any]:
        if upstream not in found:
            raise JobActionError(f"There is no job #{upstream} to wait for.")
    for upstream in after:
        status = found[upstream]
        if status in (Status.FAILED, Status.CANCELLED):
            raise JobActionError(f"Job #{upstream} is {status}: a job cannot wait for it.")
    pending = sum(1 for up in after if found[up] != Status.SUCCEEDED)
    return pending + sum(1 for up in after_any if found[up] not in Job.TERMINAL)


def _settle_dependents(upstream: int, status: str, notes: Journal) -> None:
    """An upstream job ended: its waiting jobs take one step towards runnable if it
    succeeded (or, for those that wait `after_any`, whatever the outcome), else they
    are cancelled (and theirs after them) with the reason."""
    now = timezone.now()
    links = JobDependency.objects.filter(depends_on_id=upstream)
    if status != Status.SUCCEEDED:
        step = Job.objects.filter(
            pk__in=links.filter(any_outcome=True).values("job_id"), status__in=Job.ACTIVE
        )
        ids = list(step.values_list("pk", flat=True))
        step.update(upstream_pending=F("upstream_pending") - 1, updated_at=now)
        for job_id in ids:
            notes.event(job_id, LOG, f"Job #{upstream}, which it waits for, {status}")
            notes.changed(job_id)
        links = links.filter(any_outcome=False)
    waiting = Job.objects.filter(pk__in=links.values("job_id"), status__in=Job.ACTIVE)
    if status == Status.SUCCEEDED:
        ids = list(waiting.values_list("pk", flat=True))
        waiting.update(upstream_pending=F("upstream_pending") - 1, updated_at=now)
        for job_id in ids:
            notes.event(job_id, LOG, f"Job #{upstream}, which it waits for, succeeded")
            notes.changed(job_id)
        return
    error = f"Cancelled: job #{upstream}, which it waits for, {status}."
    fields = {**_cancelled(now), "error": error, "message": error}
    rows = waiting.filter(status__in=TRANSITIONS[Status.CANCELLED], lease_owner="")
    returning = ["id", "owner_id", "label", "kind", "has_dependents", "batch_id"]
    found = sql.update_returning(rows, fields, returning)
    for job_id, owner_id, label, kind, has_dependents, batch_id in found:
        notes.event(job_id, STATE, error, Status.CANCELLED, at=now)
        message = f"{label or kind} {error}"
        notes.notify(owner_id, job_id, Notification.Level.ERROR, message, batch_id)
        notes.ended(batch_id)
        notes.job_ended(job_id, owner_id, Status.CANCELLED, batch_id)
        notes.changed(job_id)
        if has_dependents:
            _settle_dependents(job_id, Status.CANCELLED, notes)


# -- dispatch marks --------------------------------------------------------------------


def mark_dispatched(job_ids: list[int]) -> None:
    """The jobs were handed to the broker: not runnable again until a worker claims them
    or the mark goes stale."""
    if job_ids:
        Job.objects.filter(pk__in=job_ids).update(dispatched_at=timezone.now())


def clear_dispatch(job_ids: list[int]) -> None:
    """The broker task was not sent (or found nothing to do): runnable again."""
    Job.objects.filter(pk__in=job_ids, lease_owner="").exclude(dispatched_at=None).update(
        dispatched_at=None
    )


def release_stale_dispatches(cutoff: datetime) -> int:
    return Job.objects.filter(dispatched_at__lt=cutoff, lease_owner="").update(dispatched_at=None)


# -- a worker's writes -------------------------------------------------------------------


def claim(job_id: int, worker: str, journal: Journal | None = None) -> Job | None:
    """Take the lease of a claimable job: it becomes (or stays) running on `worker`.

    Returns the job as stored after the claim, or None if it is not claimable (taken,
    finished, paused, waiting for its retry time). A queued job is tried first (one
    statement for a new job); a running one whose last slice ended is the second try,
    so that the event can say which it was.
    """
    now = timezone.now()
    expires = _lease_expiry(now)
    found = sql.claim_rows(job_id, worker, (Status.QUEUED, Status.RETRYING), now, expires)
    if found:
        job = found[0]
        verb = "Started" if job.started_at == now else "Running again"
        with _journal(journal) as notes:
            notes.event(job.pk, STATE, f"{verb} on {worker}", Status.RUNNING, at=now)
            notes.changed(job.pk)
        return job
    found = sql.claim_rows(job_id, worker, (Status.RUNNING,), now, expires)
    if not found:
        return None
    with _journal(journal) as notes:
        notes.changed(job_id)
    return found[0]


def progress(
    job_id: int, worker: str, fields: dict[str, Any], *, event: dict[str, Any] | None = None
) -> str:
    """Store a batch's progress (`PROGRESS_FIELDS` only) while `worker` holds the lease,
    renewing it.

    `event` (throttled by the caller) adds a progress event with that data. Returns the
    pending request ("", "pause", "cancel", "force") read by the same statement; raises
    LeaseLost when the worker no longer holds the job.
    """
    if not fields.keys() <= PROGRESS_FIELDS:
        raise ValueError(f"progress writes only {', '.join(sorted(PROGRESS_FIELDS))}")
    now = timezone.now()
    fields = {**fields, "heartbeat_at": now, "lease_expires_at": _lease_expiry(now)}
    found = sql.update_job(job_id, fields, ["requested"], owner=worker)
    if not found:
        raise LeaseLost(f"job {job_id} is no longer leased to {worker}")
    with _journal(None) as notes:
        if event is not None:
            notes.event(job_id, JobEvent.Kind.PROGRESS, fields.get("message", ""), data=event)
        notes.changed(job_id)
    return found[0][0] or ""


def renew_lease(job_id: int, worker: str) -> str | None:
    """The heartbeat's lease renewal; returns the pending request, None if not held."""
    now = timezone.now()
    fields = {"heartbeat_at": now, "lease_expires_at": _lease_expiry(now), "updated_at": now}
    found = sql.update_job(job_id, fields, ["requested"], owner=worker)
    return (found[0][0] or "") if found else None


def replace_input(
    job_id: int, worker: str, fields: dict[str, Any], message: str, data: dict | None = None
) -> None:
    """The handler of a job `worker` holds read its input afresh (e.g. a scheduled job
    re-reading its Google Sheet): store the new `params` (sealed), `total` and
    `entity_key` with a timeline line. Raises LeaseLost if the worker lost the job."""
    allowed = {"params", "total", "entity_key"}
    if not set(fields) <= allowed:
        raise ValueError(f"replace_input writes only {', '.join(sorted(allowed))}")
    if not _update(_rows(job_id, (Status.RUNNING,), owner=worker), dict(fields)):
        raise LeaseLost(f"job {job_id} is no longer leased to {worker}")
    with _journal(None) as notes:
        notes.event(job_id, LOG, message, data=data)
        notes.changed(job_id)


def end_slice(
    job_id: int, worker: str, outcome: Outcome, *, journal: Journal | None = None
) -> bool:
    """End a slice: release the lease and write `outcome`, only if `worker` still holds
    the job and the job may enter the outcome's status from where it is. Its event (a
    state line, or a log line if the job stays running) and the owner's notification
    commit with it; an end settles the jobs that wait for this one. False if the lease
    was lost."""
    now = timezone.now()
    status = outcome.status
    returning = ["owner", "label", "kind", "has_dependents", "batch", "schedule"]
    sources = TRANSITIONS[status] if status else (Status.RUNNING,)  # or stays running
    fields = {**outcome.fields, **_released(now)}
    found = sql.update_job(job_id, fields, returning, owner=worker, statuses=sources)
    if not found:
        return False
    owner_id, label, kind, has_dependents, batch_id, schedule_id = found[0]
    with _journal(journal) as notes:
        if outcome.message is not None:
            line = STATE if status else LOG
            notes.event(job_id, line, outcome.message, status, data=outcome.data, at=now)
        if outcome.notification is not None:
            level, text = outcome.notification
            title = label or f"{kind} #{job_id}"
            notes.notify(owner_id, job_id, level, f"{title} {text}", batch_id)
        if outcome.ended:
            notes.ended(batch_id)
            notes.job_ended(job_id, owner_id, status, batch_id, schedule_id)
        notes.changed(job_id)
        if has_dependents and outcome.ended:
            _settle_dependents(job_id, status, notes)
    return True


def yield_to(job_id: int, worker: str, winner: int, run_seconds: float) -> bool:
    """Hand this job's worker to `winner`: back to queued, the winner marked dispatched."""
    rows = _rows(job_id, TRANSITIONS[Status.QUEUED], owner=worker)
    now = timezone.now()
    fields = {"status": Status.QUEUED, "run_seconds": run_seconds, **_released(now)}
    if not _update(rows, fields):
        return False
    mark_dispatched([winner])
    with _journal(None) as notes:
        notes.event(job_id, STATE, f"Yielded to higher-priority job #{winner}", Status.QUEUED)
        notes.changed(job_id)
    return True


def stop_by_force(job_id: int, worker: str, outcome: Outcome) -> bool:
    """A job ended by stopping its worker (a force stop, or a cancel or time limit that
    reached no checkpoint in time): written by that worker's heartbeat just before it
    ends its own process, so the job ends once, here, and is never recovered by lease
    expiry. `outcome` is cancelled, failed or retrying; False if the worker no longer
    holds the job (its slice ended first: nothing to stop)."""
    return end_slice(job_id, worker, outcome)


# -- rescue ------------------------------------------------------------------------------


def rescue(job_id: int, lost_owner: str, reason: str, *, resumable: bool = True) -> str:
    """Take a job back from a worker presumed dead, through the outcome it has now: a
    pending pause or cancel honoured, a failure once its attempts are used up, else
    runnable again to resume from its last checkpoint. Each loss counts as an attempt.

    A job whose kind cannot resume (`resumable=False`: a Django task) starts again from
    the beginning: it is queued again (so its next run is a new "Running again" on the
    timeline), with a fresh time budget, only while its attempts allow; with one
    attempt (no retries) it fails. Returns the job's new status ("" if not rescued).
    """
    job = Job.objects.filter(pk=job_id, lease_owner=lost_owner).first()
    if job is None:
        return ""
    outcome = _rescued(job, reason, resumable)
    outcome.fields["attempts"] = job.attempts + 1
    if not end_slice(job_id, lost_owner, outcome):
        return ""
    return outcome.status or Status.RUNNING


def _rescued(job: Job, reason: str, resumable: bool) -> Outcome:
    """What becomes of a job whose worker was lost (`rescue`)."""
    attempt = job.attempts + 1
    if job.requested:
        if job.requested in (Request.CANCEL, Request.FORCE):
            outcome = Outcome.cancelled()
            outcome.notification = None  # the owner asked for it; the timeline says when
        else:
            outcome = Outcome.paused()
        outcome.message = f"{Status(outcome.status).label.capitalize()} ({reason})"
        return outcome
    if attempt >= job.max_attempts:
        if resumable:
            error = (
                f"Gave up after {attempt} attempts: {reason} each time, without "
                f"progress in between. The job may crash the worker that runs it."
            )
        else:
            error = _restart_refused(reason, attempt, job.max_attempts)
        return Outcome.failed(error)
    if not resumable:
        restart = {
            "status": Status.QUEUED,
            "run_seconds_at_retry": job.run_seconds,
            "dispatched_at": None,
        }
        message = (
            f"Recovered: {reason}; restarting from the beginning (it cannot resume "
            f"from a checkpoint; attempt {attempt + 1} of {job.max_attempts})"
        )
        return Outcome(restart, message)
    message = (
        f"Recovered: {reason}; resuming from the last checkpoint "
        f"(attempt {attempt + 1} of {job.max_attempts})"
    )
    return Outcome({}, message)


def _restart_refused(reason: str, attempt: int, max_attempts: int) -> str:
    if max_attempts <= 1:
        return (
            f"Its run ended without an outcome: {reason}. It cannot resume from a "
            f"checkpoint and is not run again from the beginning without retries (a "
            f"Django task runs once unless its queue or the task opts into retries)."
        )
    return (
        f"Gave up after {attempt} runs: {reason} each time. It cannot resume from a "
        f"checkpoint; each run started from the beginning."
    )


# -- users' actions ------------------------------------------------------------------------


def _stop(job: Job, fields: dict[str, Any], request: str) -> str:
    """Stop a job now if no worker holds it, else ask its worker to at the next checkpoint.

    Returns "now", "requested" or "" (not active). Both updates are conditional on the
    lease, and a worker may claim or release the job between them, so the pair is
    tried again until one applies or the job is plainly not active.
    """
    sources = TRANSITIONS[fields["status"]]
    for _ in range(5):
        if _update(_rows(job.pk, sources, owner=""), dict(fields)):
            _apply(job, fields)
            return "now"
        running = Job.objects.filter(pk=job.pk, status=Status.RUNNING).exclude(lease_owner="")
        if _update(running, {"requested": request}):
            job.requested = request
            return "requested"
        job.refresh_from_db()
        if not job.is_active:
            return ""
    return ""


def pause(job: Job, who: Any = None) -> str:
    """ "now" (paused), "requested" (its worker pauses at the next checkpoint) or ""."""
    outcome = _stop(job, _paused(), Request.PAUSE)
    with _journal(None) as notes:
        if outcome == "now":
            notes.event(job.pk, STATE, f"Paused{_by(who)}", Status.PAUSED)
        elif outcome == "requested":
            notes.event(job.pk, LOG, f"Pause requested{_by(who)}")
        if outcome:
            notes.changed(job.pk)
    return outcome


def cancel(job: Job, who: Any = None, *, force: bool = False, reason: str = "") -> str:
    """ "now" (cancelled), "requested" (its worker stops at the next checkpoint, or is
    force-stopped after CONVEYOR_CANCEL_GRACE_SECONDS) or "".

    `force`: the request is a force stop: the worker's heartbeat writes the job
    cancelled (`stop_by_force`) and ends its own process at once, checkpoint or not.
    """
    request = Request.FORCE if force else Request.CANCEL
    why = f": {reason}" if reason else ""  # an operator's words, on the timeline
    outcome = _stop(job, _cancelled(timezone.now()), request)
    with _journal(None) as notes:
        if outcome == "now":
            notes.event(job.pk, STATE, f"Cancelled{_by(who)}{why}", Status.CANCELLED)
            message = f"{job.title} was cancelled"
            notes.notify(job.owner_id, job.pk, Notification.Level.INFO, message, job.batch_id)
            notes.ended(job.batch_id)
            notes.job_ended(job.pk, job.owner_id, Status.CANCELLED, job.batch_id)
            if Job.objects.filter(pk=job.pk, has_dependents=True).exists():
                _settle_dependents(job.pk, Status.CANCELLED, notes)
        elif outcome == "requested":
            asked = "Force stop" if force else "Cancel"
            notes.event(job.pk, LOG, f"{asked} requested{_by(who)}{why}")
        if outcome:
            notes.changed(job.pk)
    return outcome


def resume(
    job: Job, who: Any = None, *, params: dict[str, Any] | None = None, note: str = ""
) -> str:
    """A paused job queued again ("resumed"), or a pending pause withdrawn ("withdrawn").
    `params`: the paused job's new params (as stored), with `note` saying what changed."""
    fields: dict[str, Any] = {"status": Status.QUEUED}
    if params is not None:
        fields["params"] = params
    with _journal(None) as notes:
        if _update(_rows(job.pk, (Status.PAUSED,)), dict(fields)):
            _apply(job, fields)
            said = f"Resumed{_by(who)}" + (f": {note}" if note else "")
            notes.event(job.pk, STATE, said, Status.QUEUED)
            outcome = "resumed"
        elif params is not None:
            return ""  # new params apply to a paused job only
        elif _update(Job.objects.filter(pk=job.pk, requested=Request.PAUSE), {"requested": ""}):
            job.requested = ""
            notes.event(job.pk, LOG, f"Pause request withdrawn{_by(who)}")
            outcome = "withdrawn"
        else:
            return ""
        notes.changed(job.pk)
    return outcome


def park_held(holds: dict[str, str]) -> list[int]:
    """Jobs between two slices (running, held by no worker) whose kind or sub-kind an
    operator paused (`holds`: name -> why) back to the queue, where they wait for the
    resume: left running, they would look busy while nothing runs them."""
    rows = Job.objects.filter(status=Status.RUNNING, lease_owner="").filter(held_back_condition())
    fields = {"status": Status.QUEUED, "dispatched_at": None}
    parked = sql.update_returning(rows, fields, ["id", "kind", "subkind"])
    with _journal(None) as notes:
        for job_id, kind, subkind in parked:
            name = kind if kind in holds else subkind
            reason = holds.get(name, f"{name} paused")
            notes.event(job_id, STATE, f"Parked: {reason}", Status.QUEUED, data={"hold": name})
            notes.changed(job_id)
    return [job_id for job_id, _, _ in parked]


def run_now(job: Job, who: Any = None) -> bool:
    """A job waiting for its time (scheduled with `run_after`, or a retry's backoff)
    made due now; its status stays (queued, or retry waiting) until a worker claims it."""
    now = timezone.now()
    rows = _rows(job.pk, (Status.QUEUED, Status.RETRYING)).filter(run_after__gt=now)
    if not _update(rows, {"run_after": None}):
        return False
    job.run_after = None
    retry = job.status == Status.RETRYING
    with _journal(None) as notes:
        notes.event(job.pk, LOG, f"{'Retry' if retry else 'Run'} now{_by(who)}")
        notes.changed(job.pk)
    return True


def retry(job: Job, extra: dict[str, Any], what: str, who: Any = None) -> bool:
    """Queue a finished job again, with the fields its kind prepared in `extra` (cursor,
    counters, message: what it will redo)."""
    fields = {**_queued_again(), **extra}
    if fields.get("processed") == 0:  # run again from the start: a new clock too
        fields["run_seconds"] = 0.0
        fields["worked_units"] = 0
    fields["run_seconds_at_retry"] = fields.get("run_seconds", job.run_seconds)
    if not _update(_rows(job.pk, Job.TERMINAL), dict(fields)):
        return False
    _apply(job, fields)
    with _journal(None) as notes:
        notes.event(job.pk, STATE, f"Retry ({what}){_by(who)}", Status.QUEUED)
        notes.ended(job.batch_id, -1)
        notes.changed(job.pk)
    return True


def delete(job: Job) -> bool:
    """Delete a finished job with its events, results and notifications."""
    deleted, _ = Job.objects.filter(pk=job.pk, status__in=Job.TERMINAL).delete()
    if deleted:
        with _journal(None) as notes:
            notes.changed(job.pk)
    return bool(deleted)


def detach_schedule(schedule_id: int) -> int:
    """A schedule is being deleted: its runs stay, without the link (their
    `scheduled_for` still says which due time they were)."""
    return Job.objects.filter(schedule_id=schedule_id).update(schedule=None)


def _apply(job: Job, fields: dict[str, Any]) -> None:
    for name, value in fields.items():
        setattr(job, name, value)
