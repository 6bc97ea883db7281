"""The one way to change a job from outside a worker: submit, pause, resume, cancel,
retry, delete; batches (jobs submitted together) are submitted here too.

Pages, the JSON API, admin actions and the CLI all call these (the per-job controls
through the registry `jobs.actions.jobs.JOBS`). Each runs in one transaction that asks
`transitions` for the change (which writes the row, the event, the notification and the
announcement); dispatch runs after commit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from jobs.engine import controls, dispatch, secrets, transitions
from jobs.engine.db import atomic_retry
from jobs.engine.errors import JobActionError, QuotaExceeded
from jobs.engine.journal import announce, record_event
from jobs.engine.kinds import JobKind, get_kind, job_ended, submittable_kinds
from jobs.models import (
    Batch,
    BatchCallback,
    Job,
    JobDependency,
    JobEvent,
    Notification,
    Priority,
    held_back_condition,
    parse_priority,
)

Status = Job.Status


def request_dispatch() -> None:
    """Fill free worker capacity once the current transaction has committed."""
    transaction.on_commit(dispatch.dispatch)


def dispatch_if_free() -> None:
    """After a submit: look for a free worker inside the submit's transaction (one query;
    with all busy, as under load, they take the new job themselves) and dispatch after
    the commit only if there is one. Keeps a submit to one transaction."""
    if dispatch.free_capacity() > 0:
        transaction.on_commit(dispatch.dispatch)


# -- submitting ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Submission:
    """One job to submit; see `job_submit` for the fields."""

    kind: str
    params: dict[str, Any] | None = None
    owner: Any = None
    priority: str | int | None = None
    entity_key: str = ""
    session_key: str = ""
    label: str = ""
    schedule: Any = None
    scheduled_for: datetime | None = None
    time_limit: float | None = None
    total: int | None = None
    after: tuple[int, ...] = ()
    run_after: datetime | None = None
    params_sealed: bool = False
    max_attempts: int | None = None

    def build(self) -> Job:
        job_kind = get_kind(self.kind)
        params = dict(self.params or {}) if self.params_sealed else secrets.seal(self.params or {})
        entity_key = self.entity_key or _derived(job_kind.entity_key_for, params, "")
        label = self.label or _derived(job_kind.label_for, params, "")
        total = self.total if self.total is not None else _derived(job_kind.total_for, params)
        subkind = _derived(job_kind.subkind_for, params, "") or ""
        return Job(
            kind=self.kind,
            subkind=str(subkind)[:100],
            label=label[:200],
            owner=self.owner,
            priority=parse_priority(self.priority),
            params=params,
            entity_key=entity_key,
            session_key=self.session_key,
            schedule=self.schedule,
            scheduled_for=self.scheduled_for,
            time_limit=self.time_limit if self.time_limit is not None else job_kind.time_limit,
            max_attempts=(
                self.max_attempts or job_kind.max_attempts or settings.CONVEYOR_MAX_ATTEMPTS
            ),
            total=total,
            run_after=self.run_after,
        )


def checked_submission(
    *, kind: str, params: dict[str, Any] | None, owner: Any, label: str = ""
) -> Submission:
    """A job that a user names by kind (a batch's `on_complete` from the CLI): the kind
    must be one users may submit (CONVEYOR_SUBMITTABLE_KINDS) and its params pass the
    kind's own check; else JobActionError saying which."""
    if kind not in submittable_kinds():
        allowed = ", ".join(submittable_kinds()) or "none"
        raise JobActionError(f"kind {kind!r} cannot be submitted; submittable: {allowed}")
    try:
        params = get_kind(kind).clean_params(params or {}, owner)
    except ValidationError as exc:
        raise JobActionError(f"params: {'; '.join(exc.messages)}") from None
    except (ValueError, TypeError) as exc:
        raise JobActionError(f"params: {exc}") from None
    return Submission(kind=kind, params=params, owner=owner, label=label)


def _derived(hook: Callable[[dict[str, Any]], Any] | None, params: dict, default: Any = None):
    return hook(params) if hook else default


def job_submit(
    *,
    kind: str,
    params: dict[str, Any] | None = None,
    owner=None,
    priority: str | int | None = None,
    entity_key: str = "",
    session_key: str = "",
    label: str = "",
    schedule=None,
    scheduled_for: datetime | None = None,
    time_limit: float | None = None,
    total: int | None = None,
    after: list[int] | tuple[int, ...] = (),
    run_after: datetime | None = None,
    params_sealed: bool = False,
    max_attempts: int | None = None,
    after_any: list[int] | tuple[int, ...] = (),
) -> tuple[Job, bool]:
    """Create a queued job; returns `(job, created)`.

    `created` is False when an active job of the same owner and kind already holds
    the entity or session key: that job is returned instead of starting a duplicate.
    `schedule` and `scheduled_for`: the schedule run (`jobs.schedules.services`) it is.
    `after`: ids of jobs this one waits for (it runs once they all succeeded and is
    cancelled if one fails or is cancelled); the caller checks the user may see them.
    Raises JobActionError for an unknown, failed or cancelled one. `after_any`: jobs
    it waits for whatever their outcome (it runs once they all ended).
    `run_after`: not claimed before then (a worker's heartbeat dispatches it when due).
    `params_sealed`: `params` come from the engine's own store (a schedule's), their
    secrets sealed already; anything a user gives is sealed here, unconditionally.
    `max_attempts`: instead of the kind's (a Django task that opts into retries).
    """
    job = Submission(
        kind=kind,
        params=params,
        owner=owner,
        priority=priority,
        entity_key=entity_key,
        session_key=session_key,
        label=label,
        schedule=schedule,
        scheduled_for=scheduled_for,
        time_limit=time_limit,
        total=total,
        run_after=run_after,
        params_sealed=params_sealed,
        max_attempts=max_attempts,
    ).build()
    upstream = sorted(set(after))
    any_upstream = sorted(set(after_any) - set(upstream))

    def create() -> tuple[Job, bool]:
        existing = _active_with_key(job)
        if existing is not None:
            return existing, False
        lowered = _lower_beyond_high_ceiling([job])
        may_skip = _may_skip_the_queue(job, upstream or any_upstream)
        if connection.vendor == "postgresql" and not (upstream or any_upstream):
            capacity = dispatch.capacity_for_submit(may_skip)
            straight, free = transitions.create_in_one_statement(job, capacity)
        else:
            straight = may_skip and dispatch.free_for_new_job()
            transitions.create([job], after=upstream, after_any=any_upstream, dispatched=straight)
            free = None
        _check_quota(job)  # the INSERT counted the owner's active jobs (Job.turn)
        _say_lowered(lowered)
        if straight:
            dispatch.send_with_commit([job.pk])
        elif free is None:
            dispatch_if_free()
        elif free > 0:
            request_dispatch()
        return job, True

    try:
        return atomic_retry(create)
    except IntegrityError:
        existing = _active_with_key(job)
        if existing is None:
            raise
        return existing, False


def job_submit_many(submissions: list[Submission]) -> list[Job]:
    """Create many queued jobs in one transaction (one INSERT per table): for callers
    that enqueue in bulk. Keys are not deduplicated here: give none, or unique ones."""
    jobs = [submission.build() for submission in submissions]
    if any(job.entity_key or job.session_key for job in jobs):
        raise ValueError("job_submit_many does not take entity or session keys")

    return atomic_retry(lambda: _create_queued(jobs)) if jobs else []


def batch_submit(
    *,
    owner,
    submissions: list[Submission],
    label: str = "",
    on_complete: Submission | None = None,
) -> tuple[Batch, list[Job]]:
    """Create a batch and its queued jobs in one transaction: all of them or none.

    `on_complete`: a job submitted once the batch has ended, whatever the outcome, with
    the outcome in its params (`BatchCallback`, submitted by the upkeep: `jobs.notices`).

    The batch is notified once, when its last job ends (its jobs are not notified on
    their own). Jobs that would duplicate an active job's entity or session key are
    refused (JobActionError), not deduplicated: a batch holds new work only.
    """
    if not submissions:
        raise JobActionError("A batch needs at least one job.")

    def create() -> tuple[Batch, list[Job]]:
        jobs = [submission.build() for submission in submissions]
        batch = Batch.objects.create(
            owner=owner, label=label[:200], job_count=len(jobs), unfinished=len(jobs)
        )
        for job in jobs:
            job.owner, job.batch = owner, batch
        for job in jobs:
            if _active_with_key(job) is not None:
                key = job.entity_key or job.session_key
                raise JobActionError(f"An active {job.kind} job already holds the key {key}.")
        if on_complete is not None:
            spec = on_complete.build()
            BatchCallback.objects.create(
                batch=batch,
                spec={
                    "kind": spec.kind,
                    "params": spec.params,
                    "label": spec.label,
                    "priority": spec.priority,
                },
            )
        return batch, _create_queued(jobs)

    try:
        return atomic_retry(create)
    except IntegrityError:
        raise JobActionError(
            "Another submit took one of these keys meanwhile; try again."
        ) from None


def _may_skip_the_queue(job: Job, upstream: list[int]) -> bool:
    """A job that is runnable at once and whose kind has no concurrency cap may be
    marked dispatched by its own INSERT when a worker is free: that saves the second
    scheduling transaction `dispatch()` would run after the commit (bench engine)."""
    if upstream or job.run_after is not None:
        return False
    limited = controls.caps().keys() | controls.paused().keys()  # operators' holds, cached
    return job.kind not in limited and job.subkind not in limited


def _create_queued(jobs: list[Job]) -> list[Job]:
    """Insert many built jobs as the bulk submits do (inside their transaction): the
    priority ceiling applied, each owner's quota checked, free workers filled."""
    lowered = _lower_beyond_high_ceiling(jobs)
    created = transitions.create(jobs)
    for job in created:
        _check_quota(job)
    _say_lowered(lowered)
    dispatch_if_free()
    return created


def _check_quota(job: Job) -> None:
    """Refuse (rolling the submit back) a job beyond its owner's active-jobs limit.

    Staff and ownerless (system) jobs have no limit; 0 turns the limit off.
    """
    limit = settings.CONVEYOR_MAX_ACTIVE_JOBS
    if not limit or job.owner is None or job.owner.is_staff or job.turn < limit:
        return
    raise QuotaExceeded(
        f"You have {job.turn} active jobs, the most allowed (CONVEYOR_MAX_ACTIVE_JOBS="
        f"{limit}). Wait for some to finish, or cancel some, and submit again."
    )


def _lower_beyond_high_ceiling(jobs: list[Job]) -> list[Job]:
    """Fairness across priorities: a user's jobs above normal priority beyond
    CONVEYOR_MAX_HIGH_PRIORITY_JOBS active ones run at normal priority (turns with
    everyone else's), so nobody who keeps the default waits behind another user's pile
    of "high" jobs. Staff and ownerless (system) jobs keep theirs; 0 turns it off.
    Returns the jobs lowered (one count query per owner asking for more than normal)."""
    ceiling = settings.CONVEYOR_MAX_HIGH_PRIORITY_JOBS
    eager = [
        job
        for job in jobs
        if job.priority > Priority.NORMAL and job.owner is not None and not job.owner.is_staff
    ]
    if not ceiling or not eager:
        return []
    active: dict[int, int] = {}
    lowered = []
    for job in eager:
        if job.owner_id not in active:
            mine = Job.objects.active().filter(owner_id=job.owner_id, priority__gt=Priority.NORMAL)
            active[job.owner_id] = mine.count()
        if active[job.owner_id] >= ceiling:
            job.priority = Priority.NORMAL
            lowered.append(job)
        else:
            active[job.owner_id] += 1
    return lowered


def _say_lowered(jobs: list[Job]) -> None:
    ceiling = settings.CONVEYOR_MAX_HIGH_PRIORITY_JOBS
    for job in jobs:
        record_event(
            job.pk,
            JobEvent.Kind.LOG,
            f"Runs at normal priority: {ceiling} jobs of yours above normal priority are "
            f"already active (CONVEYOR_MAX_HIGH_PRIORITY_JOBS={ceiling}).",
        )


def _active_with_key(job: Job) -> Job | None:
    if not job.entity_key and not job.session_key:
        return None
    jobs = Job.objects.active().filter(kind=job.kind, owner=job.owner)
    found = None
    if job.entity_key:
        found = jobs.filter(entity_key=job.entity_key).first()
    if found is None and job.session_key:
        found = jobs.filter(session_key=job.session_key).first()
    return found


# -- controls -------------------------------------------------------------------------------


def job_pause(*, job: Job, by=None) -> Job:
    """Pause now if no worker holds the job, else ask its worker at the next checkpoint."""
    if not atomic_retry(lambda: transitions.pause(job, by)):
        raise JobActionError(f"Job #{job.pk} is {job.status}; only active jobs can be paused.")
    return job


def job_resume(*, job: Job, by=None, params: dict[str, Any] | None = None, note: str = "") -> Job:
    """Queue a paused job again (or withdraw a pause its worker has not acted on yet).

    `params`: resume a paused job with these params instead (as stored: what its kind's
    `resume_with` made of them, a sheet job's budget raised), `note` saying what changed."""

    def change() -> str:
        outcome = transitions.resume(job, by, params=params, note=note)
        if outcome == "resumed":
            request_dispatch()
        return outcome

    if not atomic_retry(change):
        raise JobActionError(f"Job #{job.pk} is {job.status}; only paused jobs can be resumed.")
    return job


def job_cancel(*, job: Job, by=None, force: bool = False, reason: str = "") -> Job:
    """Cancel now if no worker holds the job, else stop it at its next checkpoint; one
    that reaches none within CONVEYOR_CANCEL_GRACE_SECONDS is force-stopped.

    `force`: a force stop, for a handler that never reaches a checkpoint: the worker
    running the job is terminated at once (django-q2 starts a new one; the other
    workers and their jobs go on) and the job ends cancelled. Its work since the last
    checkpoint is lost. `reason`: why (an operator's words), on the timeline."""
    reason = " ".join(str(reason or "").split())[:300]
    outcome = atomic_retry(lambda: transitions.cancel(job, by, force=force, reason=reason))
    if not outcome:
        raise JobActionError(f"Job #{job.pk} is {job.status}; there is nothing to cancel.")
    if outcome == "now":  # no run ends it: the kind's on_end is called here (a batch to cancel)
        job_ended(job.kind, job.pk)
    return job


def park_held_jobs() -> list[int]:
    """Jobs between two slices of a kind an operator paused, back to the queue (after a
    pause, and from every worker's upkeep: one that ended its slice as the pause came
    has no checkpoint left to see it). No query while nothing is paused, and a read
    before any write (on SQLite a write transaction takes the database's one lock)."""
    held = controls.paused()
    if not held:
        return []
    idle = Job.objects.filter(status=Job.Status.RUNNING, lease_owner="")
    if not idle.filter(held_back_condition()).exists():
        return []
    holds = {name: controls.describe(row) for name, row in held.items()}
    return atomic_retry(lambda: transitions.park_held(holds))


def job_run_now(*, job: Job, by=None) -> Job:
    """Run a job now that waits for its time (`run_after`) or for a retry's backoff."""

    def change() -> bool:
        done = transitions.run_now(job, by)
        if done:
            request_dispatch()
        return done

    if not atomic_retry(change):
        raise JobActionError(
            f"Job #{job.pk} is {job.status}; only a job waiting for its time can run now."
        )
    return job


def job_retry(*, job: Job, by=None, failed_rows: bool = False) -> Job:
    """Queue a finished job again.

    Failed and cancelled jobs resume from their last checkpoint; succeeded jobs run
    again from the start; `failed_rows=True` asks the kind to redo its failed units and
    do any units it never reached (a job cancelled or failed midway), so that it cannot
    end Succeeded over units it skipped; the job's message says what it will do.
    Each retry gets a fresh attempt count and running-time budget.
    """
    kind = get_kind(job.kind)
    if failed_rows and not kind.supports_failed_rows_retry:
        raise JobActionError(f"Jobs of kind {job.kind} cannot retry only failed rows.")

    def change() -> Job:
        job.refresh_from_db()
        if job.status not in Job.TERMINAL:
            raise JobActionError(
                f"Job #{job.pk} is {job.status}; only finished jobs can be retried."
            )
        extra = _retry_extra(job, kind, failed_rows)
        what = "whole job"
        if failed_rows:
            plan = extra.get("message") or "failed rows"
            what = plan[:1].lower() + plan[1:]
        if lowered := _lower_beyond_high_ceiling([job]):
            extra["priority"] = job.priority
        if not transitions.retry(job, extra, what, by):
            raise JobActionError(f"Job #{job.pk} changed meanwhile; try again.")
        _say_lowered(lowered)
        request_dispatch()
        return job

    try:
        return atomic_retry(change)
    except IntegrityError:
        raise JobActionError(
            f"Another job for {job.entity_key or job.session_key} is already active."
        ) from None


def _retry_extra(job: Job, kind: JobKind, failed_rows: bool) -> dict[str, Any]:
    """What a retry resets besides the common fields: where the handler starts again,
    and how many of the jobs it waits for have still to succeed."""
    return {**_resume_point(job, kind, failed_rows), "upstream_pending": _pending_upstream(job)}


def _pending_upstream(job: Job) -> int:
    upstream = JobDependency.objects.filter(job=job).exclude(depends_on__status=Status.SUCCEEDED)
    pending = list(upstream.values_list("depends_on_id", "depends_on__status"))
    for upstream_id, status in pending:
        if status in (Status.FAILED, Status.CANCELLED):
            raise JobActionError(
                f"Job #{job.pk} waits for job #{upstream_id}, which {status}: retry that first."
            )
    return len(pending)


def _resume_point(job: Job, kind: JobKind, failed_rows: bool) -> dict[str, Any]:
    if failed_rows:
        if not job.failed:
            raise JobActionError(no_failed_rows(job))
        return kind.retry_failed_rows(job) or {}
    if job.status == Status.SUCCEEDED:
        return {"cursor": None, "processed": 0, "failed": 0, "message": ""}
    return {}


def failed_rows_retry_label(job: Job) -> str:
    """The "retry failed rows" control of a finished job, saying that it also does the
    units the job never reached (`job_retry(failed_rows=True)`)."""
    left = (job.total or 0) - job.processed
    if left <= 0:
        return "Retry failed rows"
    return f"Retry failed rows and the {left} never processed"


def no_failed_rows(job: Job) -> str:
    """Why "retry failed rows" does nothing for a finished job without failed rows, and
    what would: a job that failed as a whole is retried whole, one that stopped midway
    resumes with Retry."""
    if job.status == Status.FAILED:
        return (
            f"Job #{job.pk} failed as a whole, not row by row: it has no failed rows to "
            "retry. Retry resumes it from its last checkpoint."
        )
    left = (job.total or 0) - job.processed
    if job.status == Status.CANCELLED:
        unprocessed = f" ({left} not processed)" if left > 0 else ""
        return (
            f"Job #{job.pk} was cancelled with no failed rows{unprocessed}: Retry resumes "
            "it from its last checkpoint."
        )
    return f"Job #{job.pk} has no failed rows to retry."


def job_delete(*, job: Job, by=None) -> None:
    """Delete a finished job with its events, results and notifications."""
    if not atomic_retry(lambda: transitions.delete(job)):
        raise JobActionError(f"Job #{job.pk} is {job.status}; cancel it before deleting.")


def notifications_mark_read(
    *, user, ids: list[int] | None = None, job: Job | None = None, batch: Batch | None = None
) -> int:
    """Mark the user's unread notifications read (all, these ids, this job's or this
    batch's)."""
    unread = Notification.objects.filter(user=user, read_at__isnull=True)
    if ids is not None:
        unread = unread.filter(pk__in=ids)
    if job is not None:
        unread = unread.filter(job=job)
    if batch is not None:
        unread = unread.filter(batch=batch)
    marked = unread.update(read_at=timezone.now())
    if marked and job is not None:
        announce(job.pk)  # the relay refreshes the user's unread badge
    elif marked and batch is not None and (first := batch.jobs.values_list("pk").first()):
        announce(first[0])  # the relay refreshes the user's unread badge (and the batch)
    return marked


def notifications_set_read(ids: list[int], *, read: bool = True) -> int:
    """Mark these notifications, whoever's, read (or unread again): the admin's operators
    act on any user's. Returns how many changed."""
    chosen = Notification.objects.filter(pk__in=ids, read_at__isnull=read)
    return chosen.update(read_at=timezone.now() if read else None)


def notifications_mark_shown(ids: list[int]) -> int:
    """These notifications reached an open page of their user (as toasts)."""
    unshown = Notification.objects.filter(pk__in=ids, shown_at__isnull=True)
    return unshown.update(shown_at=timezone.now()) if ids else 0


def notifications_take_unshown(*, user) -> list[Notification]:
    """The user's unread notifications that no page showed (their jobs ended while no
    page of the user was open), newest first, marked shown: a page shows them once.

    Marked first, then read back by that mark, so two pages opened at once do not both
    show them. The mark is a write: only made when the read finds something.
    """
    unshown = Notification.objects.filter(user=user, read_at__isnull=True, shown_at__isnull=True)
    if not unshown.exists():
        return []
    now = timezone.now()
    if not unshown.update(shown_at=now):
        return []
    taken = Notification.objects.filter(user=user, shown_at=now)
    return list(taken.select_related("job", "batch"))
