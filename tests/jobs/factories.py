"""Small helpers to make, run and inspect jobs in tests: in-process (`run_to_end`) or on
a real cluster (`wait_status`, `running_jobs`)."""

from __future__ import annotations

from collections import Counter

from jobs.engine.runner import run_one_slice
from jobs.engine.services import job_submit
from jobs.models import DemoUnit, Job
from tests.support.processes import wait_for


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


def run_to_end(job: Job, max_slices: int = 50) -> Job:
    """Run slices in this process until the job leaves the runnable states."""
    for _ in range(max_slices):
        Job.objects.filter(pk=job.pk).update(run_after=None)
        run_one_slice(job.pk)
        job = fresh(job)
        if job.status not in (Job.Status.QUEUED, Job.Status.RUNNING, Job.Status.RETRYING):
            return job
    raise AssertionError(f"job still {job.status} after {max_slices} slices")


def wait_status(job: Job, status: str, timeout: float = 20) -> Job:
    """Wait for a job (run by a cluster) to reach `status`; the job as it is then."""
    wait_for(lambda: status_of(job) == status, timeout=timeout, what=f"job #{job.pk} {status}")
    return fresh(job)


def running_jobs() -> set[int]:
    """Ids of the jobs a worker holds right now."""
    return set(
        Job.objects.filter(status=Job.Status.RUNNING)
        .exclude(lease_owner="")
        .values_list("id", flat=True)
    )
