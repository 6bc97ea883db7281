"""THE writer of job state: every change of a job's status, lease, dispatch mark or
progress goes through a function here.

Each function is one conditional UPDATE (or INSERT/DELETE) that applies only while the
job is in a state the transition may leave (`TRANSITIONS`) and, for a worker's writes,
only while that worker still holds the lease; it writes the transition's event and
notification and announces the change, in the caller's transaction (callers wrap it in
`atomic_retry`). The fields each outcome writes are defined once (`*_fields` below), so
a cancelled job looks the same whoever cancelled it. Nothing else in the code base
updates `Job` rows: runner, recovery, dispatch, services, admin, API and CLI ask here.

Hot paths use `UPDATE ... RETURNING` (PostgreSQL, SQLite >= 3.35) so that one
statement both checks the condition and reads what the caller needs next.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import F, QuerySet
from django.db.models.sql import UpdateQuery
from django.utils import timezone

from jobs.engine.errors import JobActionError, LeaseLost
from jobs.engine.journal import CHANNEL, Event, Journal, event_of_inserted_job_sql
from jobs.models import Job, JobDependency, JobEvent, Notification

Status = Job.Status
Request = Job.Request
STATE = JobEvent.Kind.STATE
LOG = JobEvent.Kind.LOG

# Allowed transitions: new status -> statuses it may be entered from.
# RUNNING -> RUNNING is a new slice of a job already started.
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
CLAIMABLE = (Status.QUEUED, Status.RETRYING, Status.RUNNING)


def by(user: Any) -> str:
    return f" by {user.get_username()}" if user is not None else ""


def lease_expiry(now: datetime) -> datetime:
    return now + timedelta(seconds=settings.CONVEYOR_LEASE_SECONDS)


# -- the fields each outcome writes ------------------------------------------------------


def cancelled_fields(now: datetime) -> dict[str, Any]:
    return {
        "status": Status.CANCELLED,
        "requested": "",
        "dispatched_at": None,
        "run_after": None,
        "cancelled_at": now,
        "finished_at": now,
    }


def paused_fields() -> dict[str, Any]:
    return {"status": Status.PAUSED, "requested": "", "dispatched_at": None}


def failed_fields(error: str, tb: str, now: datetime) -> dict[str, Any]:
    return {
        "status": Status.FAILED,
        "error": error,
        "traceback": tb,
        "finished_at": now,
        "message": error[:500],
        "requested": "",
    }


def succeeded_fields(result: Any, message: str, now: datetime) -> dict[str, Any]:
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


def retrying_fields(
    attempt: int, error: str, tb: str, delay: float, now: datetime
) -> dict[str, Any]:
    """A failed attempt that will be tried again after `delay` seconds."""
    return {
        "status": Status.RETRYING,
        "attempts": attempt,
        "run_after": now + timedelta(seconds=delay),
        "error": error,
        "traceback": tb,
    }


def retry_fields() -> dict[str, Any]:
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


def released_fields(now: datetime) -> dict[str, Any]:
    return {"lease_owner": "", "lease_expires_at": None, "updated_at": now}


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


def _update_returning(rows: QuerySet[Job], fields: dict[str, Any], returning: list[str]):
    """`rows.update(**fields)` that also returns `returning` of each updated row, in one
    statement. Returned values are raw database values: ask for plain columns only."""
    fields.setdefault("updated_at", timezone.now())
    query = rows.query.chain(UpdateQuery)
    query.add_update_values(fields)
    sql, params = query.get_compiler(rows.db).as_sql()
    quote = connection.ops.quote_name
    columns = ", ".join(quote(Job._meta.get_field(name).column) for name in returning)
    with connection.cursor() as cursor:
        cursor.execute(f"{sql} RETURNING {columns}", params)
        return cursor.fetchall()


# Hot paths (a worker's claim, commit and release, once or more per job) are written as
# SQL by hand: building them with the ORM cost more CPU than running them.


def _column(name: str) -> str:
    return connection.ops.quote_name(Job._meta.get_field(name).column)


def _prep(name: str, value: Any) -> Any:
    return Job._meta.get_field(name).get_db_prep_save(value, connection)


@functools.cache
def _one_row_update(vendor: str, sets: tuple[str, ...], where: str, returning: str) -> str:
    assignments = ", ".join(f"{_column(name)} = %s" for name in sets)
    table = connection.ops.quote_name(Job._meta.db_table)
    return f"UPDATE {table} SET {assignments} WHERE {where} RETURNING {returning}"


def _update_job(
    job_id: int,
    fields: dict[str, Any],
    returning: list[str],
    *,
    owner: str | None = None,
    statuses: tuple[str, ...] | None = None,
) -> list[tuple]:
    """UPDATE one job (held by `owner`, in one of `statuses`) RETURNING columns."""
    fields.setdefault("updated_at", timezone.now())
    where, params = f"{_column('id')} = %s", [job_id]
    if owner is not None:
        where += f" AND {_column('lease_owner')} = %s"
        params.append(owner)
    if statuses:
        where += f" AND {_column('status')} IN ({', '.join(['%s'] * len(statuses))})"
        params += list(statuses)
    columns = ", ".join(_column(name) for name in returning)
    sql = _one_row_update(connection.vendor, tuple(fields), where, columns)
    values = [_prep(name, value) for name, value in fields.items()]
    with connection.cursor() as cursor:
        cursor.execute(sql, values + params)
        return cursor.fetchall()


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


def _insert_one(job: Job) -> None:
    """One job's INSERT, its `turn` (the owner's active jobs) counted by the statement
    and returned with its id. Compiled once: the ORM compiles the statement on every
    save, which was half the time of a submit (bench engine)."""
    sql, fields = _insert_sql(connection.vendor, job.owner_id is not None)
    with connection.cursor() as cursor:
        cursor.execute(sql, _insert_params(job, fields))
        job.pk, job.turn = cursor.fetchone()
    job._state.adding, job._state.db = False, connection.alias


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
    insert, fields = _insert_sql(connection.vendor, job.owner_id is not None, True)
    cap_sql, cap_params = capacity
    event = Event(0, STATE, "Queued", Status.QUEUED, at=now).values(connection)[1:]
    sql = (
        f"WITH cap AS ({cap_sql}), job AS ({insert}), "
        f"event AS ({event_of_inserted_job_sql('job')}) "
        f"SELECT job.id, job.turn, job.dispatched_at IS NOT NULL, cap.free, "
        f"pg_notify(%s, job.id::text) FROM job, cap"
    )
    params = [*cap_params, *_insert_params(job, fields), *event, CHANNEL]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        job.pk, job.turn, dispatched, free, _ = cursor.fetchone()
    job.dispatched_at = now if dispatched else None
    job._state.adding, job._state.db = False, connection.alias
    return dispatched, free


def _insert_params(job: Job, fields: list) -> list:
    """The parameters of `_insert_sql`: the job's values, then its turn's count."""
    values = [field.get_db_prep_save(field.pre_save(job, True), connection) for field in fields]
    owner = [job.owner_id] if job.owner_id is not None else []
    return [*values, *owner, *Job.ACTIVE]


@functools.cache
def _insert_sql(vendor: str, owned: bool, dispatch_if_free: bool = False) -> tuple[str, list]:
    """A job's INSERT ... RETURNING id, turn. `dispatch_if_free`: inside a statement
    with a `cap` CTE, `dispatched_at` is set only if `cap.beyond` > 0."""
    quote = connection.ops.quote_name
    owner = quote("owner_id") + (" = %s" if owned else " IS NULL")
    statuses = ", ".join(["%s"] * len(Job.ACTIVE))
    turn = (
        f"(SELECT COUNT(*) FROM {quote(Job._meta.db_table)} "
        f"WHERE {owner} AND {quote('status')} IN ({statuses}))"
    )
    columns = [
        field
        for field in Job._meta.concrete_fields
        if not field.primary_key and field.attname != "turn"
    ]
    names = ", ".join(quote(field.column) for field in [*columns, Job._meta.get_field("turn")])
    values = [
        "CASE WHEN (SELECT beyond FROM cap) > 0 THEN %s END"
        if dispatch_if_free and field.attname == "dispatched_at"
        else "%s"
        for field in columns
    ]
    returning = f"{quote('id')}, {quote('turn')}"
    if dispatch_if_free:
        returning += f", {quote('dispatched_at')}"
    sql = (
        f"INSERT INTO {quote(Job._meta.db_table)} ({names}) "
        f"VALUES ({', '.join([*values, turn])}) RETURNING {returning}"
    )
    return sql, columns


def create(
    jobs: list[Job],
    journal: Journal | None = None,
    *,
    after: list[int] | None = None,
    dispatched: bool = False,
) -> list[Job]:
    """Insert queued jobs with their "Queued" events; one statement per table.

    Each job's `turn` is the number of active jobs its owner already has: computed in
    the INSERT for one job, counted once per owner for many. `after` (one job only):
    the jobs it waits for; it becomes runnable once all of them succeeded.
    `dispatched`: the caller sends their slice tasks after the commit (a free worker
    was reserved for them), so `dispatch()` must not pick them again.
    """
    now = timezone.now()
    for job in jobs:
        job.status = Status.QUEUED
        job.created_at = job.updated_at = now
        job.dispatched_at = now if dispatched else None
    if after:
        jobs[0].upstream_pending = _mark_upstream(after)
    if len(jobs) == 1:
        _insert_one(jobs[0])
        if after:
            links = [JobDependency(job=jobs[0], depends_on_id=up) for up in after]
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


def _mark_upstream(after: list[int]) -> int:
    """Flag the jobs a new job waits for, and count those that have not succeeded yet.

    One UPDATE ... RETURNING: it takes the rows' locks, so an upstream job finishing at
    the same moment either sees the flag (and settles the new job) or has already
    committed the status this returns.
    """
    found = dict(
        _update_returning(
            Job.objects.filter(pk__in=after), {"has_dependents": True}, ["id", "status"]
        )
    )
    for upstream in after:
        status = found.get(upstream)
        if status is None:
            raise JobActionError(f"There is no job #{upstream} to wait for.")
        if status in (Status.FAILED, Status.CANCELLED):
            raise JobActionError(f"Job #{upstream} is {status}: a job cannot wait for it.")
    return sum(1 for status in found.values() if status != Status.SUCCEEDED)


def settle_dependents(upstream: int, status: str, notes: Journal) -> None:
    """An upstream job ended: its waiting jobs take one step towards runnable if it
    succeeded, else they are cancelled (and theirs after them) with the reason."""
    now = timezone.now()
    waiting = Job.objects.filter(
        pk__in=JobDependency.objects.filter(depends_on_id=upstream).values("job_id"),
        status__in=Job.ACTIVE,
    )
    if status == Status.SUCCEEDED:
        ids = list(waiting.values_list("pk", flat=True))
        waiting.update(upstream_pending=F("upstream_pending") - 1, updated_at=now)
        for job_id in ids:
            notes.event(job_id, LOG, f"Job #{upstream}, which it waits for, succeeded")
            notes.changed(job_id)
        return
    error = f"Cancelled: job #{upstream}, which it waits for, {status}."
    fields = {**cancelled_fields(now), "error": error, "message": error}
    rows = waiting.filter(status__in=TRANSITIONS[Status.CANCELLED], lease_owner="")
    returning = ["id", "owner_id", "label", "kind", "has_dependents", "batch_id"]
    found = _update_returning(rows, fields, returning)
    for job_id, owner_id, label, kind, has_dependents, batch_id in found:
        notes.event(job_id, STATE, error, Status.CANCELLED, at=now)
        message = f"{label or kind} {error}"
        notes.notify(owner_id, job_id, Notification.Level.ERROR, message, batch_id)
        notes.ended(batch_id)
        notes.changed(job_id)
        if has_dependents:
            settle_dependents(job_id, Status.CANCELLED, notes)


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


@functools.cache
def _claim_sql(vendor: str, statuses: tuple[str, ...]) -> str:
    """The claim, as `Job.objects.claimable()` means it, returning the whole row."""
    c = _column
    table = connection.ops.quote_name(Job._meta.db_table)
    columns = ", ".join(c(field.name) for field in Job._meta.concrete_fields)
    return (
        f"UPDATE {table} SET {c('status')} = %s, {c('lease_owner')} = %s, "
        f"{c('lease_expires_at')} = %s, {c('heartbeat_at')} = %s, {c('dispatched_at')} = NULL, "
        f"{c('run_after')} = NULL, {c('started_at')} = COALESCE({c('started_at')}, %s), "
        f"{c('updated_at')} = %s "
        f"WHERE {c('id')} = %s AND {c('status')} IN ({', '.join(['%s'] * len(statuses))}) "
        f"AND {c('lease_owner')} = '' AND {c('upstream_pending')} = 0 "
        f"AND ({c('run_after')} IS NULL OR {c('run_after')} <= %s) RETURNING {columns}"
    )


@functools.cache
def _row_converters(vendor: str) -> list[tuple[Any, list]]:
    """Each column's converters from the database's values to Python's (what a
    queryset applies: SQLite's text datetimes, JSON), looked up once."""
    converters = []
    for field in Job._meta.concrete_fields:
        column = field.get_col(Job._meta.db_table)
        found = connection.ops.get_db_converters(column) + field.get_db_converters(connection)
        converters.append((column, found))
    return converters


