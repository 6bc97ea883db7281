"""What runs next: pick claimable jobs by priority, owners' turns, then age, and start
them on workers.

Priority lives in our Job table, not in the broker's FIFO. Two ways a job reaches a
worker:
- `dispatch()` enqueues one `runner.run_slice(job_id)` django-q2 task per picked job,
  never more than there are free workers, so a high-priority job submitted later is
  the next one picked. It runs after submit, at the end of every task, after
  resume/retry, and from each worker's heartbeat.
- `pick_next()`: a worker that has just finished a slice claims the best job itself,
  in the transaction that settled its last one: no broker round trip per job.
Kinds at their concurrency cap are skipped; a job the broker still holds may be taken
by whichever worker is free first (its task then finds nothing to do).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Hashable
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Q
from django.utils import timezone
from django_q.brokers import Broker, get_broker
from django_q.brokers.orm import ORM
from django_q.conf import Conf
from django_q.tasks import async_task

from jobs.engine import controls, transitions
from jobs.engine.db import SCHEDULER_LOCK_ID, atomic_retry, lock_scheduler
from jobs.engine.errors import LeaseLost
from jobs.engine.journal import Journal
from jobs.engine.kinds import all_kinds
from jobs.models import Job, Worker, worker_stale_after

log = logging.getLogger(__name__)

TASK = "jobs.engine.runner.run_slice"
CANDIDATES = 20  # runnable jobs read per pick; more only matter when kinds are capped

_broker: Broker | None = None


def _shared_broker() -> Broker:
    """One broker per process: a new Redis connection per enqueue is 6-12x slower."""
    global _broker
    if _broker is None:
        _broker = get_broker()
    return _broker


def _occupying():
    """Jobs holding a worker or waiting in the broker for one (active ones only, so the
    query stays on the status index however much history is kept)."""
    return Job.objects.filter(status__in=Job.ACTIVE).filter(
        ~Q(lease_owner="") | Q(dispatched_at__isnull=False)
    )


def free_capacity() -> int:
    """Alive workers minus busy slots, in one query (it runs after every submit)."""
    return _run_compiled(_capacity_sql(connection.vendor, "free"))


def work_to_dispatch() -> bool:
    """Whether a worker is free and a runnable job waits for one: the unlocked look
    before `dispatch()` takes the scheduling lock (on SQLite, the write lock), which a
    worker that just went idle, with nothing waiting, would take for nothing."""
    return _run_compiled(_capacity_sql(connection.vendor, "dispatchable")) > 0


def free_for_new_job() -> bool:
    """Whether a job submitted now may go straight to a worker: one is free beyond the
    runnable jobs already waiting (so it overtakes nobody).

    Inside the submit's transaction. On PostgreSQL the scheduler lock is only tried, in
    the same statement: if a worker is scheduling at this moment the submit does not wait
    for it but takes the usual way (`dispatch()` after the commit). (A scheduler that
    committed between this statement's snapshot and its lock can make it count one
    worker too many: that job then waits in the broker for the next free worker.)
    SQLite serialises writers anyway.
    """
    return _run_compiled(_capacity_sql(connection.vendor, "free beyond waiting")) > 0


@functools.cache
def _capacity_sql(vendor: str, shape: str) -> tuple[str, list]:
    """One of, compiled once: "free" = alive workers - jobs occupying one; "free beyond
    waiting" = that - runnable jobs waiting; "dispatchable" = the lesser of free and
    waiting."""
    sample = timezone.now()
    parts = [
        Worker.objects.alive(sample).order_by().values("pk"),
        _occupying().order_by().values("pk"),
        Job.objects.runnable(sample).order_by().values("pk"),
    ]
    counts, params = [], []
    for index, queryset in enumerate(parts if shape != "free" else parts[:2]):
        sql, part_params = queryset.query.sql_with_params()
        counts.append(f"(SELECT COUNT(*) FROM ({sql}) part{index})")
        params.extend(part_params)
    alive, occupying, *waiting = counts
    if shape == "dispatchable":
        lesser = "MIN" if vendor == "sqlite" else "LEAST"
        value = f"{lesser}({alive} - {occupying}, {waiting[0]})"
    else:
        value = " - ".join(counts)
    if shape == "free beyond waiting" and vendor == "postgresql":
        value = f"CASE WHEN pg_try_advisory_xact_lock({SCHEDULER_LOCK_ID}) THEN {value} ELSE 0 END"
    return f"SELECT {value}", _times_as_markers(params, sample)


def capacity_for_submit(may_skip_the_queue: bool) -> tuple[str, list]:
    """For a submit's single statement (PostgreSQL): SQL of one row and its parameters.
    `beyond`: free workers beyond the runnable jobs waiting, as `free_for_new_job` (0
    for a job that may not skip the queue); `free`: as `free_capacity`."""
    free, params = _capacity_sql(connection.vendor, "free")
    beyond = "0"
    if may_skip_the_queue:
        beyond, beyond_params = _capacity_sql(connection.vendor, "free beyond waiting")
        params = beyond_params + params
    select = "SELECT "
    return (
        f"SELECT ({beyond.removeprefix(select)}) AS beyond, ({free.removeprefix(select)}) AS free",
        _filled(params),
    )


def _times_as_markers(params: list, sample) -> list:
    """A compiled query's parameters, with the times it was built with (now, and the
    alive workers' cutoff) replaced by markers `_run_compiled` fills in, raw or as the
    database takes them (SQLite: text)."""
    markers = {}
    for time, marker in ((sample, NOW), (sample - worker_stale_after(), ALIVE_SINCE)):
        markers[time] = markers[_prepared_time(time)] = marker
    compiled = [
        markers.get(value, value) if isinstance(value, Hashable) else value for value in params
    ]
    if ALIVE_SINCE not in compiled:
        raise RuntimeError("could not find the workers' cutoff time in the capacity query")
    return compiled


def _filled(params: list) -> list:
    """A compiled query's parameters with the time markers filled in for now."""
    now = timezone.now()
    times = {NOW: now, ALIVE_SINCE: now - worker_stale_after()}
    return [
        _prepared_time(times[value]) if value is NOW or value is ALIVE_SINCE else value
        for value in params
    ]


