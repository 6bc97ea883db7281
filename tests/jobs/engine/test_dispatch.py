"""jobs/engine/dispatch.py with a real two-worker cluster: what runs next. Capacity (a
job waits for a free worker), priorities and preemption (a running low-priority job
yields to a waiting high-priority one), concurrency caps per kind, and a retrying job
picked up again once its backoff has passed."""

from __future__ import annotations

import pytest

from jobs.engine.services import job_cancel
from jobs.models import DemoUnit, Job
from tests.jobs.factories import (
    fresh,
    messages,
    running_jobs,
    status_of,
    submit_demo,
    unit_counts,
    wait_status,
)
from tests.support.processes import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.django_db(transaction=True)]

S = Job.Status


def test_two_workers_run_two_jobs_and_the_third_waits(cluster, user):
    a, b, c = (submit_demo(user, n=60, delay=0.05, batch=2) for _ in range(3))
    wait_for(lambda: running_jobs() == {a.pk, b.pk}, timeout=20, what="the two oldest jobs running")
    assert status_of(c) == S.QUEUED
    c = wait_status(c, S.SUCCEEDED, timeout=60)
    first_done = min(fresh(a).finished_at, fresh(b).finished_at)
    c_first_unit = DemoUnit.objects.filter(job=c).order_by("started_at").first().started_at
    assert c_first_unit >= first_done - timezone_slack(), (
        "the third job started when a worker was free"
    )
    for job in (a, b, c):
        assert wait_status(job, S.SUCCEEDED, timeout=30).processed == 60


def timezone_slack():
    from datetime import timedelta

    return timedelta(milliseconds=300)


def test_high_priority_job_starts_first_and_a_low_priority_job_yields_to_it(cluster, user):
    low_a, low_b = (submit_demo(user, n=200, delay=0.05, priority="low") for _ in range(2))
    wait_for(
        lambda: running_jobs() == {low_a.pk, low_b.pk}, timeout=20, what="both low jobs running"
    )
    waiting_low = submit_demo(user, n=5, priority="low")
    high = submit_demo(user, n=10, delay=0.02, priority="high")

    high = wait_status(high, S.SUCCEEDED, timeout=20)
    assert status_of(waiting_low) == S.QUEUED, "the high job went ahead of the older queued one"
    yielded = [
        job
        for job in (low_a, low_b)
        if f"Yielded to higher-priority job #{high.pk}" in messages(job)
    ]
    assert len(yielded) == 1, "exactly one running low-priority job gave up its worker"
    assert S.QUEUED in list(yielded[0].events.values_list("status", flat=True))

    for job in (low_a, low_b):
        job_cancel(job=job)
    wait_status(waiting_low, S.SUCCEEDED, timeout=30)
    for job in (low_a, low_b):
        counts = unit_counts(job)
        assert all(n == 1 for n in counts.values()), "a yielded job resumes without redoing work"


def test_a_kind_capped_at_one_never_runs_two_jobs_at_once(cluster, user):
    jobs = [submit_demo(user, kind="demo.serial", n=12, delay=0.05) for _ in range(3)]
    for job in jobs:
        wait_status(job, S.SUCCEEDED, timeout=60)
    intervals = sorted(
        (
            DemoUnit.objects.filter(job=job).order_by("started_at").first().started_at,
            DemoUnit.objects.filter(job=job).order_by("-finished_at").first().finished_at,
        )
        for job in jobs
    )
    for (_, end), (start, _) in zip(intervals, intervals[1:], strict=False):
        assert start >= end, f"jobs of a concurrency-1 kind overlapped: {intervals}"


def test_retrying_job_is_picked_up_again_after_its_backoff(cluster, user):
    job = submit_demo(user, n=3, transient_failures=2)
    job = wait_status(job, S.SUCCEEDED, timeout=30)
    retries = job.events.filter(data__delay__isnull=False).count()
    assert retries == 2
    assert all("Transient error" in m for m in messages(job) if "retrying in" in m)