def _job_from_row(row: tuple) -> Job:
    values = []
    for value, (column, converters) in zip(row, _row_converters(connection.vendor), strict=True):
        for convert in converters:
            value = convert(value, column, connection)
        values.append(value)
    return Job.from_db(connection.alias, None, values)


def _claim_rows(job_id: int, worker: str, statuses: tuple[str, ...], now: datetime) -> list[Job]:
    """UPDATE ... RETURNING of a claim: the job's whole row comes back in one statement
    (built into a Job here: `Job.objects.raw` cost a third of the claim's time)."""
    at = _prep("updated_at", now)
    params = [Status.RUNNING, worker, _prep("lease_expires_at", lease_expiry(now)), at, at, at]
    params += [job_id, *statuses, at]
    with connection.cursor() as cursor:
        cursor.execute(_claim_sql(connection.vendor, statuses), params)
        return [_job_from_row(row) for row in cursor.fetchall()]


def claim(job_id: int, worker: str, journal: Journal | None = None) -> Job | None:
    """Take the lease of a claimable job: it becomes (or stays) running on `worker`.

    Returns the job as stored after the claim, or None if it is not claimable (taken,
    finished, paused, waiting for its retry time). A queued job is tried first (one
    statement for a new job); a running one whose last slice ended is the second try,
    so that the event can say which it was.
    """
    now = timezone.now()
    found = _claim_rows(job_id, worker, (Status.QUEUED, Status.RETRYING), now)
    if found:
        job = found[0]
        verb = "Started" if job.started_at == now else "Running again"
        with _journal(journal) as notes:
            notes.event(job.pk, STATE, f"{verb} on {worker}", Status.RUNNING, at=now)
            notes.changed(job.pk)
        return job
    found = _claim_rows(job_id, worker, (Status.RUNNING,), now)
    if not found:
        return None
    with _journal(journal) as notes:
        notes.changed(job_id)
    return found[0]


