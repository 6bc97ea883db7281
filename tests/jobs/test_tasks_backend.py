"""Django Tasks on Conveyor (`jobs.tasks_backend.ConveyorBackend`): the backend contract
of the Tasks API (what Django's own backend tests check), how a task maps onto a job,
and real clusters running tasks: results, failures, priority, `run_after`, live progress
and cancel over the websocket, and results read from another process."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
from datetime import timedelta

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction
from django.test import Client
from django.utils import timezone

from jobs.engine.kinds import get_kind
from jobs.engine.runner import run_one_slice
from jobs.engine.services import job_cancel, job_pause, job_resume, job_submit
from jobs.engine.worker import worker_name
from jobs.models import Job, Priority
from jobs.tasks_backend import (
    CANCELLED_EXCEPTION,
    ConveyorBackend,
    InvalidTaskArguments,
    conveyor_priority,
    enqueue_as,
    exception_path,
)
from jobs.tasks_compat import (
    InvalidTask,
    TaskResultDoesNotExist,
    TaskResultStatus,
    default_task_backend,
    task,
    task_backends,
    task_enqueued,
    task_finished,
    task_started,
)
from jobs.web import live
from tests.conftest import subprocess_env
from tests.jobs.web.test_live import connect, receive_until
from tests.plugin_app import tasks
from tests.support.processes import ROOT, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

READY, RUNNING = TaskResultStatus.READY, TaskResultStatus.RUNNING
SUCCESSFUL, FAILED = TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED


def job_of(result) -> Job:
    return Job.objects.get(pk=int(result.id))


def run(result) -> None:
    """Run the task's job here, as a worker would (one slice: a task is never sliced)."""
    run_one_slice(int(result.id))
    result.refresh()


# -- the backend contract (as Django's tests check its own backends) ------------------------


def test_the_default_backend_is_conveyors_and_supports_the_whole_api():
    backend = task_backends["default"]
    assert isinstance(backend, ConveyorBackend) and backend.alias == "default"
    assert default_task_backend.alias == "default"
    assert backend.supports_defer and backend.supports_priority
    assert backend.supports_get_result and backend.supports_async_task
    assert backend.queues == {"default", "serial", "short", "retried"}
    assert list(backend.check()) == []


def test_enqueue_returns_a_ready_result_that_get_result_reads_back():
    for function in (tasks.echo, tasks.async_add):
        result = function.enqueue(1, two=3) if function is tasks.echo else function.enqueue(1, 3)
        assert result.id and result.status == READY and not result.is_finished
        assert result.task == function and result.backend == "default"
        assert result.started_at is result.finished_at is result.last_attempted_at is None
        assert result.enqueued_at is not None and result.attempts == 0 and result.errors == []
        with pytest.raises(ValueError, match="Task has not finished yet"):
            result.return_value  # noqa: B018
        assert default_task_backend.get_result(result.id) == result
        assert function.get_result(result.id) == result
    assert result.args == [1, 3] and result.kwargs == {}


def test_unknown_results_do_not_exist():
    not_a_task, _ = job_submit(kind="demo.count", params={"n": 1})
    for result_id in ("999999", "abc", "", str(not_a_task.pk)):
        with pytest.raises(TaskResultDoesNotExist):
            default_task_backend.get_result(result_id)


@pytest.mark.asyncio
async def test_aenqueue_aget_result_and_arefresh():
    result = await tasks.add.aenqueue(2, 3)
    assert result.status == READY
    assert await default_task_backend.aget_result(result.id) == result
    await sync_to_async(run_one_slice)(int(result.id))
    await result.arefresh()
    assert result.status == SUCCESSFUL and result.return_value == 5


def test_validate_task_refuses_what_the_backend_cannot_run():
    with pytest.raises(InvalidTask, match="Queue 'elsewhere' is not valid"):
        tasks.add.using(queue_name="elsewhere")
    with pytest.raises(InvalidTask, match="whole number between -100 and 100"):
        tasks.add.using(priority=101)
    with pytest.raises(InvalidTask, match="aware datetime"):
        tasks.add.using(run_after=timezone.now().replace(tzinfo=None))
    with pytest.raises(InvalidTask, match="first argument of 'context'"):
        task(takes_context=True)(tasks.not_a_task)
    with pytest.raises(InvalidTask, match="module level"):
        task(lambda: None)
    assert not Job.objects.exists()


