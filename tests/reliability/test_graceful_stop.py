"""A cluster asked to stop (SIGINT as Ctrl-C sends it, SIGTERM as a supervisor or
systemd does) ends its job's slice, commits what is done, hands the job back to the
queue without a lease, and exits within seconds; the next start finishes the job with
every unit done once, without waiting for a lease to expire."""

from __future__ import annotations

import signal
import time

import psutil
import pytest

from jobs.models import Job
from tests.jobs.factories import fresh, messages, submit_demo, unit_counts
from tests.support.processes import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.django_db(transaction=True)]


def tree(pid: int) -> list[psutil.Process]:
    try:
        leader = psutil.Process(pid)
        return [leader, *leader.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_cluster_hands_its_job_back_and_the_next_one_finishes_it(
    cluster_factory, user, signum
):
    first = cluster_factory(workers=1)
    job = submit_demo(user, n=200, delay=0.02)
    wait_for(lambda: fresh(job).processed >= 10, timeout=30, what="progress")
    processes = tree(first.proc.pid)
    asked = time.monotonic()
    first.proc.send_signal(signum)
    wait_for(
        lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in processes),
        timeout=15,
        interval=0.1,
        what="every process of the cluster to exit",
    )
    stopped_in = time.monotonic() - asked
    job = fresh(job)
    assert (job.status, job.lease_owner) == (Job.Status.QUEUED, ""), stopped_in
    assert "Requeued: its worker is stopping" in messages(job)
    cluster_factory(workers=1)
    wait_for(lambda: fresh(job).status == Job.Status.SUCCEEDED, timeout=60, what="completion")
    assert unit_counts(job) == dict.fromkeys(range(200), 1)