def commit_progress(
    job_id: int,
    worker: str,
    fields: dict[str, Any],
    *,
    progress: dict[str, Any] | None = None,
) -> str:
    """Store a batch's progress while `worker` holds the lease (renewing it).

    `progress` (throttled by the caller) adds a progress event. Returns the pending
    request ("", "pause", "cancel") read by the same statement; raises LeaseLost when
    the worker no longer holds the job.
    """
    now = timezone.now()
    fields = {**fields, "heartbeat_at": now, "lease_expires_at": lease_expiry(now)}
    found = _update_job(job_id, fields, ["requested"], owner=worker)
    if not found:
        raise LeaseLost(f"job {job_id} is no longer leased to {worker}")
    with _journal(None) as notes:
        if progress is not None:
            notes.event(job_id, JobEvent.Kind.PROGRESS, fields.get("message", ""), data=progress)
        notes.changed(job_id)
    return found[0][0] or ""


def renew_lease(job_id: int, worker: str) -> str | None:
    """The heartbeat's lease renewal; returns the pending request, None if not held."""
    now = timezone.now()
    fields = {"heartbeat_at": now, "lease_expires_at": lease_expiry(now), "updated_at": now}
    found = _update_job(job_id, fields, ["requested"], owner=worker)
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


def release(
    job_id: int,
    worker: str,
    fields: dict[str, Any],
    message: str | None,
    *,
    data: dict[str, Any] | None = None,
    notification: tuple[str, str] | None = None,
    journal: Journal | None = None,
) -> bool:
    """End a slice: release the lease and apply `fields` (a new status, or none to stay
    running for the next slice), only if `worker` still holds the job. The event and
    the owner's notification ("<title> <text>") commit with it. False if the lease was
    lost."""
    now = timezone.now()
    status = fields.get("status")
    returning = ["owner", "label", "kind", "has_dependents", "batch"]
    sources = TRANSITIONS[status] if status else None
    found = _update_job(
        job_id, {**fields, **released_fields(now)}, returning, owner=worker, statuses=sources
    )
    if not found:
        return False
    owner_id, label, kind, has_dependents, batch_id = found[0]
    with _journal(journal) as notes:
        if message is not None:
            notes.event(job_id, STATE, message, status or "", data=data, at=now)
        if notification is not None:
            title = label or f"{kind} #{job_id}"
            text = f"{title} {notification[1]}"
            notes.notify(owner_id, job_id, notification[0], text, batch_id)
        if status in Job.TERMINAL:
            notes.ended(batch_id)
        notes.changed(job_id)
        if has_dependents and status in Job.TERMINAL:
            settle_dependents(job_id, status, notes)
    return True


