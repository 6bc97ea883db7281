"""Schedules: a job submitted on a cron expression or every N seconds, one job per due
time however many workers and clusters look for due schedules.

Every worker's heartbeat (and `maintenance.maintain`) calls `run_due_schedules()`: one
indexed query when nothing is due. A due schedule is claimed with a compare-and-set
UPDATE of its `next_run_at` (from the due time seen to the next one after now, so a
schedule missed during downtime runs once); only the worker whose UPDATE matched goes
on, in the same transaction, to apply the overlap policy and submit the run through
`services.job_submit` (the Job carries `schedule` and `scheduled_for`; a unique
constraint on the pair is the backstop). Users change schedules through the
`schedule_*` functions below, the one way for pages, the API, the admin and the CLI.

A skipped due time (overlap "skip") only counts on the schedule (`skipped_count`,
`last_skipped_at`): no event, so many schedules waiting on one long job do not grow its
timeline. A user has at most CONVEYOR_MAX_SCHEDULES_PER_USER schedules. A deactivated
user's schedules pause, with the reason in `paused_reason` (at once when the user is
saved inactive, else at their next due time); reactivating the account does not resume
them: the owner or staff resume each one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import F
from django.db.models.signals import post_save
from django.dispatch import receiver
from django.utils import timezone

from jobs.engine import secrets, transitions
from jobs.engine.db import atomic_retry
from jobs.engine.errors import AlreadyActive, JobActionError, ScheduleError, UnknownKind
from jobs.engine.kinds import get_kind
from jobs.engine.services import job_submit
from jobs.models import Job, Schedule, parse_priority
from jobs.schedules.recurrence import Recurrence, RecurrenceError, recurrence

log = logging.getLogger(__name__)

MAX_DUE_PER_BEAT = 20  # schedules started by one call; the next beat takes the rest
MAX_NAME = 200
EDITABLE = {"name", "params", "priority", "cron", "every", "timezone", "overlap", "enabled"}
OWNER_INACTIVE = "its owner's account is deactivated"


@dataclass(frozen=True)
class RunOutcome:
    """What became of one due time: "started" (job_id), "skipped" or "failed" (reason)."""

    schedule_id: int
    due: datetime
    outcome: str
    job_id: int | None = None
    reason: str = ""


# -- running due schedules ------------------------------------------------------------


def due_runs(now: datetime | None = None) -> list[tuple[int, datetime]]:
    """`(schedule id, due time)` of enabled schedules due at `now`, oldest first."""
    due = Schedule.objects.due(now or timezone.now()).order_by("next_run_at")
    return list(due.values_list("pk", "next_run_at")[:MAX_DUE_PER_BEAT])


def run_due_schedules(now: datetime | None = None) -> list[RunOutcome]:
    """Start the run of every due schedule this worker wins; each in its own transaction."""
    now = now or timezone.now()
    outcomes = []
    for schedule_id, due in due_runs(now):
        outcome = atomic_retry(lambda s=schedule_id, d=due: _claim_and_run(s, d, now))
        if outcome is not None:
            outcomes.append(outcome)
    return outcomes


def _claim_and_run(schedule_id: int, due: datetime, now: datetime) -> RunOutcome | None:
    """Move `next_run_at` from `due` to the next due time after `now`, and start the run
    if this UPDATE was the one that did (None: another worker claimed it first)."""
    current = Schedule.objects.filter(pk=schedule_id, enabled=True, next_run_at=due)
    schedule = current.select_related("owner").first()
    if schedule is None:
        return None
    if schedule.owner is not None and not schedule.owner.is_active:
        # Deactivated without a save (a bulk UPDATE): no run in their name from now on.
        current.update(
            enabled=False, next_run_at=None, paused_reason=OWNER_INACTIVE, updated_at=now
        )
        return RunOutcome(schedule_id, due, "failed", reason=f"paused: {OWNER_INACTIVE}")
    try:
        following = recurrence_of(schedule).next_after(now, anchor=due)
    except RecurrenceError as exc:  # e.g. a time zone gone from a newer tzdata
        current.update(
            enabled=False,
            next_run_at=None,
            last_error=str(exc),
            paused_reason=str(exc)[:200],
            updated_at=now,
        )
        return RunOutcome(schedule_id, due, "failed", reason=f"paused: {exc}")
    if not current.update(next_run_at=following, updated_at=now):
        return None
    return _start_run(schedule, due, now)


def _start_run(schedule: Schedule, due: datetime, now: datetime) -> RunOutcome:
    """The overlap policy, then the job; a refused submit is recorded, not raised, so
    that one broken schedule does not hold up the others."""
    if schedule.overlap == Schedule.Overlap.SKIP and (active := active_run(schedule)):
        return _skip(schedule, due, now, active, f"its run job #{active} is still active")
    try:
        with transaction.atomic():  # a savepoint: a refused submit keeps the claim
            job, created = _submit(schedule, due)
    except IntegrityError:  # the unique (schedule, scheduled_for) backstop
        log.warning("schedule %s: the run due %s was already started", schedule.pk, due)
        return RunOutcome(schedule.pk, due, "skipped", reason="already started")
    except Exception as exc:  # noqa: BLE001 - recorded on the schedule, shown to its owner
        log.warning("schedule %s: the run due %s was not started: %s", schedule.pk, due, exc)
        reason = str(exc) or exc.__class__.__name__
        _record(schedule, last_error=f"{_when(due)}: {reason}"[:2000], updated_at=now)
        return RunOutcome(schedule.pk, due, "failed", reason=reason)
    if not created:
        return _skip(schedule, due, now, job.pk, f"job #{job.pk} is active on {job.entity_key}")
    _record_run(schedule, job, now)
    return RunOutcome(schedule.pk, due, "started", job_id=job.pk)


def _submit(schedule: Schedule, due: datetime) -> tuple[Job, bool]:
    return job_submit(
        kind=schedule.kind,
        params=schedule.params,
        owner=schedule.owner,
        priority=schedule.priority,
        schedule=schedule,
        scheduled_for=due,
        params_sealed=True,
    )


def _skip(schedule: Schedule, due: datetime, now: datetime, job_id: int, why: str) -> RunOutcome:
    """Count the skipped due time on the schedule (and nowhere else: an event per skip
    on the active job grew its timeline by one row per schedule and due time)."""
    _record(schedule, last_skipped_at=now, skipped_count=F("skipped_count") + 1, updated_at=now)
    return RunOutcome(schedule.pk, due, "skipped", job_id=job_id, reason=why)


def _record_run(schedule: Schedule, job: Job, now: datetime) -> None:
    _record(
        schedule,
        last_run_at=now,
        last_job=job,
        run_count=F("run_count") + 1,
        last_error="",
        updated_at=now,
    )


def _record(schedule: Schedule, **fields: Any) -> None:
    Schedule.objects.filter(pk=schedule.pk).update(**fields)


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def active_run(schedule: Schedule) -> int | None:
    """The id of a run of the schedule that is still active, if any."""
    return Job.objects.active().filter(schedule=schedule).values_list("pk", flat=True).first()


def recurrence_of(schedule: Schedule) -> Recurrence:
    return Recurrence(cron=schedule.cron, every=schedule.every_seconds, timezone=schedule.timezone)


# -- what users do to schedules -------------------------------------------------------


def schedule_create(
    *,
    owner: Any,
    kind: str,
    params: dict[str, Any] | None = None,
    name: str = "",
    priority: str | int | None = None,
    cron: str = "",
    every: str | int | None = None,
    timezone: str = "UTC",
    overlap: str = Schedule.Overlap.SKIP,
    enabled: bool = True,
    now: datetime | None = None,
) -> Schedule:
    """Create a schedule of `kind` jobs with `params` (checked by the caller, as for
    `job_submit`); raises ScheduleError naming every bad field. Its first run is the
    first due time after now (`every`: now + the interval)."""
    errors: dict[str, str] = {}
    try:
        get_kind(kind)
    except UnknownKind as exc:
        errors["kind"] = str(exc)
    fields = _checked(
        errors,
        name=name,
        params=params or {},
        priority=priority,
        overlap=overlap,
        enabled=enabled,
    )
    when = _checked_recurrence(errors, cron=cron, every=every, timezone=timezone)
    if errors:
        raise ScheduleError(errors)
    now = now or _now()
    schedule = Schedule(owner=owner, kind=kind, created_at=now, updated_at=now, **fields)
    _set_recurrence(schedule, when, now)

    def create() -> Schedule:
        _check_ceiling(owner)
        schedule.save(force_insert=True)
        return schedule

    return atomic_retry(create)


def _check_ceiling(owner: Any) -> None:
    """At most CONVEYOR_MAX_SCHEDULES_PER_USER schedules per user (staff and ownerless
    schedules: no limit; 0: none). The owner's row is locked (PostgreSQL) so that two
    creates at once cannot both take the last place; SQLite has one writer anyway."""
    limit = settings.CONVEYOR_MAX_SCHEDULES_PER_USER
    if not limit or owner is None or owner.is_staff:
        return
    get_user_model()._default_manager.select_for_update().filter(pk=owner.pk).exists()
    count = Schedule.objects.filter(owner=owner).count()
    if count >= limit:
        raise JobActionError(
            f"{owner.get_username()} has {count} schedules, the most allowed "
            f"(CONVEYOR_MAX_SCHEDULES_PER_USER={limit}): delete one to add another."
        )


def schedule_update(
    *, schedule: Schedule, changes: dict[str, Any], by: Any = None, now: datetime | None = None
) -> Schedule:
    """Change some of EDITABLE (`cron` or `every` replaces the other); raises
    ScheduleError. A new recurrence or time zone moves the next run to its first due
    time after now."""
    unknown = set(changes) - EDITABLE
    if unknown:
        raise ScheduleError(dict.fromkeys(sorted(unknown), "cannot be changed"))
    errors: dict[str, str] = {}
    fields = _checked(errors, **{k: v for k, v in changes.items() if k in EDITABLE - _TIMING})
    when = None
    if _TIMING & set(changes):
        current = recurrence_of(schedule)
        if "cron" in changes or "every" in changes:
            cron, every = changes.get("cron") or "", changes.get("every")
        else:
            cron, every = current.cron, current.every
        zone = changes.get("timezone", current.timezone)
        when = _checked_recurrence(errors, cron=cron, every=every, timezone=zone)
    if fields.get("enabled") is True and not schedule.enabled and _owner_inactive(schedule):
        errors["enabled"] = f"cannot resume: {OWNER_INACTIVE}"
    if errors:
        raise ScheduleError(errors)
    now = now or _now()
    toggled = "enabled" in fields and fields["enabled"] != schedule.enabled
    if toggled:  # paused or resumed by a person: no system reason stands
        fields["paused_reason"] = ""

    def change() -> Schedule:
        for name, value in fields.items():
            setattr(schedule, name, value)
        if when is not None:
            _set_recurrence(schedule, when, now)
        elif toggled:
            _set_next_run(schedule, now)
        schedule.updated_at = now
        names = [*fields, "updated_at"]
        if when is not None or toggled:
            # Only then: writing back a next run a worker has since claimed would
            # offer that due time again.
            names.append("next_run_at")
        if when is not None:
            names += ["cron", "every_seconds", "timezone"]
        schedule.save(update_fields=list(dict.fromkeys(names)))
        return schedule

    return atomic_retry(change)


_TIMING = {"cron", "every", "timezone"}


def schedule_pause(*, schedule: Schedule, by: Any = None) -> Schedule:
    """No more runs until resumed (a run already started goes on)."""
    if not schedule.enabled:
        raise JobActionError(f"Schedule #{schedule.pk} is already paused.")
    return schedule_update(schedule=schedule, changes={"enabled": False}, by=by)


def schedule_resume(*, schedule: Schedule, by: Any = None, now: datetime | None = None) -> Schedule:
    """Runs again from the first due time after now (missed ones are not made up); not
    while its owner's account is deactivated."""
    if schedule.enabled:
        raise JobActionError(f"Schedule #{schedule.pk} is not paused.")
    if _owner_inactive(schedule):
        raise JobActionError(f"Schedule #{schedule.pk} cannot resume: {OWNER_INACTIVE}.")
    return schedule_update(schedule=schedule, changes={"enabled": True}, by=by, now=now)


