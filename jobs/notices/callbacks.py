"""A finished batch's `on_complete` job: submitted once the batch has ended, whatever the
outcome, with the outcome in its params under `batch_outcome`:
`{"id", "label", "job_count", "counts": {"succeeded": 3, "failed": 1}, "finished_at"}`.

The batch's spec is stored with it (`BatchCallback`, in the submit's transaction); the
upkeep submits it (`submit_batch_callbacks`), claiming it with a compare-and-set of
`submitted_at` in the submit's transaction, so it runs once however many workers look.
A batch that ends again after a retry does not submit it twice.
"""

from __future__ import annotations

import logging

from django.db.models import Count
from django.utils import timezone

from jobs.engine.db import atomic_retry
from jobs.engine.errors import JobActionError
from jobs.engine.services import job_submit
from jobs.models import BatchCallback, Job

CLAIM = 20
log = logging.getLogger(__name__)


def outcome(callback: BatchCallback) -> dict:
    batch = callback.batch
    counts = dict(
        Job.objects.filter(batch_id=batch.pk)
        .values_list("status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    return {
        "id": batch.pk,
        "label": batch.label,
        "job_count": batch.job_count,
        "counts": {status: counts[status] for status in sorted(counts)},
        "finished_at": batch.finished_at.isoformat() if batch.finished_at else None,
    }


def _submit(callback_id: int) -> bool:
    claimed = BatchCallback.objects.filter(
        pk=callback_id, submitted_at=None, batch__finished_at__isnull=False
    ).update(submitted_at=timezone.now())
    if not claimed:
        return False
    callback = BatchCallback.objects.select_related("batch__owner").get(pk=callback_id)
    spec = callback.spec
    params = {**(spec.get("params") or {}), "batch_outcome": outcome(callback)}
    try:
        job, _ = job_submit(
            kind=spec["kind"],
            params=params,
            params_sealed=True,
            owner=callback.batch.owner,
            label=spec.get("label") or "",
            priority=spec.get("priority"),
        )
    except (JobActionError, KeyError, ValueError) as exc:
        BatchCallback.objects.filter(pk=callback_id).update(error=str(exc)[:500])
        return True
    BatchCallback.objects.filter(pk=callback_id).update(job_id=job.pk)
    return True


def submit_batch_callbacks() -> int:
    """Submit the `on_complete` jobs of batches that have ended (the upkeep hook)."""
    due = BatchCallback.objects.filter(submitted_at=None, batch__finished_at__isnull=False)
    done = 0
    for callback_id in due.values_list("pk", flat=True)[:CLAIM]:
        done += atomic_retry(lambda callback_id=callback_id: _submit(callback_id))
    return done


def upkeep() -> None:
    """The upkeep hook; a failure is logged, never raised into the heartbeat (the hooks
    after this one still run)."""
    try:
        submit_batch_callbacks()
    except Exception:  # noqa: BLE001 - the next beat tries again
        log.exception("batch on_complete submission failed")