def yield_to(job_id: int, worker: str, winner: int, run_seconds: float) -> bool:
    """Hand this job's worker to `winner`: back to queued, the winner marked dispatched."""
    rows = _rows(job_id, TRANSITIONS[Status.QUEUED], owner=worker)
    now = timezone.now()
    fields = {"status": Status.QUEUED, "run_seconds": run_seconds, **released_fields(now)}
    if not _update(rows, fields):
        return False
    mark_dispatched([winner])
    with _journal(None) as notes:
        notes.event(job_id, STATE, f"Yielded to higher-priority job #{winner}", Status.QUEUED)
        notes.changed(job_id)
    return True


def stopped_by_force(
    job_id: int,
    worker: str,
    fields: dict[str, Any],
    message: str,
    *,
    data: dict[str, Any] | None = None,
    notification: tuple[str, str] | None = None,
    journal: Journal | None = None,
) -> bool:
    """A job ended by stopping its worker (a force stop, or a cancel or time limit that
    reached no checkpoint in time): written by that worker's heartbeat just before it
    ends its own process, so the job ends once, here, and is never recovered by lease
    expiry. `fields` is the outcome (cancelled, failed, or retrying); False if the
    worker no longer holds the job (its slice ended first: nothing to stop)."""
    return release(
        job_id, worker, fields, message, data=data, notification=notification, journal=journal
    )


