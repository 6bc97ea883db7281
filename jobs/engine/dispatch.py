"""What runs next: pick runnable jobs by priority then age and hand them to django-q2.

Priority lives in our Job table, not in the broker's FIFO: dispatch enqueues one
`runner.run_slice(job_id)` task per picked job and never more tasks than there are
free workers, so a high-priority job submitted later is the next one picked. Paused
jobs and kinds at their concurrency cap are skipped. Runs after submit, after every
slice, after resume/retry, and from each worker's heartbeat.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone
from django_q.brokers import Broker, get_broker
from django_q.tasks import async_task

from jobs.engine.context import JobContext, LeaseLost
from jobs.engine.db import atomic_retry, lock_scheduler
from jobs.engine.journal import announce
from jobs.engine.kinds import capped_kinds
from jobs.engine.services import record_event
from jobs.engine.worker import alive_workers
from jobs.models import Job, JobEvent

log = logging.getLogger(__name__)

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


def busy_slots() -> int:
    return _occupying().count()


def free_capacity() -> int:
    return alive_workers().count() - busy_slots()


def _kind_load(kinds: list[str]) -> dict[str, int]:
    rows = _occupying().filter(kind__in=kinds).values("kind").annotate(n=Count("id"))
    return {row["kind"]: row["n"] for row in rows}


def _choose(limit: int) -> list[int]:
    """The best `limit` runnable jobs by priority then age, skipping kinds at their cap."""
    caps = capped_kinds()
    load = _kind_load(list(caps))
    picked: list[int] = []
    candidates = Job.objects.runnable().order_by("-priority", "created_at", "id")
    for job_id, kind in candidates.values_list("id", "kind")[: limit + 100]:
        if kind in caps and load.get(kind, 0) >= caps[kind]:
            continue
        picked.append(job_id)
        load[kind] = load.get(kind, 0) + 1
        if len(picked) == limit:
            break
    if picked:
        Job.objects.filter(id__in=picked).update(dispatched_at=timezone.now())
    return picked


def _pick() -> list[int]:
    """Mark the jobs to start as dispatched; one scheduling transaction at a time."""
    lock_scheduler()
    free = free_capacity()
    return _choose(free) if free > 0 else []


def next_for_free_worker() -> int | None:
    """The job a worker that just finished a slice should run next, marked dispatched.

    The worker runs it directly instead of going through the broker: that saves a
    broker round trip (the ORM broker's poll) per slice and per short job.
    """

    def pick() -> list[int]:
        lock_scheduler()
        # A job already handed to the broker is waiting for a worker: leave this worker
        # free to take it (e.g. the high-priority job this worker was preempted for).
        if _occupying().filter(lease_owner="").exists():
            return []
        return _choose(1)

    picked = atomic_retry(pick)
    return picked[0] if picked else None


def dispatch() -> list[int]:
    """Enqueue tasks for the best runnable jobs up to the free worker capacity."""
    picked = atomic_retry(_pick)
    _enqueue(picked)
    return picked


def _enqueue(job_ids: list[int]) -> None:
    """Send one slice task per job already marked dispatched (after that commit)."""
    broker = _shared_broker()
    for job_id in job_ids:
        try:
            async_task(
                "jobs.engine.runner.run_slice",
                job_id,
                broker=broker,
                task_name=f"job-{job_id}",
                group="conveyor",
            )
        except Exception:
            log.exception("could not enqueue job %s; it stays runnable", job_id)
            Job.objects.filter(pk=job_id).update(dispatched_at=None)


def release_stale_dispatches() -> int:
    """Make jobs runnable again whose broker task has not started a slice in time.

    The task may be lost with a killed cluster, or prefetched by a cluster whose
    workers are all busy. Dispatching again is safe: claims are atomic, so a late
    duplicate task finds the job taken and does nothing.
    """
    cutoff = timezone.now() - timedelta(seconds=settings.CONVEYOR_DISPATCH_STALE_SECONDS)
    return Job.objects.filter(dispatched_at__lt=cutoff, lease_owner="").update(dispatched_at=None)


def preempting_job(priority: int) -> int | None:
    """The waiting job a running job of `priority` should yield its worker to, if any.

    Only when no worker is free: a higher-priority runnable job whose kind is below
    its concurrency cap. With a free worker, dispatch starts that job anyway.
    """
    candidates = list(
        Job.objects.runnable()
        .filter(priority__gt=priority)
        .order_by("-priority", "created_at", "id")
        .values_list("id", "kind")[:50]
    )
    if not candidates or free_capacity() > 0:
        return None
    caps = capped_kinds()
    load = _kind_load(list(caps))
    for job_id, kind in candidates:
        if kind not in caps or load.get(kind, 0) < caps[kind]:
            return job_id
    return None


def yield_to_waiting(ctx: JobContext) -> int | None:
    """Hand this worker to a waiting higher-priority job, if one should have it.

    Decided under the scheduling lock, in the transaction that releases this job and
    marks the winner dispatched, so two running jobs never both yield to one winner.
    """

    def decide() -> int | None:
        lock_scheduler()
        winner = preempting_job(ctx.priority)
        if winner is None:
            return None
        now = timezone.now()
        released = Job.objects.filter(pk=ctx.job_id, lease_owner=ctx.worker).update(
            status=Job.Status.QUEUED,
            lease_owner="",
            lease_expires_at=None,
            run_seconds=ctx.run_seconds,
            updated_at=now,
        )
        if not released:
            raise LeaseLost(f"job {ctx.job_id} is no longer leased to {ctx.worker}")
        Job.objects.filter(pk=winner).update(dispatched_at=now)
        message = f"Yielded to higher-priority job #{winner}"
        record_event(ctx.job_id, JobEvent.Kind.STATE, message, status=Job.Status.QUEUED)
        announce(ctx.job_id)
        return winner

    winner = atomic_retry(decide)
    if winner is not None:
        _enqueue([winner])
    return winner
