"""Django tasks at the edges, on a real qcluster (issue 22): a time limit, an exit, a
cancel or force stop, a killed worker. Each ends the task once, with a reason, and the
worker (or its replacement) runs the next task. Each task notes its runs in a file, so
a side effect repeated by a re-run shows."""

from __future__ import annotations

import psutil
import pytest
from django.test import Client

from jobs.engine.services import job_cancel
from jobs.models import Job
from jobs.tasks_backend import CANCELLED_EXCEPTION, enqueue_as
from jobs.tasks_compat import TaskResultStatus
from tests.jobs.factories import messages
from tests.plugin_app import tasks
from tests.support.processes import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.django_db(transaction=True)]

S = Job.Status
FAILED, SUCCESSFUL = TaskResultStatus.FAILED, TaskResultStatus.SUCCESSFUL
GRACE = {"CONVEYOR_CANCEL_GRACE_SECONDS": "1"}


def job_of(result) -> Job:
    return Job.objects.get(pk=int(result.id))


def ended(result, timeout: float = 30):
    """Wait for a task to finish; the result as it is then."""
    wait_for(
        lambda: result.refresh() or result.is_finished, timeout=timeout, what="the task to end"
    )
    return result


def runs(path) -> int:
    return path.read_text().count("ran") if path.exists() else 0


def running_on(result) -> str:
    """Wait for the task to be running (its run noted); the worker that runs it."""
    job = wait_for(
        lambda: (
            Job.objects.filter(pk=int(result.id), status=S.RUNNING).exclude(lease_owner="").first()
        ),
        timeout=30,
        what="the task to run",
    )
    return job.lease_owner


def pid_of(worker: str) -> int:
    return int(worker.rpartition(":")[2])


def assert_ended_once(job: Job, status: str) -> None:
    """One terminal event, no recovery, and no lease left for recovery to find."""
    ends = job.events.filter(kind="state", status=status).count()
    assert ends == 1, messages(job)
    assert not any(m.startswith("Recovered") for m in messages(job))
    assert job.lease_owner == "" and job.status == status


def next_task_runs_on_a_new_worker(old_worker: str) -> None:
    """The worker that was stopped is gone; its replacement runs the next task."""
    wait_for(lambda: not psutil.pid_exists(pid_of(old_worker)), timeout=10, what="the old worker")
    following = ended(tasks.add.enqueue(2, 3))
    assert (following.status, following.return_value) == (SUCCESSFUL, 5)
    assert following.worker_ids[0] != old_worker


def test_a_plain_task_past_its_time_limit_fails_once_naming_the_limit(cluster_factory, tmp_path):
    """Issue 22: it was SIGKILLed and re-run from scratch five times, then failed as
    "its worker died each time"."""
    cluster_factory(workers=1, **GRACE)
    path = tmp_path / "runs"
    result = tasks.note_then_sleep.using(queue_name="short").enqueue(str(path), 60)
    worker = running_on(result)
    ended(result)
    job = job_of(result)
    assert result.status == FAILED and runs(path) == 1 and result.attempts == 1
    assert "the limit is 2 s (the time_limit of queue 'short' in CONVEYOR_TASK_QUEUES)" in (
        job.error
    )
    assert "no checkpoint within 1 s (CONVEYOR_CANCEL_GRACE_SECONDS)" in job.error
    assert_ended_once(job, S.FAILED)
    next_task_runs_on_a_new_worker(worker)


def test_a_task_that_opted_into_retries_runs_again_after_its_time_limit(cluster_factory, tmp_path):
    cluster_factory(workers=1, **GRACE)
    path = tmp_path / "runs"
    result = tasks.note_then_sleep_retried.using(queue_name="short").enqueue(str(path), 60)
    ended(result, timeout=60)
    job = job_of(result)
    assert result.status == FAILED and runs(path) == 2 and result.attempts == 2
    assert "the limit is 2 s" in job.error
    assert any("restarting from the beginning in" in m for m in messages(job)), messages(job)


def test_system_exit_fails_the_task_once_and_its_worker_runs_the_next(cluster_factory, tmp_path):
    """Issue 22: SystemExit killed the worker, five times a run, then failed as a crash."""
    cluster = cluster_factory(workers=1)
    before = cluster.worker_pids()
    path = tmp_path / "runs"
    result = ended(tasks.note_then_exit.enqueue(str(path), 3))
    job = job_of(result)
    assert result.status == FAILED and runs(path) == 1 and result.attempts == 1
    assert result.errors[0].exception_class_path == "builtins.SystemExit"
    assert job.error.startswith("SystemExit: 3, raised by the job's code")
    assert_ended_once(job, S.FAILED)
    following = ended(tasks.add.enqueue(2, 3))
    assert following.status == SUCCESSFUL
    assert following.worker_ids == result.worker_ids, "the same worker ran the next task"
    assert cluster.worker_pids() == before