# -- rescue ------------------------------------------------------------------------------


def recover(job_id: int, lost_owner: str, reason: str, *, resumable: bool = True) -> str:
    """Take a job back from a worker presumed dead: honour a pending pause or cancel,
    fail it once its attempts are used up, else make it runnable again to resume from
    its last checkpoint. Each loss counts as an attempt.

    A job whose kind cannot resume (`resumable=False`: a Django task) starts again from
    the beginning: it is queued again (so its next run is a new "Running again" on the
    timeline), with a fresh time budget, only while its attempts allow; with one
    attempt (no retries) it fails. Returns the job's new status ("" if not recovered).
    """
    job = Job.objects.filter(pk=job_id, lease_owner=lost_owner).first()
    if job is None:
        return ""
    now = timezone.now()
    attempt = job.attempts + 1
    common = {"attempts": attempt, **released_fields(now)}
    rows = _rows(job_id, owner=lost_owner)
    with _journal(None) as notes:
        if job.requested:
            cancel = job.requested in (Request.CANCEL, Request.FORCE)
            fields = cancelled_fields(now) if cancel else paused_fields()
            rows.update(**common, **fields)
            status = fields["status"]
            label = Status(status).label.capitalize()
            notes.event(job_id, STATE, f"{label} ({reason})", status, at=now)
        elif attempt >= job.max_attempts:
            if resumable:
                error = (
                    f"Gave up after {attempt} attempts: {reason} each time, without "
                    f"progress in between. The job may crash the worker that runs it."
                )
            else:
                error = _restart_refused(reason, attempt, job.max_attempts)
            rows.update(**common, **failed_fields(error, "", now))
            notes.event(job_id, STATE, error, Status.FAILED, at=now)
            message = f"{job.title} failed: {error}"
            notes.notify(job.owner_id, job_id, Notification.Level.ERROR, message, job.batch_id)
            status = Status.FAILED
        elif not resumable:
            restart = {"status": Status.QUEUED, "run_seconds_at_retry": job.run_seconds}
            rows.update(**common, **restart, dispatched_at=None)
            notes.event(
                job_id,
                STATE,
                f"Recovered: {reason}; restarting from the beginning (it cannot resume "
                f"from a checkpoint; attempt {attempt + 1} of {job.max_attempts})",
                Status.QUEUED,
                at=now,
            )
            status = Status.QUEUED
        else:
            rows.update(**common)
            notes.event(
                job_id,
                LOG,
                f"Recovered: {reason}; resuming from the last checkpoint "
                f"(attempt {attempt + 1} of {job.max_attempts})",
                at=now,
            )
            status = Status.RUNNING
        notes.changed(job_id)
        if status in Job.TERMINAL:
            notes.ended(job.batch_id)
        if job.has_dependents and status in Job.TERMINAL:
            settle_dependents(job_id, status, notes)
    return status


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
    outcome = _stop(job, paused_fields(), Request.PAUSE)
    with _journal(None) as notes:
        if outcome == "now":
            notes.event(job.pk, STATE, f"Paused{by(who)}", Status.PAUSED)
        elif outcome == "requested":
            notes.event(job.pk, LOG, f"Pause requested{by(who)}")
        if outcome:
            notes.changed(job.pk)
    return outcome


