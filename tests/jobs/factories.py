"""Small helpers to make and inspect jobs in tests."""

from __future__ import annotations

from collections import Counter

from jobs.engine.services import job_submit
from jobs.models import DemoUnit, Job


def submit_demo(owner=None, kind: str = "demo.count", **params) -> Job:
    options = {
        k: params.pop(k)
        for k in ("priority", "time_limit", "entity_key", "session_key", "label")
        if k in params
    }
    job, _ = job_submit(kind=kind, params=params, owner=owner, **options)
    return job


def status_of(job: Job) -> str:
    return Job.objects.values_list("status", flat=True).get(pk=job.pk)


def fresh(job: Job) -> Job:
    return Job.objects.get(pk=job.pk)


def unit_counts(job: Job) -> Counter:
    return Counter(DemoUnit.objects.filter(job=job).values_list("number", flat=True))


def messages(job: Job) -> list[str]:
    return list(job.events.order_by("id").values_list("message", flat=True))