def test_a_force_stop_over_the_api_cancels_a_plain_task_once_and_replaces_its_worker(
    cluster_factory, tmp_path, user
):
    """Issue 22: cancel answered "Cancel requested" and the task ran on to SUCCESSFUL.
    The other worker's task is not disturbed, and the stopped worker's replacement
    runs the next task while the other worker is still busy."""
    cluster_factory(workers=2)
    stopped, other = tmp_path / "stopped", tmp_path / "other"
    with enqueue_as(user):
        result = tasks.note_and_wait_for.enqueue(str(stopped), str(tmp_path / "never"))
        busy = tasks.note_and_wait_for.enqueue(str(other), str(tmp_path / "flag"))
    worker = running_on(result)
    running_on(busy)
    client = Client()
    client.force_login(user)
    response = client.post(
        f"/api/jobs/{result.id}/cancel/", {"force": True}, content_type="application/json"
    )
    assert response.status_code == 200 and response.json()["requested"] == "force"
    ended(result)
    job = job_of(result)
    assert result.status == FAILED and result.errors[0].exception_class_path == (
        CANCELLED_EXCEPTION
    )
    assert runs(stopped) == 1
    assert "Force stop requested by alice" in messages(job)
    assert f"Cancelled by force stop: its worker {worker} was stopped" in job.message
    assert_ended_once(job, S.CANCELLED)
    next_task_runs_on_a_new_worker(worker)
    (tmp_path / "flag").touch()
    busy = ended(busy)
    assert (busy.status, busy.return_value, runs(other)) == (SUCCESSFUL, "flagged", 1)


def test_a_cancel_that_a_task_never_acts_on_becomes_a_force_stop_after_the_grace(
    cluster_factory, tmp_path, user
):
    cluster_factory(workers=1, **GRACE)
    path = tmp_path / "runs"
    with enqueue_as(user):
        result = tasks.note_and_wait_for.enqueue(str(path), str(tmp_path / "never"))
    worker = running_on(result)
    job_cancel(job=job_of(result), by=user)
    ended(result)
    job = job_of(result)
    assert result.status == FAILED and runs(path) == 1
    assert "Cancel requested by alice" in messages(job)
    assert job.message.startswith(
        "Cancelled by force: it reached no checkpoint within 1 s of the cancel "
        "(CONVEYOR_CANCEL_GRACE_SECONDS)"
    )
    assert_ended_once(job, S.CANCELLED)
    next_task_runs_on_a_new_worker(worker)


def test_a_task_whose_worker_dies_fails_instead_of_running_again(cluster_factory, tmp_path):
    """A task cannot resume: without retries it is not run a second time from scratch
    (issue 22: crash recovery re-ran it up to five times)."""
    cluster = cluster_factory(workers=1)
    path = tmp_path / "runs"
    result = tasks.note_and_wait_for.enqueue(str(path), str(tmp_path / "never"))
    worker = running_on(result)
    wait_for(lambda: runs(path) == 1, what="the run's note")
    cluster.kill_workers([pid_of(worker)])
    ended(result)
    job = job_of(result)
    assert result.status == FAILED and runs(path) == 1
    assert "is not run again from the beginning without retries" in job.error


def test_with_retries_a_task_whose_worker_dies_restarts_and_every_run_counts(
    cluster_factory, tmp_path
):
    cluster = cluster_factory(workers=1)
    path, flag = tmp_path / "runs", tmp_path / "flag"
    result = tasks.note_and_wait_for.using(queue_name="retried").enqueue(str(path), str(flag))
    first = running_on(result)
    wait_for(lambda: runs(path) == 1, what="the first run's note")
    cluster.kill_workers([pid_of(first)])
    wait_for(lambda: runs(path) == 2, timeout=30, what="the second run")
    flag.touch()
    ended(result)
    assert (result.status, result.return_value) == (SUCCESSFUL, "flagged")
    assert result.attempts == 2 and result.worker_ids[0] == first != result.worker_ids[1]
    restarts = [m for m in messages(job_of(result)) if m.startswith("Recovered")]
    assert len(restarts) == 1 and "restarting from the beginning" in restarts[0]
    assert "resuming from the last checkpoint" not in restarts[0]