def test_arguments_that_are_not_json_are_refused_at_enqueue():
    refused = [((object(),), {}), (({1, 2},), {}), ((), {"n": math.nan}), (({1: "a"},), {})]
    for args, kwargs in refused:
        with pytest.raises(InvalidTask, match="must be JSON"):
            tasks.echo.enqueue(*args, **kwargs)
        with pytest.raises(TypeError):  # what Django's own backends raise
            tasks.echo.enqueue(*args, **kwargs)
    assert issubclass(InvalidTaskArguments, InvalidTask)
    assert not Job.objects.exists()
    result = tasks.echo.enqueue((1, 2), b"bytes", when={"nested": [None, True, 1.5]})
    assert result.args == [[1, 2], "bytes"] and result.kwargs == {
        "when": {"nested": [None, True, 1.5]}
    }


def test_only_functions_decorated_with_task_are_run_by_path():
    with pytest.raises(InvalidTask, match="not_a_task is not a task"):
        task(tasks.not_a_task).enqueue()  # its path names the plain function
    job, _ = job_submit(kind="tasks.default", params={"task": "tests.plugin_app.tasks.not_a_task"})
    run_one_slice(job.pk)
    job.refresh_from_db()
    assert job.status == "failed" and "is not a task: decorate it with @task" in job.error
    with pytest.raises(InvalidTask, match="is not a task"):
        default_task_backend.get_result(str(job.pk))


def test_enqueue_sends_task_enqueued():
    seen = []

    def receiver(sender, task_result, **kwargs):
        seen.append((sender, task_result.id))

    task_enqueued.connect(receiver)
    try:
        result = tasks.add.enqueue(1, 2)
    finally:
        task_enqueued.disconnect(receiver)
    assert seen == [(ConveyorBackend, result.id)]


# -- how a task maps onto a job ---------------------------------------------------------------


def test_a_task_is_a_job_of_its_queues_kind_labelled_with_its_path():
    run_after = timezone.now() + timedelta(hours=1)
    result = tasks.add.using(priority=100, run_after=run_after).enqueue(1, b=2)
    job = job_of(result)
    assert (job.kind, job.label, job.status, job.owner) == (
        "tasks.default",
        "tests.plugin_app.tasks.add",
        "queued",
        None,
    )
    assert job.priority == 100 and job.run_after == run_after
    assert job.params == {
        "task": "tests.plugin_app.tasks.add",
        "args": [1],
        "kwargs": {"b": 2},
        "priority": 100,
        "backend": "default",
        "run_after": run_after.isoformat(),
    }
    assert not Job.objects.claimable().filter(pk=job.pk).exists(), "not before run_after"
    assert default_task_backend.get_result(result.id).task.run_after == run_after


def test_priorities_keep_djangos_whole_order():
    """Django's -100..100 is the job's priority as it is: 0, 1 and 4 no longer tie, -4
    is below normal (issue 22: they collapsed to tenths)."""
    given = [0, 1, 4, -4, -5, 100, -100, 99]
    assert [conveyor_priority(p) for p in given] == given
    results = [tasks.add.using(priority=p).enqueue(1, 1) for p in given]
    assert [job_of(r).priority for r in results] == given
    assert job_of(results[3]).priority < Priority.NORMAL < job_of(results[1]).priority
    order = Job.objects.filter(pk__in=[int(r.id) for r in results]).order_by("-priority", "pk")
    assert list(order.values_list("priority", flat=True)) == sorted(given, reverse=True)


def test_enqueue_as_makes_the_job_the_users(user):
    with enqueue_as(user):
        mine = tasks.add.enqueue(1, 1)
    assert job_of(mine).owner == user and job_of(tasks.add.enqueue(1, 1)).owner is None


def test_a_task_enqueued_in_a_rolled_back_transaction_never_exists():
    with pytest.raises(RuntimeError), transaction.atomic():
        tasks.add.enqueue(1, 1)
        raise RuntimeError("roll back")
    assert not Job.objects.exists()


def test_enqueue_many_submits_every_call_in_one_transaction(django_assert_max_num_queries):
    with django_assert_max_num_queries(12):  # the INSERTs and the dispatch look after commit
        results = default_task_backend.enqueue_many(tasks.add, [((i, i), {}) for i in range(50)])
    assert [r.args for r in results] == [[i, i] for i in range(50)]
    assert Job.objects.filter(kind="tasks.default").count() == 50


