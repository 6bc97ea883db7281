"""A real qcluster killed with SIGKILL mid-job: nothing lost, nothing counted twice,
no job left running without a live lease, poison jobs fail after their attempts."""

from __future__ import annotations

import pytest
from django.utils import timezone

from jobs.models import Job
from tests.jobs.factories import fresh, messages, status_of, submit_demo, unit_counts
from tests.support.processes import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.django_db(transaction=True)]

S = Job.Status


def assert_no_orphans() -> None:
    """Every running job is leased, and its lease is alive."""
    now = timezone.now()
    for job in Job.objects.filter(status=S.RUNNING).exclude(lease_owner=""):
        assert job.lease_expires_at > now, f"job #{job.pk} is running on an expired lease"


def progress(job: Job) -> int:
    return fresh(job).processed


def test_killing_workers_repeatedly_loses_and_duplicates_nothing(cluster, user):
    n = 300
    job = submit_demo(user, n=n, batch=3, delay=0.01)
    for round_ in range(3):
        before = progress(job)
        wait_for(lambda b=before: progress(job) > b + 15, timeout=30, what="progress before a kill")
        killed = cluster.kill_workers()
        assert killed, "there were workers to kill"
        wait_for(
            lambda k=killed: set(cluster.worker_pids()).isdisjoint(k) and cluster.worker_pids(),
            timeout=20,
            what=f"new workers after kill {round_ + 1}",
        )
    wait_for(lambda: status_of(job) == S.SUCCEEDED, timeout=90, what="the job to complete")
    job = fresh(job)
    assert job.processed == n and job.failed == 0
    assert unit_counts(job) == dict.fromkeys(range(n), 1), "every unit exactly once"
    recovered = [m for m in messages(job) if m.startswith("Recovered:")]
    assert recovered, "the timeline explains the crashes"
    assert_no_orphans()


def test_a_restarted_cluster_recovers_the_job_that_was_running(cluster_factory, user):
    first = cluster_factory(workers=2)
    job = submit_demo(user, n=200, batch=2, delay=0.01)
    wait_for(lambda: progress(job) >= 20, timeout=30, what="progress on the first cluster")
    first.kill()
    stuck = fresh(job)
    assert stuck.status == S.RUNNING and stuck.lease_owner, "the dead cluster still holds the lease"

    cluster_factory(workers=2)
    wait_for(lambda: status_of(job) == S.SUCCEEDED, timeout=60, what="completion after restart")
    job = fresh(job)
    assert unit_counts(job) == dict.fromkeys(range(200), 1)
    assert any("died" in m or "stopped renewing" in m for m in messages(job))
    assert_no_orphans()


def test_stopping_the_cluster_gracefully_then_starting_it_again_finishes_the_job(
    cluster_factory, user
):
    first = cluster_factory(workers=1)
    job = submit_demo(user, n=120, batch=2, delay=0.02)
    wait_for(lambda: progress(job) >= 10, timeout=30, what="progress")
    first.stop()
    cluster_factory(workers=1)
    wait_for(lambda: status_of(job) == S.SUCCEEDED, timeout=60, what="completion after restart")
    assert unit_counts(job) == dict.fromkeys(range(120), 1)


def test_a_poison_job_that_kills_its_worker_fails_after_its_attempts(cluster, user):
    poison = submit_demo(user, n=10, crash_at=3)
    healthy = submit_demo(user, n=5)
    wait_for(lambda: status_of(poison) == S.FAILED, timeout=90, what="the poison job to fail")
    poison = fresh(poison)
    assert poison.error.startswith(f"Gave up after {poison.max_attempts} attempts")
    assert "crash the worker" in poison.error
    assert poison.processed == 3, "work done before the crash is kept"
    assert status_of(healthy) == S.SUCCEEDED, "other jobs still run"
    assert_no_orphans()


def test_killing_only_idle_workers_does_not_stall_the_cluster(cluster_factory, user):
    cluster = cluster_factory(workers=3)
    busy = submit_demo(user, n=400, delay=0.01)
    wait_for(lambda: fresh(busy).lease_owner, timeout=20, what="a worker to take the job")
    busy_pid = int(fresh(busy).lease_owner.rsplit(":", 1)[1])
    idle = [pid for pid in cluster.worker_pids() if pid != busy_pid]
    cluster.kill_workers(idle)  # one of them was waiting in the task queue's read lock

    more = [submit_demo(user, n=5) for _ in range(3)]
    for job in more:
        wait_for(lambda j=job: status_of(j) == S.SUCCEEDED, timeout=30, what="new jobs to run")
    assert "read lock was left held" in cluster.log()