def schedule_delete(*, schedule: Schedule, by: Any = None) -> None:
    """Delete the schedule; its runs stay, as ordinary jobs."""

    def delete() -> None:
        transitions.detach_schedule(schedule.pk)
        Schedule.objects.filter(pk=schedule.pk).delete()

    atomic_retry(delete)


def schedule_run_now(*, schedule: Schedule, by: Any = None, now: datetime | None = None) -> Job:
    """Submit a run now (`scheduled_for` = now), whether the schedule is paused or not;
    its next due time stays as it is.

    The overlap policy holds: with `skip`, a run still active refuses it
    (JobActionError), as does an active job on the same entity (a sheet has one active
    job at a time); with `queue` it is queued behind.
    """
    now = now or _now()

    def run() -> Job:
        fresh = Schedule.objects.select_related("owner").get(pk=schedule.pk)
        if fresh.owner is not None and not fresh.owner.is_active:
            raise JobActionError(f"Schedule #{fresh.pk} cannot run: {OWNER_INACTIVE}.")
        if fresh.overlap == Schedule.Overlap.SKIP and (active := active_run(fresh)):
            raise AlreadyActive(
                f"Schedule #{fresh.pk}'s run job #{active} is still active (overlap: skip).",
                job_id=active,
                where=f"for schedule #{fresh.pk}",
            )
        job, created = _submit(fresh, now)
        if not created:
            where = f"on {job.entity_key or job.session_key}"
            raise AlreadyActive(
                f"Job #{job.pk} is already active {where}.", job_id=job.pk, where=where
            )
        _record_run(fresh, job, now)
        return job

    return atomic_retry(run)