def test_exception_paths_are_read_from_tracebacks():
    tb = 'Traceback (most recent call last):\n  File "x.py", line 1, in f\n    g()\n'
    assert exception_path(tb + "ValueError: bad\nvalue") == "builtins.ValueError"
    assert exception_path(tb + "a.b.Boom: x: y") == "a.b.Boom"
    chained = (
        tb
        + "KeyError: 1\n\nDuring handling of the above exception, another exception occurred:\n\n"
    )
    assert exception_path(chained + tb + "a.Second") == "a.Second"
    assert exception_path("no traceback at all") is None


# -- running tasks in this process (what a worker does) --------------------------------------


def test_a_plain_task_runs_and_its_result_says_so():
    result = tasks.echo.enqueue("a", n=1)
    run(result)
    assert result.status == SUCCESSFUL and result.is_finished
    assert result.return_value == {"args": ["a"], "kwargs": {"n": 1}}
    assert result.worker_ids == [worker_name()] and result.attempts == 1
    assert result.started_at <= result.last_attempted_at <= result.finished_at


def test_an_async_task_runs_with_asyncio():
    result = tasks.async_add.enqueue(20, 22)
    run(result)
    assert (result.status, result.return_value) == (SUCCESSFUL, 42)


def test_a_failing_task_fails_with_its_exception_class_and_traceback():
    result = tasks.explode.enqueue("boom")
    run(result)
    assert result.status == FAILED
    with pytest.raises(ValueError, match="Task failed"):
        result.return_value  # noqa: B018
    [error] = result.errors
    assert error.exception_class is tasks.TaskBoom
    assert (
        "tests.plugin_app.tasks.TaskBoom: boom" in error.traceback
        and "in explode" in error.traceback
    )
    assert job_of(result).error == "TaskBoom: boom"


def test_a_result_that_is_not_json_fails_the_task():
    result = tasks.not_json.enqueue()
    run(result)
    assert result.status == FAILED and result.errors[0].exception_class is TypeError


@pytest.mark.parametrize(
    ("enqueue", "path", "error"),
    [
        (lambda p: tasks.note_then_exit.enqueue(p, 3), "builtins.SystemExit", "SystemExit: 3"),
        (
            lambda p: tasks.raise_base_exception.enqueue("KeyboardInterrupt"),
            "builtins.KeyboardInterrupt",
            "KeyboardInterrupt",
        ),
        (
            lambda p: tasks.raise_base_exception.enqueue("GeneratorExit"),
            "builtins.GeneratorExit",
            "GeneratorExit",
        ),
        (
            lambda p: tasks.raise_base_exception.enqueue("CancelledError"),
            "asyncio.exceptions.CancelledError",
            "CancelledError",
        ),
    ],
)
def test_a_task_raising_a_base_exception_fails_once_and_this_process_goes_on(
    tmp_path, enqueue, path, error
):
    """SystemExit and friends end the job, not the process running it (issue 22: the
    worker died, five times a run)."""
    result = enqueue(str(tmp_path / "runs"))
    run(result)
    assert result.status == FAILED and result.attempts == 1
    [failure] = result.errors
    assert failure.exception_class_path == path
    job = job_of(result)
    assert (
        job.error
        == f"{error}, raised by the job's code: it ends the job, not the worker that runs it."
    )
    assert (job.lease_owner, job.attempts) == ("", 0)


def test_a_real_ctrl_c_still_stops_a_process_that_runs_a_task():
    """Only a KeyboardInterrupt that the code raised fails the job: one that a real SIGINT
    raised (a process running tasks in a terminal) stops the process, as asked."""
    result = tasks.interrupt_own_process.enqueue()
    ignored = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    try:
        with pytest.raises(KeyboardInterrupt):
            run_one_slice(int(result.id))
    finally:
        signal.signal(signal.SIGINT, ignored)
    assert job_of(result).status == "running", "left to recovery, as a killed worker's"


def test_a_transient_error_fails_a_task_that_did_not_opt_into_retries(tmp_path):
    """Django's Tasks API promises no retries (issue 22: a ConnectionError ran the task
    again without asking)."""
    result = tasks.fail_once_with_connection_error.enqueue(str(tmp_path / "runs"))
    run(result)
    assert result.status == FAILED and result.attempts == 1
    assert result.errors[0].exception_class_path == "builtins.ConnectionError"
    assert job_of(result).error == "ConnectionError: the first run fails"
    assert (tmp_path / "runs").read_text() == "ran\n"


