"""jobs/engine/runner.py, driven in-process (no cluster): a slice runs the kind's handler
and settles how it ended: success with the owner's notification, row errors that do
not stop the job, a permanent error with its traceback, transient errors retried with
growing backoff until the attempt limit, a job waiting for something outside it
(`Postponed`) and one pausing itself (`PauseJob`)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.engine.kinds import job_kind
from jobs.engine.runner import run_one_slice
from jobs.engine.services import job_resume
from jobs.models import Job, Notification
from jobs.public import JobContext, PauseJob, Postponed, job_submit
from tests.jobs.factories import fresh, run_to_end, submit_demo, unit_counts

pytestmark = pytest.mark.django_db(transaction=True)


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


def test_transient_errors_give_up_after_the_attempt_limit(user):
    job = submit_demo(user, n=2, transient_failures=99)
    job = run_to_end(job)
    assert job.status == Job.Status.FAILED
    assert job.error.startswith(f"Gave up after {job.max_attempts} attempts")
    assert "simulated transient failure" in job.error


# A kind whose handler waits for something outside it, then pauses itself, then ends:
# what a job waiting for its API, then reaching its budget, does.
@job_kind("test.waits_then_pauses")
def _waits_then_pauses(ctx: JobContext) -> dict:
    step = (ctx.cursor or {}).get("step", 0)
    ctx.commit(cursor={"step": step + 1}, processed=step + 1)
    if step == 0:
        raise Postponed(60, "waiting for the API at api.example: retrying at 14:02")
    if step == 1:
        raise PauseJob("the budget of 1,000 tokens is reached")
    return {"steps": step + 1}


def test_a_postponed_job_waits_without_a_worker_and_without_counting_an_attempt(user):
    job, _ = job_submit(kind="test.waits_then_pauses", params={}, owner=user)
    run_one_slice(job.pk)
    job = fresh(job)
    assert job.status == Job.Status.RETRYING and job.attempts == 0 and not job.lease_owner
    assert job.message == "waiting for the API at api.example: retrying at 14:02"
    assert job.run_after > timezone.now() + timedelta(seconds=50)
    assert job.processed == 1, "the work committed before the wait is kept"
    assert not Notification.objects.filter(user=user).exists(), "waiting is not news"


def test_a_job_that_pauses_itself_says_why_and_resumes_where_it_was(user):
    job, _ = job_submit(kind="test.waits_then_pauses", params={}, owner=user)
    job = run_to_end(job)
    assert job.status == Job.Status.PAUSED
    assert job.message == "the budget of 1,000 tokens is reached"
    assert job.events.filter(kind="state").last().message.startswith("Paused: the budget")
    note = Notification.objects.get(user=user)
    assert "paused: the budget of 1,000 tokens is reached" in note.message
    job_resume(job=job, by=user)
    job = run_to_end(fresh(job))
    assert job.status == Job.Status.SUCCEEDED and job.result == {"steps": 3}
