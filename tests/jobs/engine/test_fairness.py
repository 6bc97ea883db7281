"""Nobody starves others: owners take turns among jobs of equal priority, and each user
has a ceiling on active jobs (CONVEYOR_MAX_ACTIVE_JOBS)."""

from __future__ import annotations

import pytest
from django.test import Client

from jobs.engine.errors import QuotaExceeded
from jobs.engine.services import Submission, job_retry, job_submit, job_submit_many
from jobs.models import Job
from tests.jobs.factories import fresh, run_to_end, submit_demo
from tests.support.processes import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.cluster
def test_a_users_one_job_runs_before_another_users_tenth(cluster_factory, user, other_user):
    flood = [submit_demo(user, n=4, delay=0.05) for _ in range(10)]
    mine = submit_demo(other_user, n=1)
    cluster_factory(workers=1)
    everything = [*flood, mine]
    wait_for(
        lambda: all(fresh(job).status == Job.Status.SUCCEEDED for job in everything),
        timeout=60,
        what="all jobs to finish",
    )
    starts = sorted(everything, key=lambda job: fresh(job).started_at)
    assert starts.index(mine) <= 1  # right after the job that was already first in line


def test_turns_count_the_owners_active_jobs(user, other_user):
    first = [submit_demo(user, n=1) for _ in range(3)]
    theirs = submit_demo(other_user, n=1)
    many = job_submit_many([Submission(kind="demo.count", params={"n": 1}, owner=user)] * 2)
    assert [job.turn for job in first] == [0, 1, 2]
    assert theirs.turn == 0 and [job.turn for job in many] == [3, 4]


def test_a_user_beyond_the_active_jobs_limit_is_refused(settings, user, staff_user):
    settings.CONVEYOR_MAX_ACTIVE_JOBS = 2
    submit_demo(user, n=1)
    submit_demo(user, n=1)
    with pytest.raises(QuotaExceeded, match="CONVEYOR_MAX_ACTIVE_JOBS=2"):
        job_submit(kind="demo.count", params={"n": 1}, owner=user)
    assert Job.objects.filter(owner=user).count() == 2  # nothing half-made
    for _ in range(3):
        submit_demo(staff_user, n=1)  # operators have no limit


def test_the_api_answers_429_beyond_the_limit(settings, user):
    settings.CONVEYOR_MAX_ACTIVE_JOBS = 1
    settings.CONVEYOR_SUBMITTABLE_KINDS = ["demo.count"]
    client = Client()
    client.force_login(user)

    def submit():
        return client.post("/api/jobs/", {"kind": "demo.count"}, content_type="application/json")

    assert submit().status_code == 201
    refused = submit()
    assert refused.status_code == 429 and "active jobs" in refused.json()["error"]


@pytest.mark.cluster
def test_a_users_normal_job_does_not_wait_behind_anothers_pile_of_high_ones(
    cluster_factory, user, other_user
):
    pile = [submit_demo(user, n=3, delay=0.1, priority="high") for _ in range(4)]
    mine = submit_demo(other_user, n=1)
    cluster_factory(workers=1)
    everything = [*pile, mine]
    wait_for(
        lambda: all(fresh(job).status == Job.Status.SUCCEEDED for job in everything),
        timeout=60,
        what="all jobs to finish",
    )
    starts = sorted(everything, key=lambda job: fresh(job).started_at)
    assert starts.index(mine) == 2  # after the two high jobs the ceiling allows


def test_high_priority_beyond_the_ceiling_runs_at_normal_and_says_why(settings, user, staff_user):
    settings.CONVEYOR_MAX_HIGH_PRIORITY_JOBS = 2
    jobs = [submit_demo(user, n=1, priority="high") for _ in range(3)]
    many = job_submit_many([Submission(kind="demo.count", owner=user, priority="high")] * 2)
    assert [fresh(job).priority for job in [*jobs, *many]] == [10, 10, 0, 0, 0]
    note = fresh(jobs[2]).events.filter(kind="log").values_list("message", flat=True).get()
    assert "normal priority" in note and "CONVEYOR_MAX_HIGH_PRIORITY_JOBS=2" in note
    staff = [submit_demo(staff_user, n=1, priority="high") for _ in range(3)]
    assert {fresh(job).priority for job in staff} == {10}  # operators have no ceiling


def test_a_retried_high_job_beyond_the_ceiling_runs_at_normal(settings, user):
    settings.CONVEYOR_MAX_HIGH_PRIORITY_JOBS = 1
    done = run_to_end(submit_demo(user, n=1, priority="high"))
    submit_demo(user, n=1, priority="high")
    job_retry(job=done)
    assert fresh(done).priority == 0 and fresh(done).status == Job.Status.QUEUED