def cancel(job: Job, who: Any = None, *, force: bool = False) -> str:
    """ "now" (cancelled), "requested" (its worker stops at the next checkpoint, or is
    force-stopped after CONVEYOR_CANCEL_GRACE_SECONDS) or "".

    `force`: the request is a force stop: the worker's heartbeat writes the job
    cancelled (`stopped_by_force`) and ends its own process at once, checkpoint or not.
    """
    request = Request.FORCE if force else Request.CANCEL
    outcome = _stop(job, cancelled_fields(timezone.now()), request)
    with _journal(None) as notes:
        if outcome == "now":
            notes.event(job.pk, STATE, f"Cancelled{by(who)}", Status.CANCELLED)
            message = f"{job.title} was cancelled"
            notes.notify(job.owner_id, job.pk, Notification.Level.INFO, message, job.batch_id)
            notes.ended(job.batch_id)
            if Job.objects.filter(pk=job.pk, has_dependents=True).exists():
                settle_dependents(job.pk, Status.CANCELLED, notes)
        elif outcome == "requested":
            asked = "Force stop" if force else "Cancel"
            notes.event(job.pk, LOG, f"{asked} requested{by(who)}")
        if outcome:
            notes.changed(job.pk)
    return outcome


def resume(job: Job, who: Any = None) -> str:
    """A paused job queued again ("resumed"), or a pending pause withdrawn ("withdrawn")."""
    fields = {"status": Status.QUEUED}
    with _journal(None) as notes:
        if _update(_rows(job.pk, (Status.PAUSED,)), dict(fields)):
            _apply(job, fields)
            notes.event(job.pk, STATE, f"Resumed{by(who)}", Status.QUEUED)
            outcome = "resumed"
        elif _update(Job.objects.filter(pk=job.pk, requested=Request.PAUSE), {"requested": ""}):
            job.requested = ""
            notes.event(job.pk, LOG, f"Pause request withdrawn{by(who)}")
            outcome = "withdrawn"
        else:
            return ""
        notes.changed(job.pk)
    return outcome


def retry(job: Job, extra: dict[str, Any], what: str, who: Any = None) -> bool:
    """Queue a finished job again with `retry_fields()` plus `extra` (cursor, counters)."""
    fields = {**retry_fields(), **extra}
    if fields.get("processed") == 0:  # run again from the start: a new clock too
        fields["run_seconds"] = 0.0
        fields["worked_units"] = 0
    fields["run_seconds_at_retry"] = fields.get("run_seconds", job.run_seconds)
    if not _update(_rows(job.pk, TRANSITIONS[Status.QUEUED]), dict(fields)):
        return False
    _apply(job, fields)
    with _journal(None) as notes:
        notes.event(job.pk, STATE, f"Retry ({what}){by(who)}", Status.QUEUED)
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