def _owner_inactive(schedule: Schedule) -> bool:
    """Read now, not from a cached owner: the account may have changed since."""
    users = get_user_model()._default_manager
    return users.filter(pk=schedule.owner_id, is_active=False).exists()


def schedules_pause_for_owner(owner: Any, now: datetime | None = None) -> int:
    """Pause the enabled schedules of a deactivated user, saying why; how many."""
    now = now or _now()
    enabled = Schedule.objects.filter(owner=owner, enabled=True)
    return enabled.update(
        enabled=False, next_run_at=None, paused_reason=OWNER_INACTIVE, updated_at=now
    )


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="schedules-owner-inactive")
def _owner_saved(sender: Any, instance: Any, **kwargs: Any) -> None:
    """A user saved inactive (the admin's "active" box, `user.save()`): their schedules
    pause at once. A bulk UPDATE sends no signal: the due time pauses those instead."""
    if not getattr(instance, "is_active", True):
        schedules_pause_for_owner(instance)


# -- checking what users give ----------------------------------------------------------


def _now() -> datetime:
    return timezone.now()


def _checked(errors: dict[str, str], **values: Any) -> dict[str, Any]:
    """The model fields for name, params, priority, overlap, enabled (those given)."""
    fields: dict[str, Any] = {}
    if "name" in values:
        name = values["name"] if values["name"] is not None else ""
        if not isinstance(name, str) or len(name) > MAX_NAME:
            errors["name"] = f"must be text of at most {MAX_NAME} characters"
        fields["name"] = name
    if "params" in values:
        if not isinstance(values["params"], dict):
            errors["params"] = "must be an object"
        else:
            fields["params"] = secrets.seal(values["params"])
    if "priority" in values:
        try:
            fields["priority"] = parse_priority(values["priority"])
        except (ValueError, TypeError):
            errors["priority"] = "must be high, normal, low or an integer"
    if "overlap" in values:
        if values["overlap"] not in Schedule.Overlap.values:
            errors["overlap"] = f"must be one of {', '.join(Schedule.Overlap.values)}"
        fields["overlap"] = values["overlap"]
    if "enabled" in values:
        if not isinstance(values["enabled"], bool):
            errors["enabled"] = "must be true or false"
        fields["enabled"] = values["enabled"]
    return fields


def _checked_recurrence(
    errors: dict[str, str], *, cron: str, every: str | int | None, timezone: str
) -> Recurrence | None:
    try:
        return recurrence(cron=cron or "", every=every, timezone=timezone)
    except RecurrenceError as exc:
        errors[exc.field] = exc.message
        return None


def _set_recurrence(schedule: Schedule, when: Recurrence | None, now: datetime) -> None:
    assert when is not None
    schedule.cron = when.cron
    schedule.every_seconds = when.every
    schedule.timezone = when.timezone
    _set_next_run(schedule, now)


def _set_next_run(schedule: Schedule, now: datetime) -> None:
    """The first due time after now while enabled; none while paused."""
    schedule.next_run_at = recurrence_of(schedule).next_after(now) if schedule.enabled else None
