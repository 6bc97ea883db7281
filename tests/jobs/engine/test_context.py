"""jobs/engine/context.py: what a running handler's checkpoints decide. The time limit
counts running time only, in-process and on a real cluster where the job first waits
in the queue; a running job pauses, resumes and cancels within two seconds of the
request."""

from __future__ import annotations

import time

import pytest
from django.utils import timezone

from jobs.engine.services import job_cancel, job_pause, job_resume
from jobs.models import Job
from tests.jobs.factories import (
    fresh,
    messages,
    run_to_end,
    running_jobs,
    status_of,
    submit_demo,
    wait_status,
)
from tests.support.processes import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

S = Job.Status


def test_time_limit_counts_running_time_only(user):
    queued_long_ago = submit_demo(user, n=3, time_limit=1.0)
    Job.objects.filter(pk=queued_long_ago.pk).update(
        created_at=timezone.now() - timezone.timedelta(hours=1)
    )
    assert run_to_end(queued_long_ago).status == Job.Status.SUCCEEDED

    slow = run_to_end(submit_demo(user, n=50, delay=0.1, time_limit=1.0))
    assert slow.status == Job.Status.FAILED
    assert slow.error.startswith("Time limit exceeded")
    assert "the limit is 1 s" in slow.error
    assert 1.0 < slow.run_seconds < 3.0


@pytest.mark.cluster
def test_time_limit_counts_running_time_not_time_in_the_queue(cluster, user):
    blockers = [submit_demo(user, n=40, delay=0.05) for _ in range(2)]
    wait_for(
        lambda: running_jobs() == {b.pk for b in blockers}, timeout=20, what="both workers busy"
    )
    patient = submit_demo(user, n=3, time_limit=1.0)  # waits ~2 s in the queue
    slow = submit_demo(user, n=100, delay=0.05, time_limit=1.0)
    patient = wait_status(patient, S.SUCCEEDED, timeout=30)
    assert (patient.started_at - patient.created_at).total_seconds() > 1.0, "it did wait"
    slow = wait_status(slow, S.FAILED, timeout=30)
    assert slow.error.startswith("Time limit exceeded: ran 1.")
    assert "the limit is 1 s" in slow.error and 0 < slow.processed < 100


@pytest.mark.cluster
def test_running_jobs_pause_resume_and_cancel_within_two_seconds(cluster, user):
    job = submit_demo(user, n=400, delay=0.05)
    wait_for(lambda: fresh(job).processed >= 5, timeout=20, what="the job making progress")

    asked = time.monotonic()
    job_pause(job=job, by=user)
    wait_status(job, S.PAUSED, timeout=2)
    assert time.monotonic() - asked < 2
    paused_at = fresh(job).processed
    assert not fresh(job).lease_owner, "a paused job holds no worker"

    job_resume(job=job, by=user)
    wait_for(lambda: fresh(job).processed > paused_at, timeout=10, what="progress after resume")

    asked = time.monotonic()
    job_cancel(job=job, by=user)
    job = wait_status(job, S.CANCELLED, timeout=2)
    assert time.monotonic() - asked < 2
    assert job.cancelled_at and "Cancelled" in messages(job)
    stopped_at = job.processed
    other = wait_status(submit_demo(user, n=3), S.SUCCEEDED)  # the cluster keeps working
    assert other.processed == 3
    assert fresh(job).processed == stopped_at and status_of(job) == S.CANCELLED