@pytest.mark.parametrize("opted_in", ["queue", "task"])
def test_a_task_that_opted_into_retries_succeeds_without_its_old_error(tmp_path, user, opted_in):
    path = str(tmp_path / "runs")
    with enqueue_as(user):
        if opted_in == "queue":  # CONVEYOR_TASK_QUEUES: "retried": {"retries": 2}
            result = tasks.fail_once_with_connection_error.using(queue_name="retried").enqueue(path)
        else:  # @retries(2)
            result = tasks.fail_once_with_connection_error_retried.enqueue(path)
    assert job_of(result).max_attempts == 3
    run(result)
    job = job_of(result)
    assert (result.status, job.status) == (READY, "retrying")
    assert "Transient error: ConnectionError: the first run fails; restarting from the " in (
        job.message + " ".join(job.events.values_list("message", flat=True))
    )
    Job.objects.filter(pk=job.pk).update(run_after=None)
    run(result)
    assert (result.status, result.return_value, result.errors) == (SUCCESSFUL, "second run", [])
    assert result.attempts == 2 and len(result.worker_ids) == 2
    assert job_of(result).error == job_of(result).traceback == ""
    client = Client()
    client.force_login(user)
    assert client.get(f"/api/jobs/{result.id}/").json()["error"] == ""


def test_task_started_and_task_finished_are_sent(tmp_path):
    seen, details = [], []

    def started(sender, task_result, **kwargs):
        seen.append(("started", sender, task_result.id, task_result.status))
        details.append((task_result.worker_ids, task_result.finished_at, task_result.errors))

    def finished(sender, task_result, **kwargs):
        seen.append(("finished", sender, task_result.id, task_result.status))
        details.append((task_result.worker_ids, task_result.finished_at, task_result.errors))

    task_started.connect(started)
    task_finished.connect(finished)
    try:
        ok, failing = tasks.add.enqueue(1, 2), tasks.explode.enqueue("boom")
        run(ok)
        run(failing)
    finally:
        task_started.disconnect(started)
        task_finished.disconnect(finished)
    assert seen == [
        ("started", ConveyorBackend, ok.id, RUNNING),
        ("finished", ConveyorBackend, ok.id, SUCCESSFUL),
        ("started", ConveyorBackend, failing.id, RUNNING),
        ("finished", ConveyorBackend, failing.id, FAILED),
    ]
    assert all(workers == [worker_name()] for workers, _, _ in details)
    assert [(at is not None, bool(errors)) for _, at, errors in details] == [
        (False, False), (True, False), (False, False), (True, True),
    ]  # fmt: skip
    assert details[3][2][0].exception_class is tasks.TaskBoom


def test_a_receivers_error_is_logged_not_the_tasks_outcome(caplog):
    def broken(sender, task_result, **kwargs):
        raise RuntimeError("receiver bug")

    task_finished.connect(broken)
    try:
        result = tasks.add.enqueue(1, 2)
        run(result)
    finally:
        task_finished.disconnect(broken)
    assert result.status == SUCCESSFUL and "receiver bug" in caplog.text


def test_a_tasks_time_limit_is_its_queues_or_conveyor_task_timeout():
    default, short = get_kind("tasks.default"), get_kind("tasks.short")
    assert default.time_limit == settings.CONVEYOR_TASK_TIMEOUT
    assert default.time_limit_setting == "CONVEYOR_TASK_TIMEOUT"
    assert (default.max_attempts, short.time_limit) == (1, 2)
    assert job_of(tasks.add.enqueue(1, 1)).time_limit == settings.CONVEYOR_TASK_TIMEOUT
    assert job_of(tasks.add.using(queue_name="short").enqueue(1, 1)).time_limit == 2


def test_a_context_task_past_its_time_limit_fails_once_naming_the_limit_and_setting():
    result = tasks.count_slowly.using(queue_name="short").enqueue(200, delay=0.02)
    run(result)
    job = job_of(result)
    assert result.status == FAILED and result.attempts == 1 and 0 < job.processed < 200
    assert job.error.startswith("Time limit exceeded: ran 2.")
    assert job.error.endswith(
        "the limit is 2 s (the time_limit of queue 'short' in CONVEYOR_TASK_QUEUES)."
    )


def test_a_context_task_reports_progress_and_sees_its_attempt():
    result = tasks.count_slowly.enqueue(5)
    run(result)
    job = job_of(result)
    assert (job.processed, job.total, job.message) == (5, 5, "Succeeded")
    assert result.return_value == {"counted": 5, "attempt": 1, "id": result.id}
    async_result = tasks.async_count.enqueue(3)
    run(async_result)
    assert async_result.return_value == 3 and job_of(async_result).processed == 3


