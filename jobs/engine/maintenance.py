"""Periodic upkeep: recover lost work, run the upkeep hooks (the due schedules) and fill
free capacity (every few heartbeats of each worker, and every minute from a django-q2
schedule), and prune finished jobs older than the retention setting (from the schedule).

Hooks keep the engine below what it runs: `jobs.schedules` registers its due runs at app
start (`on_upkeep`), so the engine never imports the schedules' services.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from jobs.engine import dispatch, recovery
from jobs.engine.db import atomic_retry
from jobs.engine.shared_state import prune_shared_state
from jobs.models import Job, JobChange

CHANGE_FEED_KEEP = timedelta(minutes=10)


PRUNE_BATCH_JOBS = 100

_UPKEEP_HOOKS: list[Callable[[], Any]] = []


def on_upkeep(hook: Callable[[], Any]) -> None:
    """Run `hook` at every heartbeat's upkeep (once, however often it is registered)."""
    if hook not in _UPKEEP_HOOKS:
        _UPKEEP_HOOKS.append(hook)


def run_upkeep_hooks() -> None:
    """The light part of upkeep, due at every heartbeat (the due schedules)."""
    for hook in _UPKEEP_HOOKS:
        hook()


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
    """Recover lost work, run the upkeep hooks and fill free capacity."""
    recovery.recover()
    run_upkeep_hooks()
    dispatch.dispatch()


def run_periodic() -> dict[str, int]:
    """The schedule's task: the worker heartbeat's maintenance plus pruning."""
    maintain()
    return {
        "pruned_jobs": prune_finished_jobs(),
        "pruned_changes": prune_change_feed(),
        "pruned_shared_state": prune_shared_state(),
    }
