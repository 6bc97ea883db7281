"""jobs/engine/services.py, driven in-process (no cluster): submit (kinds, priorities,
entity and session keys), pause / resume / cancel of queued jobs, retry, delete, and
the reasons an action does not apply. How a slice runs: test_runner.py; running jobs
stopping at a checkpoint: test_context.py."""

from __future__ import annotations

import pytest
from django.db import transaction
from django_q.models import OrmQ

from jobs.engine.kinds import UnknownKind
from jobs.engine.runner import run_one_slice
from jobs.engine.services import (
    JobActionError,
    job_cancel,
    job_delete,
    job_pause,
    job_resume,
    job_retry,
    job_submit,
)
from jobs.models import Job, JobEvent, Notification, Worker
from tests.jobs.factories import fresh, messages, run_to_end, submit_demo, unit_counts

pytestmark = pytest.mark.django_db(transaction=True)


def test_submit_creates_a_queued_job_with_its_first_event(user):
    job = submit_demo(user, n=3, priority="high")
    assert job.status == Job.Status.QUEUED
    assert job.priority == 10 and job.priority_label == "high"
    assert messages(job) == ["Queued"]
    assert job.events.get().status == Job.Status.QUEUED


def test_submit_rejects_unknown_kinds_and_priorities(user):
    with pytest.raises(UnknownKind):
        job_submit(kind="no.such.kind", owner=user)
    with pytest.raises(ValueError, match="priority"):
        job_submit(kind="demo.count", owner=user, priority="urgent")
    assert not Job.objects.exists()


def test_submitting_with_an_active_entity_key_returns_the_same_job(user, other_user):
    first, created = job_submit(
        kind="demo.count", params={"n": 3}, owner=user, entity_key="sheet:1"
    )
    again, again_created = job_submit(
        kind="demo.count", params={"n": 3}, owner=user, entity_key="sheet:1"
    )
    assert created and again.pk == first.pk and not again_created
    # Another user's job with the same key is theirs, not a duplicate of mine.
    theirs = submit_demo(other_user, n=3, entity_key="sheet:1")
    assert theirs.pk != first.pk
    # Once the job is finished, the key is free again.
    run_to_end(first)
    assert submit_demo(user, n=3, entity_key="sheet:1").pk != first.pk


def test_session_key_finds_the_active_job(user):
    first = submit_demo(user, n=3, session_key="tab-42")
    assert submit_demo(user, n=3, session_key="tab-42").pk == first.pk


def test_queued_jobs_pause_resume_and_cancel_immediately(user):
    job = submit_demo(user, n=3)
    job_pause(job=job, by=user)
    assert fresh(job).status == Job.Status.PAUSED
    run_one_slice(job.pk)
    assert fresh(job).status == Job.Status.PAUSED, "a paused job is not claimed"
    job_resume(job=job, by=user)
    assert fresh(job).status == Job.Status.QUEUED
    job_cancel(job=job, by=user)
    job = fresh(job)
    assert job.status == Job.Status.CANCELLED and job.cancelled_at and job.finished_at
    run_one_slice(job.pk)
    assert fresh(job).status == Job.Status.CANCELLED, "cancelled jobs never run again"
    assert messages(job) == ["Queued", "Paused by alice", "Resumed by alice", "Cancelled by alice"]


def test_actions_that_do_not_apply_say_why(user):
    job = run_to_end(submit_demo(user, n=1))
    with pytest.raises(JobActionError, match="nothing to cancel"):
        job_cancel(job=job)
    with pytest.raises(JobActionError, match="only active jobs can be paused"):
        job_pause(job=job)
    with pytest.raises(JobActionError, match="only paused jobs can be resumed"):
        job_resume(job=job)
    active = submit_demo(user, n=1)
    with pytest.raises(JobActionError, match="only finished jobs can be retried"):
        job_retry(job=active)
    with pytest.raises(JobActionError, match="cancel it before deleting"):
        job_delete(job=active)


def test_retry_resumes_a_failed_job_from_its_checkpoint(user):
    job = run_to_end(submit_demo(user, n=20, delay=0.1, time_limit=0.5))
    assert job.status == Job.Status.FAILED
    done_before = job.processed
    assert 0 < done_before < 20
    used = job.run_seconds
    job_retry(job=job, by=user)
    job = fresh(job)
    assert job.status == Job.Status.QUEUED and job.error == ""
    # The running time goes on (rate and ETA stay true); the time limit counts afresh.
    assert job.run_seconds == used == job.run_seconds_at_retry
    Job.objects.filter(pk=job.pk).update(time_limit=None)
    job = run_to_end(job)
    assert job.status == Job.Status.SUCCEEDED
    assert unit_counts(job) == dict.fromkeys(range(20), 1), "resumed, nothing redone"


def test_retry_of_a_succeeded_job_runs_it_again_from_the_start(user):
    job = run_to_end(submit_demo(user, n=3))
    job_retry(job=job)
    job = run_to_end(fresh(job))
    assert job.status == Job.Status.SUCCEEDED and job.processed == 3
    assert unit_counts(job) == {0: 2, 1: 2, 2: 2}


def test_failed_rows_retry_needs_a_kind_that_supports_it(user):
    job = run_to_end(submit_demo(user, n=3, fail_units=[1]))
    with pytest.raises(JobActionError, match="cannot retry only failed rows"):
        job_retry(job=job, failed_rows=True)


def test_delete_removes_a_finished_job_with_its_events(user):
    job = run_to_end(submit_demo(user, n=2))
    job_delete(job=job)
    assert not Job.objects.filter(pk=job.pk).exists()
    assert not JobEvent.objects.filter(job_id=job.pk).exists()
    assert not Notification.objects.exists()


def test_a_job_submitted_while_a_worker_is_free_goes_straight_to_it(user):
    """The submit's own INSERT marks it dispatched and its task is sent with the
    commit; a second job, with that worker now taken, waits for dispatch."""
    Worker.objects.create(name="host:1", host="host", pid=1)
    first = submit_demo(user, n=1)
    second = submit_demo(user, n=1)
    assert fresh(first).dispatched_at is not None
    assert fresh(second).dispatched_at is None, "no free worker was left for it"
    assert OrmQ.objects.count() == 1, "one task, for the first job"


def test_a_capped_kinds_job_submitted_while_a_worker_is_free_is_dispatched_at_once(user):
    """It may not skip the queue (its cap is checked under the lock), but dispatch runs
    right after the submit: the job does not wait for a worker's heartbeat."""
    Worker.objects.create(name="host:1", host="host", pid=1)
    job = submit_demo(user, kind="demo.serial", n=1)
    assert fresh(job).dispatched_at is not None
    assert OrmQ.objects.count() == 1


def test_with_the_orm_broker_a_job_and_its_task_commit_together(user):
    Worker.objects.create(name="host:1", host="host", pid=1)
    with pytest.raises(RuntimeError), transaction.atomic():
        submit_demo(user, n=1)
        assert OrmQ.objects.count() == 1, "the task is written in the submit's transaction"
        raise RuntimeError("the caller's transaction fails after the submit")
    assert not Job.objects.exists() and not OrmQ.objects.exists(), "neither job nor task is left"


def test_a_new_job_does_not_overtake_runnable_jobs_already_waiting(user):
    waiting = submit_demo(user, n=1)  # no worker alive yet: it stays runnable
    Worker.objects.create(name="host:1", host="host", pid=1)
    newer = submit_demo(user, n=1)
    assert fresh(newer).dispatched_at is None
    assert fresh(waiting).dispatched_at is not None, "dispatch took the older job first"