def test_a_paused_context_task_runs_afresh_when_resumed():
    result = tasks.count_slowly.enqueue(3)
    job = job_of(result)
    job_pause(job=job)  # not running yet: paused at once
    result.refresh()
    assert result.status == READY
    job_resume(job=job)
    run(result)
    assert result.status == SUCCESSFUL and result.return_value["attempt"] == 1


def test_a_cancelled_task_is_failed_with_cancelled():
    result = tasks.add.enqueue(1, 1)
    job_cancel(job=job_of(result))
    result.refresh()
    assert result.status == FAILED and result.finished_at is not None
    assert result.errors[0].exception_class_path == CANCELLED_EXCEPTION


def test_tasks_show_where_jobs_do(user, staff_user):
    with enqueue_as(user):
        result = tasks.add.enqueue(1, 2)
    run(result)
    client = Client()
    client.force_login(user)
    for path in ("/jobs/", f"/jobs/{result.id}/", f"/api/jobs/{result.id}/"):
        page = client.get(path)
        assert page.status_code == 200 and "tests.plugin_app.tasks.add" in page.content.decode()
    assert user.job_notifications.get(job_id=result.id).message.startswith(
        "tests.plugin_app.tasks.add finished"
    )
    client.force_login(staff_user)
    listed = client.get("/admin/jobs/job/?q=plugin_app.tasks.add").content.decode()
    assert f'href="/admin/jobs/job/{result.id}/change/' in listed
    assert "tests.plugin_app.tasks.add" in client.get("/jobs/?all=1").content.decode()
    metrics = client.get("/metrics/prometheus").content.decode()
    assert 'conveyor_jobs{kind="tasks.default",status="succeeded"} 1.0' in metrics


# -- real clusters ----------------------------------------------------------------------------


def finished(*results) -> bool:
    for result in results:
        result.refresh()
    return all(result.is_finished for result in results)


@pytest.mark.cluster
def test_a_cluster_runs_200_tasks_to_their_return_values(cluster):
    results = [tasks.add.enqueue(i, i) for i in range(200)]
    ids = [int(result.id) for result in results]
    done = Job.objects.filter(pk__in=ids, status__in=Job.TERMINAL)
    wait_for(lambda: done.count() == 200, timeout=180, interval=0.2, what="200 task jobs to end")
    for number, result in enumerate(results):
        result.refresh()
        assert (result.status, result.return_value, result.attempts) == (SUCCESSFUL, 2 * number, 1)
    workers = {worker for result in results for worker in result.worker_ids}
    assert workers <= {f"{w.host}:{w.pid}" for w in cluster_workers(cluster)}


def cluster_workers(cluster):
    from jobs.models import Worker

    return Worker.objects.filter(pid__in=cluster.worker_pids())


@pytest.mark.cluster
def test_a_failing_task_fails_with_its_exception_and_a_bulk_retry_in_the_admin_mends_it(
    cluster, staff_user, tmp_path
):
    failing = tasks.explode.enqueue("boom")
    mendable = tasks.fail_unless_exists.enqueue(str(tmp_path / "flag"))
    wait_for(lambda: finished(failing, mendable), timeout=60, what="both tasks to fail")
    assert failing.status == mendable.status == FAILED
    [error] = failing.errors
    assert error.exception_class is tasks.TaskBoom and "in explode" in error.traceback
    assert error.traceback.rstrip().endswith("tests.plugin_app.tasks.TaskBoom: boom")

    (tmp_path / "flag").touch()
    client = Client()
    client.force_login(staff_user)
    client.post("/admin/jobs/job/", {"action": "retry_jobs", "_selected_action": [mendable.id]})
    wait_for(lambda: finished(mendable), timeout=60, what="the retried task to end")
    assert (mendable.status, mendable.return_value, mendable.errors) == (SUCCESSFUL, "found", [])
    assert mendable.attempts == 2, "two runs: the failed one and the retry"