def _run_compiled(compiled: tuple[str, list]) -> int:
    sql, params = compiled
    with connection.cursor() as cursor:
        cursor.execute(sql, _filled(params))
        return cursor.fetchone()[0]


def send_with_commit(job_ids: list[int]) -> None:
    """Send the slice tasks of jobs marked dispatched in the current transaction.

    The ORM broker's queue is a table of this database: its rows are written in this
    transaction, so they commit with the jobs or not at all, and a submit stays one
    commit. Any other broker is sent to once the transaction has committed, so that
    the worker taking the task finds the job.
    """
    broker = _shared_broker()
    if isinstance(broker, ORM) and connection.alias == Conf.ORM:
        for job_id in job_ids:
            _send(broker, job_id)
    else:
        transaction.on_commit(lambda: _enqueue(job_ids))


def _kind_load(kinds: list[str], leased_only: bool = False) -> dict[str, int]:
    """Jobs occupying a worker by capped name: kind, and sub-kind where one is capped."""
    jobs = _occupying().exclude(lease_owner="") if leased_only else _occupying()
    load: dict[str, int] = {}
    for field in ("kind", "subkind"):
        rows = jobs.filter(**{f"{field}__in": kinds}).values(field).annotate(n=Count("id"))
        load.update({row[field]: row["n"] for row in rows if row[field]})
        if not _subkinds_capped(kinds):
            break
    return load


def _subkinds_capped(names) -> bool:
    """Whether any capped name is a sub-kind (else one query counts the load)."""
    return any(name not in _kind_names() for name in names)


def _kind_names() -> set[str]:
    return {kind.name for kind in all_kinds()}


def _at_cap(names: tuple[str, str], caps: dict[str, int], load: dict[str, int]) -> bool:
    """Whether a job of kind and sub-kind `names` would go beyond a cap."""
    return any(name in caps and load.get(name, 0) >= caps[name] for name in names if name)


def _count_in(names: tuple[str, str], load: dict[str, int]) -> None:
    for name in {name for name in names if name}:
        load[name] = load.get(name, 0) + 1


def _ordered(jobs):
    """Priority first; among equal priorities owners take turns (`Job.turn`), then age."""
    return jobs.order_by("-priority", "turn", "created_at", "id")


def _choose(limit: int) -> list[int]:
    """The best `limit` runnable jobs by priority then age, skipping kinds at their cap."""
    caps = controls.caps()
    load = _kind_load(list(caps)) if caps else {}
    picked: list[int] = []
    jobs = _ordered(Job.objects.runnable()).values_list("id", "kind", "subkind")
    for job_id, *names in jobs[: limit + 100]:
        if _at_cap(names, caps, load):
            continue
        picked.append(job_id)
        _count_in(names, load)
        if len(picked) == limit:
            break
    transitions.mark_dispatched(picked)
    return picked


def _pick() -> list[int]:
    """Mark the jobs to start as dispatched and send their tasks; one scheduling
    transaction at a time."""
    lock_scheduler()
    free = free_capacity()
    picked = _choose(free) if free > 0 else []
    send_with_commit(picked)
    return picked


def dispatch() -> list[int]:
    """Enqueue tasks for the best runnable jobs up to the free worker capacity.

    A cheap unlocked look first: with every worker busy (the usual case under load)
    there is nothing to do, and the busy workers pick the new jobs up themselves; with
    nothing waiting (a worker that just finished the last job) neither.
    """
    if not work_to_dispatch():
        return []
    return atomic_retry(_pick)


def _send(broker: Broker, job_id: int) -> None:
    """One slice task. django-q2 saves its result only if it failed, unless
    CONVEYOR_KEEP_TASK_RESULTS: the job row is the record, and a task row per slice
    cost a write and a prune in the cluster's monitor."""
    async_task(
        TASK,
        job_id,
        broker=broker,
        task_name=f"job-{job_id}",
        group="conveyor",
        save=settings.CONVEYOR_KEEP_TASK_RESULTS,
    )


