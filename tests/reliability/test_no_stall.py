"""One user can never stall another: a job that cannot even start frees its worker at
once, so nobody's work waits behind a pile of such jobs for leases to expire."""

from __future__ import annotations

import pytest

from jobs.models import Job
from tests.jobs.factories import submit_demo, wait_status

pytestmark = pytest.mark.django_db(transaction=True)


def starts(job: Job) -> int:
    return job.events.filter(kind="state", status=Job.Status.RUNNING).count()


@pytest.mark.cluster
def test_jobs_that_cannot_start_fail_at_once_and_free_their_worker(
    cluster_factory, user, other_user
):
    """Params that cannot be opened (here: sealed under a key the workers do not have)
    fail the job on its first claim, with the reason, instead of holding the worker for
    a lease per attempt while another user's job waits behind."""
    bad = [submit_demo(user, n=1, api_key="sk-alice-0001", priority="high") for _ in range(2)]
    good = submit_demo(other_user, n=1)
    cluster_factory(workers=1, CONVEYOR_SECRETS_KEY="a key the submitter did not use")
    good = wait_status(good, Job.Status.SUCCEEDED, timeout=60)
    for job in bad:
        job = wait_status(job, Job.Status.FAILED, timeout=30)
        assert "Could not start" in job.error and "cannot be decrypted" in job.error
        assert starts(job) == 1 and job.attempts == 0
        assert job.finished_at < good.started_at