@pytest.mark.cluster
def test_with_one_worker_a_later_higher_priority_task_starts_before_earlier_ones(
    cluster_factory,
):
    cluster = cluster_factory(workers=1, start=False)
    low = [tasks.add.using(priority=-50).enqueue(n, n) for n in range(4)]
    normal = tasks.add.enqueue(0, 0)
    high = tasks.add.using(priority=90).enqueue(1, 1)
    cluster.start()
    results = [*low, normal, high]
    wait_for(lambda: finished(*results), timeout=60, what="the tasks to end")
    ids = [int(result.id) for result in results]
    started = Job.objects.filter(pk__in=ids).order_by("started_at", "id")
    expected = [int(result.id) for result in (high, normal, *low)]
    assert list(started.values_list("pk", flat=True)) == expected


@pytest.mark.cluster
def test_with_one_worker_tasks_start_in_djangos_whole_priority_order(cluster_factory):
    """0, 1 and 4 are three priorities, -4 is below normal (issue 22: they tied)."""
    cluster = cluster_factory(workers=1, start=False)
    results = [tasks.add.using(priority=p).enqueue(p, 0) for p in (0, 1, -4, 4, -5)]
    cluster.start()
    wait_for(lambda: finished(*results), timeout=60, what="the tasks to end")
    ids = [int(result.id) for result in results]
    started = Job.objects.filter(pk__in=ids).order_by("started_at", "id")
    assert list(started.values_list("priority", flat=True)) == [4, 1, 0, -4, -5]


@pytest.mark.cluster
def test_a_queues_cap_holds_across_workers(cluster):
    results = [tasks.nap.using(queue_name="serial").enqueue(0.3) for _ in range(3)]
    assert {job_of(result).kind for result in results} == {"tasks.serial"}
    wait_for(lambda: finished(*results), timeout=60, what="the serial tasks to end")
    assert {result.status for result in results} == {SUCCESSFUL}
    spans = sorted((result.started_at, result.finished_at) for result in results)
    for (_, end), (next_start, _) in zip(spans, spans[1:], strict=False):
        assert end <= next_start, "the serial queue ran two tasks at once on two workers"


@pytest.mark.cluster
def test_a_task_does_not_start_before_its_run_after(cluster):
    run_after = timezone.now() + timedelta(seconds=3)
    later = tasks.add.using(run_after=run_after).enqueue(2, 2)
    sooner = tasks.add.enqueue(1, 1)
    wait_for(lambda: finished(sooner), timeout=30, what="the task without run_after to end")
    wait_for(lambda: finished(later), timeout=30, what="the deferred task to end")
    assert (later.status, later.return_value) == (SUCCESSFUL, 4)
    assert later.started_at >= run_after > sooner.started_at


@pytest.mark.cluster
def test_results_are_read_back_from_another_process(cluster):
    results = [tasks.echo.enqueue(1, x="y"), tasks.explode.enqueue("far away")]
    wait_for(lambda: finished(*results), timeout=60, what="the tasks to end")
    script = (
        "import json; from jobs.tasks_compat import default_task_backend as backend; "
        f"results = [backend.get_result(i) for i in {[r.id for r in results]!r}]; "
        "print(json.dumps([[r.status, r.return_value if r.status == 'SUCCESSFUL' else None, "
        "[e.exception_class_path for e in r.errors], r.attempts, r.task.module_path] "
        "for r in results]))"
    )
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert json.loads(out.strip().splitlines()[-1]) == [
        ["SUCCESSFUL", {"args": [1], "kwargs": {"x": "y"}}, [], 1, "tests.plugin_app.tasks.echo"],
        ["FAILED", None, ["tests.plugin_app.tasks.TaskBoom"], 1, "tests.plugin_app.tasks.explode"],
    ]


@pytest_asyncio.fixture
async def relay():
    yield live.relay
    await live.relay.stop()


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_a_context_tasks_progress_is_live_on_its_page_and_cancel_stops_it(
    cluster, relay, user
):
    with enqueue_as(user):
        result = await tasks.count_slowly.aenqueue(400, delay=0.05)
    communicator = await connect(user, f"?job={result.id}")
    frame = await receive_until(communicator, "Counted ", timeout=30)
    assert f'id="job-{result.id}-live"' in frame and 'data-status="running"' in frame
    assert "/ 400" in frame, "the bar has its scale"
    job = await sync_to_async(job_of)(result)
    await sync_to_async(job_cancel)(job=job, by=user)
    await receive_until(communicator, 'data-status="cancelled"', timeout=30)
    await communicator.disconnect()
    await result.arefresh()
    assert result.status == FAILED and result.errors[0].exception_class_path == CANCELLED_EXCEPTION
    job = await sync_to_async(job_of)(result)
    assert job.status == "cancelled" and 0 < job.processed < 400
