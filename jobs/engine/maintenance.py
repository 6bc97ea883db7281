"""Periodic upkeep: recover lost work, start due schedules and fill free capacity (every
few heartbeats of each worker, and every minute from a django-q2 schedule), and prune
finished jobs older than the retention setting (from the schedule).
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from jobs.engine import dispatch, recovery, schedules
from jobs.engine.db import atomic_retry
from jobs.models import Job, JobChange

CHANGE_FEED_KEEP = timedelta(minutes=10)


PRUNE_BATCH_JOBS = 100


def prunable_jobs(days: int | None = None) -> QuerySet[Job]:
    """Finished jobs that finished more than `days` ago (default: the retention setting).

    With the setting at 0 or below retention is off and nothing is prunable; an
    explicit `days=0` means every finished job.
    """
    if days is None:
        days = settings.CONVEYOR_RETENTION_DAYS
        if days <= 0:
            return Job.objects.none()
    cutoff = timezone.now() - timedelta(days=days)
    return Job.objects.filter(status__in=Job.TERMINAL, finished_at__lt=cutoff)


def prune_finished_jobs(days: int | None = None) -> int:
    """Delete finished jobs (with events, row results, notifications) older than `days`.

    Deletes in batches of PRUNE_BATCH_JOBS jobs, each its own transaction, so a large
    backlog never holds SQLite's write lock (and stalls the workers) for long. The
    status is checked again at delete time: a job retried meanwhile is kept.
    """
    old = prunable_jobs(days)
    total = 0
    while ids := list(old.order_by("pk").values_list("pk", flat=True)[:PRUNE_BATCH_JOBS]):
        deleted = atomic_retry(lambda ids=ids: _delete_jobs(old, ids))
        if not deleted:
            break
        total += deleted
    return total


def _delete_jobs(old: QuerySet[Job], ids: list[int]) -> int:
    _, per_model = old.filter(pk__in=ids).delete()
    return per_model.get(Job._meta.label, 0)


def prune_change_feed() -> int:
    deleted, _ = JobChange.objects.filter(created_at__lt=timezone.now() - CHANGE_FEED_KEEP).delete()
    return deleted


def maintain() -> None:
    """Recover lost work, start due schedules and fill free capacity."""
    recovery.recover()
    schedules.run_due_schedules()
    dispatch.dispatch()


def run_periodic() -> dict[str, int]:
    """The schedule's task: the worker heartbeat's maintenance plus pruning."""
    maintain()
    return {
        "pruned_jobs": prune_finished_jobs(),
        "pruned_changes": prune_change_feed(),
    }