def _enqueue(job_ids: list[int]) -> None:
    """Send one slice task per job already marked dispatched (after that commit)."""
    broker = _shared_broker()
    for job_id in job_ids:
        try:
            _send(broker, job_id)
        except Exception:
            log.exception("could not enqueue job %s; it stays runnable", job_id)
            transitions.clear_dispatch([job_id])


def release_stale_dispatches() -> int:
    """Make jobs runnable again whose broker task has not started a slice in time.

    The task may be lost with a killed cluster, or prefetched by a cluster whose
    workers are all busy. Dispatching again is safe: claims are atomic, so a late
    duplicate task finds the job taken and does nothing.
    """
    cutoff = timezone.now() - timedelta(seconds=settings.CONVEYOR_DISPATCH_STALE_SECONDS)
    return transitions.release_stale_dispatches(cutoff)


# -- claiming --------------------------------------------------------------------------


def _below_cap(kind: str, subkind: str = "") -> bool:
    """For a capped kind or sub-kind: may one more run? Decided under the scheduling
    lock, which the caller's transaction then holds until its claim commits."""
    caps = controls.caps()
    names = [name for name in (kind, subkind) if name and name in caps]
    if not names:
        return True
    lock_scheduler()
    return not _at_cap(names, caps, _kind_load(names, leased_only=True))


def claim(
    job_id: int, kind: str, worker: str, journal: Journal | None = None, subkind: str = ""
) -> Job | None:
    """Claim a job for `worker` if it is claimable and below its kind's (and sub-kind's)
    cap."""
    if not _below_cap(kind, subkind):
        return None
    return transitions.claim(job_id, worker, journal)


def claim_dispatched(job_id: int, worker: str) -> Job | None:
    """The broker task's claim. A job it cannot take (taken, paused, capped, not due)
    loses its dispatch mark, so dispatch may hand it out again."""

    def attempt() -> Job | None:
        if controls.caps():  # the cap is checked before the claim, by the job's kind
            names = Job.objects.filter(pk=job_id).values_list("kind", "subkind").first()
            job = claim(job_id, names[0], worker, subkind=names[1]) if names else None
        else:
            job = transitions.claim(job_id, worker)
        if job is None:
            transitions.clear_dispatch([job_id])
        return job

    return atomic_retry(attempt)


@functools.cache
def _candidates_sql(vendor: str) -> tuple[str, list[str]]:
    """`_ordered(Job.objects.claimable())` ids and kinds, compiled once (a hot path)."""
    sample = timezone.now()
    jobs = _ordered(Job.objects.claimable(sample)).values_list("id", "kind", "subkind")
    jobs = jobs[:CANDIDATES]
    sql, params = jobs.query.sql_with_params()
    prepared = _prepared_time(sample)
    compiled = [NOW if value in (sample, prepared) else value for value in params]
    if NOW not in compiled:
        raise RuntimeError("could not find the current time in the claimable query")
    return sql, compiled


NOW = object()  # where the current time goes in a compiled query's parameters
ALIVE_SINCE = object()  # and the alive workers' cutoff


def _prepared_time(value):
    return Job._meta.get_field("run_after").get_db_prep_value(value, connection)


def _claimable_candidates() -> list[tuple[int, str]]:
    sql, params = _candidates_sql(connection.vendor)
    now = _prepared_time(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(sql, [now if value is NOW else value for value in params])
        return cursor.fetchall()


def pick_next(worker: str, journal: Journal | None = None) -> Job | None:
    """Claim the best claimable job for a worker that is free now (in the caller's
    transaction, e.g. the one that settled its last job), or None."""
    for job_id, kind, subkind in _claimable_candidates():
        job = claim(job_id, kind, worker, journal, subkind)
        if job is not None:
            return job
    return None


# -- preemption ------------------------------------------------------------------------


def preempting_job(priority: int) -> int | None:
    """The waiting job a running job of `priority` should yield its worker to, if any.

    Only when no worker is free: a higher-priority runnable job whose kind is below
    its concurrency cap. With a free worker, dispatch starts that job anyway.
    """
    candidates = list(
        _ordered(Job.objects.runnable().filter(priority__gt=priority)).values_list(
            "id", "kind", "subkind"
        )[:50]
    )
    if not candidates or free_capacity() > 0:
        return None
    caps = controls.caps()
    load = _kind_load(list(caps)) if caps else {}
    for job_id, *names in candidates:
        if not _at_cap(names, caps, load):
            return job_id
    return None


def yield_to_waiting(job_id: int, worker: str, priority: int, run_seconds: float) -> int | None:
    """Hand this worker to a waiting higher-priority job, if one should have it.

    Decided under the scheduling lock, in the transaction that releases this job and
    marks the winner dispatched, so two running jobs never both yield to one winner.
    Raises LeaseLost if this worker no longer holds the job.
    """

    def decide() -> int | None:
        lock_scheduler()
        winner = preempting_job(priority)
        if winner is None:
            return None
        if not transitions.yield_to(job_id, worker, winner, run_seconds):
            raise LeaseLost(f"job {job_id} is no longer leased to {worker}")
        send_with_commit([winner])
        return winner

    return atomic_retry(decide)
