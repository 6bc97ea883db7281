"""The one way to change a job from outside a worker: submit, pause, resume, cancel,
retry, delete.

Views, the JSON API, admin actions and the CLI all call these. Each runs in one
transaction that changes the row, appends the JobEvent, creates the owner's
notification for terminal transitions and announces the change to the live relay;
dispatch runs after commit.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from jobs.engine.db import atomic_retry
from jobs.engine.journal import announce
from jobs.engine.kinds import get_kind
from jobs.models import Job, JobEvent, Notification, parse_priority

Status = Job.Status

# Allowed transitions, in one place. Keys are the new status, values the statuses it
# may be entered from. RUNNING -> RUNNING is a new slice of a job already started.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    Status.QUEUED: (
        Status.RUNNING,
        Status.PAUSED,
        Status.SUCCEEDED,
        Status.FAILED,
        Status.CANCELLED,
    ),
    Status.RUNNING: (Status.QUEUED, Status.RETRYING, Status.RUNNING),
    Status.PAUSED: (Status.QUEUED, Status.RETRYING, Status.RUNNING),
    Status.RETRYING: (Status.RUNNING,),
    Status.SUCCEEDED: (Status.RUNNING,),
    Status.FAILED: (Status.QUEUED, Status.RETRYING, Status.RUNNING),
    Status.CANCELLED: (Status.QUEUED, Status.RETRYING, Status.RUNNING, Status.PAUSED),
}


class JobActionError(Exception):
    """An action that does not apply to this job; the message is shown to the user."""


def record_event(
    job: Job | int,
    kind: str,
    message: str = "",
    *,
    status: str = "",
    data: dict[str, Any] | None = None,
) -> JobEvent:
    job_id = job if isinstance(job, int) else job.pk
    return JobEvent.objects.create(
        job_id=job_id, kind=kind, status=status, message=message[:5000], data=data
    )


def notify_owner(job: Job, level: str, message: str) -> None:
    if job.owner_id:
        Notification.objects.create(
            user_id=job.owner_id,
            job=job,
            level=level,
            message=message[:500],
            url=job.get_absolute_url(),
        )


def request_dispatch() -> None:
    """Fill free worker capacity once the current transaction has committed."""
    from jobs.engine.dispatch import dispatch

    transaction.on_commit(dispatch)


def _by(user) -> str:
    return f" by {user.get_username()}" if user is not None else ""


def _update(job: Job, sources: tuple[str, ...], *, unleased: bool = False, **fields: Any) -> bool:
    """Conditional update: applies only while the job is still in one of `sources`
    (and, with `unleased`, while no worker holds it)."""
    fields.setdefault("updated_at", timezone.now())
    rows = Job.objects.filter(pk=job.pk, status__in=sources)
    if unleased:
        rows = rows.filter(lease_owner="")
    changed = rows.update(**fields)
    if changed:
        for name, value in fields.items():
            setattr(job, name, value)
    return bool(changed)


def job_submit(
    *,
    kind: str,
    params: dict[str, Any] | None = None,
    owner=None,
    priority: str | int | None = None,
    entity_key: str = "",
    session_key: str = "",
    label: str = "",
    time_limit: float | None = None,
    total: int | None = None,
) -> Job:
    """Create a queued job, or return the active job already holding this key.

    The returned job has `deduplicated=True` when an existing active job with the
    same owner, kind and entity or session key was returned instead.
    """
    job_kind = get_kind(kind)
    params = params or {}
    if not entity_key and job_kind.entity_key_for:
        entity_key = job_kind.entity_key_for(params)
    if not label and job_kind.label_for:
        label = job_kind.label_for(params)
    values = {
        "kind": kind,
        "label": label[:200],
        "owner": owner,
        "priority": parse_priority(priority),
        "params": params,
        "entity_key": entity_key,
        "session_key": session_key,
        "time_limit": time_limit if time_limit is not None else job_kind.time_limit,
        "max_attempts": job_kind.max_attempts or _default_max_attempts(),
        "total": total,
    }

    def create() -> Job:
        existing = _active_with_key(owner, kind, entity_key, session_key)
        if existing is not None:
            return existing
        job = Job.objects.create(**values)
        record_event(job, JobEvent.Kind.STATE, "Queued", status=Status.QUEUED)
        announce(job.pk)
        request_dispatch()
        job.deduplicated = False
        return job

    try:
        return atomic_retry(create)
    except IntegrityError:
        existing = _active_with_key(owner, kind, entity_key, session_key)
        if existing is None:
            raise
        return existing


def _default_max_attempts() -> int:
    from django.conf import settings

    return settings.CONVEYOR_MAX_ATTEMPTS


def _active_with_key(owner, kind: str, entity_key: str, session_key: str) -> Job | None:
    if not entity_key and not session_key:
        return None
    jobs = Job.objects.active().filter(kind=kind, owner=owner)
    job = None
    if entity_key:
        job = jobs.filter(entity_key=entity_key).first()
    if job is None and session_key:
        job = jobs.filter(session_key=session_key).first()
    if job is not None:
        job.deduplicated = True
    return job


def _stop(job: Job, now_fields: dict[str, Any], request: str) -> str:
    """Stop a job now if no worker holds it, else ask its worker to at the next checkpoint.

    Returns "now", "requested" or "" (not active). Both updates are conditional on the
    lease, and a worker may claim or release the job between them, so the pair is
    tried again until one applies or the job is plainly not active.
    """
    target = now_fields["status"]
    for _ in range(5):
        if _update(job, TRANSITIONS[target], unleased=True, **now_fields):
            return "now"
        if _request(job, request):
            return "requested"
        job.refresh_from_db()
        if not job.is_active:
            return ""
    return ""


def job_pause(*, job: Job, by=None) -> Job:
    """Pause now if no worker holds the job, else ask its worker at the next checkpoint."""

    def change() -> Job:
        outcome = _stop(
            job,
            {"status": Status.PAUSED, "dispatched_at": None, "requested": ""},
            Job.Request.PAUSE,
        )
        if outcome == "now":
            record_event(job, JobEvent.Kind.STATE, f"Paused{_by(by)}", status=Status.PAUSED)
        elif outcome == "requested":
            record_event(job, JobEvent.Kind.LOG, f"Pause requested{_by(by)}")
        else:
            raise JobActionError(f"Job #{job.pk} is {job.status}; only active jobs can be paused.")
        announce(job.pk)
        return job

    return atomic_retry(change)


def job_resume(*, job: Job, by=None) -> Job:
    def change() -> Job:
        if _update(job, (Status.PAUSED,), status=Status.QUEUED):
            record_event(job, JobEvent.Kind.STATE, f"Resumed{_by(by)}", status=Status.QUEUED)
            request_dispatch()
        elif Job.objects.filter(pk=job.pk, requested=Job.Request.PAUSE).update(requested=""):
            job.requested = ""
            record_event(job, JobEvent.Kind.LOG, f"Pause request withdrawn{_by(by)}")
        else:
            raise JobActionError(f"Job #{job.pk} is {job.status}; only paused jobs can be resumed.")
        announce(job.pk)
        return job

    return atomic_retry(change)


def job_cancel(*, job: Job, by=None) -> Job:
    """Cancel now if no worker holds the job, else stop it at its next checkpoint."""

    def change() -> Job:
        now = timezone.now()
        fields = {
            "status": Status.CANCELLED,
            "requested": "",
            "dispatched_at": None,
            "run_after": None,
            "cancelled_at": now,
            "finished_at": now,
        }
        outcome = _stop(job, fields, Job.Request.CANCEL)
        if outcome == "now":
            record_event(job, JobEvent.Kind.STATE, f"Cancelled{_by(by)}", status=Status.CANCELLED)
            notify_owner(job, Notification.Level.INFO, f"{job.title} was cancelled")
        elif outcome == "requested":
            record_event(job, JobEvent.Kind.LOG, f"Cancel requested{_by(by)}")
        else:
            raise JobActionError(f"Job #{job.pk} is {job.status}; there is nothing to cancel.")
        announce(job.pk)
        return job

    return atomic_retry(change)


def _request(job: Job, request: str) -> bool:
    changed = (
        Job.objects.filter(pk=job.pk, status=Status.RUNNING)
        .exclude(lease_owner="")
        .update(requested=request, updated_at=timezone.now())
    )
    if changed:
        job.requested = request
    return bool(changed)


def job_retry(*, job: Job, by=None, failed_rows: bool = False) -> Job:
    """Queue a finished job again.

    Failed and cancelled jobs resume from their last checkpoint; succeeded jobs run
    again from the start; `failed_rows=True` asks the kind to redo only failed units.
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
        fields: dict[str, Any] = {
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
            "run_seconds": 0.0,
        }
        if failed_rows:
            if not job.failed:
                raise JobActionError(f"Job #{job.pk} has no failed rows to retry.")
            fields.update(kind.retry_failed_rows(job) or {})
        elif job.status == Status.SUCCEEDED:
            fields.update(cursor=None, processed=0, failed=0, message="")
        if not _update(job, TRANSITIONS[Status.QUEUED], **fields):
            raise JobActionError(f"Job #{job.pk} changed meanwhile; try again.")
        what = "failed rows only" if failed_rows else "whole job"
        record_event(job, JobEvent.Kind.STATE, f"Retry ({what}){_by(by)}", status=Status.QUEUED)
        announce(job.pk)
        request_dispatch()
        return job

    try:
        return atomic_retry(change)
    except IntegrityError:
        raise JobActionError(
            f"Another job for {job.entity_key or job.session_key} is already active."
        ) from None


def job_delete(*, job: Job, by=None) -> None:
    """Delete a finished job with its events, results and notifications."""

    def change() -> None:
        deleted, _ = Job.objects.filter(pk=job.pk, status__in=Job.TERMINAL).delete()
        if not deleted:
            raise JobActionError(f"Job #{job.pk} is {job.status}; cancel it before deleting.")
        announce(job.pk)

    atomic_retry(change)


def notifications_mark_read(*, user, ids: list[int] | None = None, job: Job | None = None) -> int:
    """Mark the user's unread notifications read (all, these ids, or this job's)."""
    unread = Notification.objects.filter(user=user, read_at__isnull=True)
    if ids is not None:
        unread = unread.filter(pk__in=ids)
    if job is not None:
        unread = unread.filter(job=job)
    marked = unread.update(read_at=timezone.now())
    if marked and job is not None:
        announce(job.pk)  # the relay refreshes the user's unread badge
    return marked
