"""The service functions and the slice runner, driven in-process (no cluster):
transitions, events, notifications, unique keys, retries and time limits."""

from __future__ import annotations

import pytest
from django.utils import timezone

from jobs.engine.errors import backoff_seconds
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
from jobs.models import Job, JobEvent, Notification
from tests.jobs.factories import fresh, messages, submit_demo, unit_counts

pytestmark = pytest.mark.django_db(transaction=True)


def run_to_end(job: Job, max_slices: int = 50) -> Job:
    """Run slices in this process until the job leaves the runnable states."""
    for _ in range(max_slices):
        Job.objects.filter(pk=job.pk).update(run_after=None)
        run_one_slice(job.pk)
        job = fresh(job)
        if job.status not in (Job.Status.QUEUED, Job.Status.RUNNING, Job.Status.RETRYING):
            return job
    raise AssertionError(f"job still {job.status} after {max_slices} slices")


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


def test_a_slice_runs_the_handler_and_success_notifies_the_owner(user):
    job = run_to_end(submit_demo(user, n=5, batch=2))
    assert job.status == Job.Status.SUCCEEDED
    assert (job.processed, job.total, job.failed) == (5, 5, 0)
    assert job.result == {"counted": 5, "failed_units": 0}
    assert job.finished_at and job.started_at and not job.lease_owner
    assert unit_counts(job) == dict.fromkeys(range(5), 1)
    note = Notification.objects.get(user=user)
    assert note.level == "success" and note.job_id == job.pk and note.read_at is None
    states = list(job.events.filter(kind="state").values_list("status", flat=True))
    assert states == ["queued", "running", "succeeded"]


def test_row_errors_do_not_stop_the_job(user):
    job = run_to_end(submit_demo(user, n=6, fail_units=[1, 4]))
    assert job.status == Job.Status.SUCCEEDED
    assert job.failed == 2 and job.processed == 6
    assert job.message == "Succeeded with 2 row errors"
    assert Notification.objects.get(user=user).level == "error"


def test_permanent_error_fails_with_message_and_traceback(user):
    job = run_to_end(submit_demo(user, n=5, fail_at=2))
    assert job.status == Job.Status.FAILED
    assert job.error == "unit 2 is broken (fail_at)"
    assert "PermanentError" in job.traceback and "jobs/kinds.py" in job.traceback
    assert job.processed == 2, "work before the failure is kept"
    note = Notification.objects.get(user=user)
    assert note.level == "error" and "unit 2 is broken" in note.message


def test_transient_errors_wait_with_growing_backoff_then_succeed(user):
    job = submit_demo(user, n=2, transient_failures=3)
    delays = []
    for _ in range(3):
        Job.objects.filter(pk=job.pk).update(run_after=None)  # the backoff has passed
        run_one_slice(job.pk)
        job = fresh(job)
        assert job.status == Job.Status.RETRYING
        assert job.run_after > timezone.now()
        delays.append(job.events.filter(data__delay__isnull=False).last().data["delay"])
    assert delays == sorted(delays) and delays[-1] > delays[0]
    job = run_to_end(job)
    assert job.status == Job.Status.SUCCEEDED and job.attempts == 0


def test_backoff_grows_exponentially_with_jitter_and_a_ceiling(settings):
    settings.CONVEYOR_RETRY_BASE_SECONDS = 1.0
    settings.CONVEYOR_RETRY_MAX_SECONDS = 10.0
    for attempt, ceiling in [(1, 1), (2, 2), (3, 4), (4, 8), (9, 10)]:
        samples = [backoff_seconds(attempt) for _ in range(50)]
        assert all(ceiling / 2 <= s <= ceiling for s in samples)


def test_transient_errors_give_up_after_the_attempt_limit(user):
    job = submit_demo(user, n=2, transient_failures=99)
    job = run_to_end(job)
    assert job.status == Job.Status.FAILED
    assert job.error.startswith(f"Gave up after {job.max_attempts} attempts")
    assert "simulated transient failure" in job.error


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
    job_retry(job=job, by=user)
    job = fresh(job)
    assert job.status == Job.Status.QUEUED and job.error == "" and job.run_seconds == 0
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


def test_jobs_are_visible_to_their_owner_and_staff_only(user, other_user, staff_user):
    mine = submit_demo(user, n=1)
    theirs = submit_demo(other_user, n=1)
    assert list(Job.objects.visible_to(user)) == [mine]
    assert set(Job.objects.visible_to(staff_user)) == {mine, theirs}
    from django.contrib.auth.models import AnonymousUser

    assert not Job.objects.visible_to(AnonymousUser()).exists()
