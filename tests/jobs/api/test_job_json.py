"""Job JSON's `traceback`, `run_after` and `next_retry_at` (jobs/serializers.py), and the
API's views of unfinished jobs: `/api/jobs/running/` (the running state only, and says
so) beside `/api/jobs/active/` (queued, running, paused and retry-waiting)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.engine.runner import run_one_slice
from jobs.engine.services import job_pause, job_submit
from jobs.models import Job
from jobs.serializers import job_as_dict
from tests.jobs.factories import fresh, run_to_end, submit_demo

pytestmark = pytest.mark.django_db


def ids_of(data: dict) -> list[int]:
    return sorted(job["id"] for job in data["results"])


def test_a_failed_jobs_traceback_is_in_its_json_for_its_owner_and_staff(alice, staff, user):
    job = run_to_end(submit_demo(user, n=3, fail_at=1))
    assert job.status == Job.Status.FAILED and "fail_at" in job.traceback
    for client in (alice, staff):
        data = client.get(f"/api/jobs/{job.pk}/").json()
        assert data["traceback"] == job.traceback
        assert "Traceback (most recent call last)" in data["traceback"]
    submit_demo(user, n=1, entity_key="report-1")
    assert alice.get("/api/jobs/by-entity/report-1/").json()["traceback"] == ""
    assert "traceback" not in alice.get("/api/jobs/").json()["results"][0]  # lists stay small


def test_the_traceback_is_never_given_to_another_user(user, other_user, staff_user):
    job = run_to_end(submit_demo(user, n=3, fail_at=1))
    assert job_as_dict(job, detail=True, viewer=other_user)["traceback"] is None
    assert job_as_dict(job, detail=True)["traceback"] is None  # nobody named: nobody's
    assert job_as_dict(job, detail=True, viewer=staff_user)["traceback"] == job.traceback


def test_run_after_and_next_retry_at(alice, user):
    later = timezone.now() + timedelta(hours=2)
    waiting, _ = job_submit(kind="demo.count", params={"n": 1}, owner=user, run_after=later)
    data = alice.get(f"/api/jobs/{waiting.pk}/").json()
    assert data["run_after"] == later.isoformat() and data["next_retry_at"] is None

    retrying = submit_demo(user, n=2, transient_failures=1)
    run_one_slice(retrying.pk)
    retrying = fresh(retrying)
    assert retrying.status == Job.Status.RETRYING and retrying.run_after is not None
    data = alice.get(f"/api/jobs/{retrying.pk}/").json()
    assert data["next_retry_at"] == data["run_after"] == retrying.run_after.isoformat()
    listed = {job["id"]: job for job in alice.get("/api/jobs/").json()["results"]}
    assert listed[retrying.pk]["next_retry_at"] == retrying.run_after.isoformat()
    assert listed[waiting.pk]["run_after"] == later.isoformat()


def test_active_lists_queued_running_paused_and_retry_waiting_jobs(alice, bob, user, other_user):
    queued = submit_demo(user, n=1)
    running = submit_demo(user, n=1)
    Job.objects.filter(pk=running.pk).update(status=Job.Status.RUNNING)
    paused = job_pause(job=submit_demo(user, n=1))
    retrying = submit_demo(user, n=2, transient_failures=1)
    run_one_slice(retrying.pk)
    done = run_to_end(submit_demo(user, n=1))
    theirs = submit_demo(other_user, n=1)
    assert fresh(paused).status == Job.Status.PAUSED
    assert fresh(retrying).status == Job.Status.RETRYING

    active = alice.get("/api/jobs/active/").json()
    assert ids_of(active) == sorted([queued.pk, running.pk, paused.pk, retrying.pk])
    assert active["count"] == 4
    assert active["statuses"] == ["queued", "running", "paused", "retrying"]
    assert done.pk not in ids_of(active) and theirs.pk not in ids_of(active)
    assert ids_of(bob.get("/api/jobs/active/").json()) == [theirs.pk]

    only_running = alice.get("/api/jobs/running/").json()
    assert ids_of(only_running) == [running.pk]
    assert only_running["statuses"] == ["running"]  # it says what it leaves out


def test_active_takes_kind_and_owner_and_refuses_anything_else(alice, staff, user):
    job = submit_demo(user, n=1)
    assert ids_of(staff.get("/api/jobs/active/?owner=alice").json()) == [job.pk]
    assert ids_of(staff.get("/api/jobs/active/?owner=operator").json()) == []
    assert ids_of(alice.get("/api/jobs/active/?kind=demo.count").json()) == [job.pk]
    assert ids_of(alice.get("/api/jobs/active/?kind=other").json()) == []
    refused = alice.get("/api/jobs/active/?status=queued")
    assert refused.status_code == 400 and "status" in refused.json()["fields"]
    assert alice.post("/api/jobs/active/").status_code == 405
