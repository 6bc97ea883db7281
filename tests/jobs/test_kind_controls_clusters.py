"""Kind controls on real clusters (jobs.engine.controls): a pause stops the kind's work
on two clusters (running jobs park at their next checkpoint, nothing new starts, new
submits wait) and resume restarts it; a cap lowered while jobs run is honoured."""

from __future__ import annotations

import pytest
from django.utils import timezone

from jobs.actions.kinds import kind_cap, kind_pause, kind_resume
from jobs.engine import controls
from jobs.models import Job, JobEvent, Worker
from tests.jobs.factories import fresh, running_jobs, submit_demo
from tests.support.processes import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.django_db(transaction=True)]

KIND = "demo.count"
LONG = {"n": 2000, "delay": 0.05}  # about 100 s of work each, cut into 2 s slices


def leased_by() -> dict[int, str]:
    """Running jobs and the worker holding each."""
    rows = Job.objects.filter(status=Job.Status.RUNNING).exclude(lease_owner="")
    return dict(rows.values_list("id", "lease_owner"))


def cluster_of(worker: str, clusters) -> int:
    pid = Worker.objects.filter(name=worker).values_list("pid", flat=True).first()
    return next(i for i, cluster in enumerate(clusters) if pid in cluster.worker_pids())


def workers_beat_since(moment, times: int = 3) -> bool:
    """Every alive worker has reported in (and dispatched) since `moment`, `times` beats
    of 0.3 s later."""
    since = moment + timezone.timedelta(seconds=0.3 * times)
    alive = Worker.objects.alive()
    return alive.exists() and not alive.filter(last_seen_at__lt=since).exists()


def test_a_pause_holds_a_kind_on_two_clusters_and_a_lowered_cap_is_honoured(
    cluster_factory, user, other_user, staff_user
):
    clusters = [cluster_factory(workers=2), cluster_factory(workers=2)]
    jobs = [submit_demo(user, **LONG) for _ in range(4)]
    held = wait_for(
        lambda: len(leased_by()) == 4 and leased_by(),
        timeout=30,
        what="four jobs running",
    )
    assert {cluster_of(worker, clusters) for worker in held.values()} == {0, 1}

    kind_pause(KIND, by=staff_user, reason="provider degraded")
    paused_at = timezone.now()
    wait_for(
        lambda: all(fresh(job).status == Job.Status.QUEUED for job in jobs),
        timeout=10,
        what="every running job parked in the queue",
    )
    parked = JobEvent.objects.filter(job__in=jobs, data__hold=KIND).values_list("job_id", flat=True)
    assert set(parked) == {job.pk for job in jobs}, "each parked at a checkpoint"

    waiting = submit_demo(other_user, n=1)  # accepted while paused; it waits
    submitted_at = timezone.now()
    wait_for(lambda: workers_beat_since(submitted_at), timeout=15, what="workers' heartbeats")
    assert fresh(waiting).status == Job.Status.QUEUED and fresh(waiting).started_at is None
    assert not running_jobs()
    assert not Job.objects.filter(started_at__gt=paused_at).exists(), "nothing new started"

    before = {job.pk: fresh(job).processed for job in jobs}
    kind_resume(KIND, by=staff_user)
    wait_for(
        lambda: (
            fresh(waiting).status == Job.Status.SUCCEEDED
            and all(fresh(job).processed > before[job.pk] for job in jobs)
        ),
        timeout=30,
        what="the held jobs running again and the waiting one done",
    )
    resumed = JobEvent.objects.filter(job__in=jobs, message=f"{KIND} resumed by operator")
    assert resumed.count() == 4

    kind_cap(KIND, 1, by=staff_user)
    wait_for(lambda: len(running_jobs()) <= 1, timeout=10, what="the cap of 1 honoured")
    capped_at, done = timezone.now(), sum(fresh(job).processed for job in jobs)
    wait_for(lambda: workers_beat_since(capped_at), timeout=15, what="workers' heartbeats")
    assert len(running_jobs()) <= 1, "no worker starts a second one"
    wait_for(
        lambda: sum(fresh(job).processed for job in jobs) > done,
        timeout=15,
        what="one job still running under the cap",
    )
    controls.forget()
