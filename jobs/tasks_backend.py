"""Django Tasks on Conveyor: with `TASKS = {"default": {"BACKEND":
"jobs.tasks_backend.ConveyorBackend"}}` any Django code's `@task` function runs as a
Conveyor job, seen, controlled and retried wherever jobs are (pages, API, CLI, admin).

How the Tasks API maps onto jobs:

- `enqueue` submits one job in one transaction (`services.job_submit`): its label is the
  task's dotted path, its params `{"task", "args", "kwargs", "priority", "backend"}`.
  Arguments must survive a JSON round trip, else `InvalidTaskArguments` (an
  `InvalidTask` and a `TypeError`, what Django's own backends raise). Inside a
  `transaction.atomic()` block the job commits, and is dispatched, with the caller's
  writes, or not at all. `enqueue_many` submits many calls of a task in one transaction.
- Queues: the job's kind is `tasks.<queue_name>`, one kind per queue of
  CONVEYOR_TASK_QUEUES (`{"name": {"cap": N, "time_limit": S, "retries": N}}`, each
  optional; a bare number is the cap), registered at start-up in every process
  (`JobsConfig.ready`). Dispatch caps concurrency per kind, so a queue's cap is its
  kind's `concurrency`. A kind per task path (what the issue first asked) would cap
  each task on its own instead of the queue; the path is the label instead, so the
  dashboard, the admin (searchable) and notifications name the task.
- Priority: Django's -100..100 is the job's priority as it is, so Django's whole order
  holds (higher first; Conveyor's high is 10, normal 0, low -10). Equal priorities run
  by owners' turns, then age. An owned task above 0 counts against the owner's
  CONVEYOR_MAX_HIGH_PRIORITY_JOBS like any job (beyond it: run at 0).
- `run_after` is the job's `run_after`: not claimable before then; a worker's heartbeat
  dispatches it within a few seconds of being due.
- Owner: none (a system job), unless enqueued inside `with enqueue_as(user):` (a
  context variable, so `aenqueue` and nested calls see it too): the job is then that
  user's, on their dashboard, with their notifications and their active-jobs limit.
- `get_result` reads the job: queued, retry-waiting and paused are READY, running is
  RUNNING, succeeded is SUCCESSFUL (`return_value` is the job's JSON result), failed and
  cancelled are FAILED with the job's error and traceback (the exception class is read
  from the traceback; a cancelled job's is `jobs.engine.errors.Cancelled`).
  `worker_ids` are the workers that started it, from its timeline.
- A task with `takes_context=True` gets a `ConveyorTaskContext`: Django's context plus
  the job's `progress(done, total, message)`, `checkpoint()`, `should_stop()` and
  `log()` (and `aprogress()`/`acheckpoint()` for async functions), so its page shows a
  live bar and pause and cancel stop it at its next checkpoint. The function cannot
  resume halfway, so its kind is not resumable: it is never cut into slices or
  preempted, and every run (after a pause, a retry or a lost worker) starts it afresh.
- Async functions run with asyncio in the worker (`Task.call`).
- Runs once, as Django promises: no automatic retries, unless the queue (`retries` in
  CONVEYOR_TASK_QUEUES) or the task (`@retries(n)` under `@task`) opts in; then
  transient errors (`jobs.engine.errors.is_transient`), its time limit and a lost
  worker start it again from the beginning, with backoff, up to n more times. Without
  retries a lost worker (killed, machine gone) fails it ("its run ended without an
  outcome") rather than running it a second time.
- Time limit: CONVEYOR_TASK_TIMEOUT seconds of running time, or its queue's
  `time_limit`. A task past it fails with an error that names the limit and the
  setting; one that reaches no checkpoint (any plain task) gets
  CONVEYOR_CANCEL_GRACE_SECONDS more, then its worker is stopped and replaced.
- Cancel: a task that takes a context stops at its next checkpoint; one that reaches
  none within CONVEYOR_CANCEL_GRACE_SECONDS (any plain task) is force-stopped (its
  worker is replaced); a force stop does that at once. Either way it ends FAILED with
  `jobs.engine.errors.Cancelled`.
- Anything the function raises fails the task, `SystemExit` and `KeyboardInterrupt`
  included (Django's immediate backend re-raises KeyboardInterrupt; here only a real
  Ctrl-C of a process running tasks in the foreground is re-raised): the worker goes on.
- Signals: `task_enqueued`, `task_started` (in the worker, before the function runs)
  and `task_finished` (after the outcome is committed: by the worker, by a force stop
  or by recovery). A receiver's error is logged, not raised.
- `errors`: the error of the run that failed the task (a succeeded one has none; the
  errors of earlier, retried runs are on the job's timeline). `attempts` and
  `worker_ids` count every run, retries and restarts after a lost worker included.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core import checks
from django.db import connection
from django.utils.dateparse import parse_datetime
from django.utils.module_loading import import_string

from jobs.engine import secrets
from jobs.engine.errors import UnknownKind
from jobs.engine.kinds import get_kind, job_kind
from jobs.engine.services import Submission, job_submit, job_submit_many
from jobs.models import Job, JobEvent
from jobs.tasks_compat import (
    DEFAULT_TASK_BACKEND_ALIAS,
    BaseTaskBackend,
    InvalidTask,
    Task,
    TaskContext,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    normalize_json,
    task_enqueued,
    task_finished,
    task_started,
)

if TYPE_CHECKING:
    from jobs.engine.context import JobContext

F = TypeVar("F", bound=Callable[..., Any])

KIND_PREFIX = "tasks."
CANCELLED_EXCEPTION = "jobs.engine.errors.Cancelled"
_STARTED = re.compile(r"^(?:Started|Running again) on (?P<worker>.+)$")

Status = Job.Status
STATUSES = {
    Status.QUEUED: TaskResultStatus.READY,
    Status.RETRYING: TaskResultStatus.READY,
    Status.PAUSED: TaskResultStatus.READY,
    Status.RUNNING: TaskResultStatus.RUNNING,
    Status.SUCCEEDED: TaskResultStatus.SUCCESSFUL,
    Status.FAILED: TaskResultStatus.FAILED,
    Status.CANCELLED: TaskResultStatus.FAILED,
}

_owner: ContextVar[Any] = ContextVar("conveyor_task_owner", default=None)
log = logging.getLogger(__name__)
RETRIES_ATTRIBUTE = "conveyor_retries"


class InvalidTaskArguments(InvalidTask, TypeError):
    """A task's arguments are not JSON (Django's own backends raise a TypeError)."""


class TaskJobFailed(Exception):
    """The job failed without an exception from the task function (its time limit, its
    workers lost too often): `TaskError.traceback` holds the job's error."""


# -- owner, priority, queues ------------------------------------------------------------


@contextlib.contextmanager
def enqueue_as(user: Any) -> Iterator[None]:
    """Tasks enqueued inside this block are `user`'s jobs (None or anonymous: no owner)."""
    token = _owner.set(user if getattr(user, "is_authenticated", False) else None)
    try:
        yield
    finally:
        _owner.reset(token)


def conveyor_priority(priority: int) -> int:
    """Django's -100..100 is the job's priority as it is: Django's whole order holds
    (Conveyor's high, normal and low are 10, 0 and -10 on the same scale)."""
    return int(priority)


def retries(times: int) -> Callable[[F], F]:
    """Opt a task into automatic retries, under `@task`:

        @task
        @retries(3)
        def fetch(url): ...

    A transient error (network, HTTP 429/5xx, "database is locked", TransientError),
    its time limit or a lost worker then runs it again from the beginning, with
    backoff, up to `times` more times. Without it (and without `retries` on its queue)
    a task runs once, as Django's Tasks API promises."""
    if isinstance(times, bool) or not isinstance(times, int) or times < 0:
        raise ValueError("retries must be a whole number, 0 or more")

    def mark(func: F) -> F:
        setattr(func, RETRIES_ATTRIBUTE, times)
        return func

    return mark


@dataclass(frozen=True)
class QueueOptions:
    cap: int | None = None
    time_limit: float | None = None
    retries: int = 0


def queue_options(name: str) -> QueueOptions:
    """A queue's options from CONVEYOR_TASK_QUEUES: a dict of them, or just its cap."""
    value = settings.CONVEYOR_TASK_QUEUES[name]
    if not isinstance(value, Mapping):
        return QueueOptions(cap=value)
    return QueueOptions(
        cap=value.get("cap"), time_limit=value.get("time_limit"), retries=value.get("retries", 0)
    )


def queue_kind(queue_name: str) -> str:
    return f"{KIND_PREFIX}{queue_name}"


def register_kinds() -> None:
    """One job kind per queue of CONVEYOR_TASK_QUEUES: the queue's cap, time limit
    (CONVEYOR_TASK_TIMEOUT unless it has its own) and retries (none unless it has)."""
    for name in settings.CONVEYOR_TASK_QUEUES:
        options = queue_options(name)
        own_limit = options.time_limit is not None
        job_kind(
            queue_kind(name),
            label=f"Django task ({name} queue)",
            concurrency=options.cap,
            time_limit=options.time_limit if own_limit else settings.CONVEYOR_TASK_TIMEOUT,
            time_limit_setting=(
                f"the time_limit of queue {name!r} in CONVEYOR_TASK_QUEUES"
                if own_limit
                else "CONVEYOR_TASK_TIMEOUT"
            ),
            max_attempts=1 + options.retries,
            resumable=False,
            validate_params=_validate_params,
            on_end=send_task_finished,
            search_params=("task",),  # task=myapp.tasks.send_report
        )(run_task)


# -- the backend --------------------------------------------------------------------------


class ConveyorBackend(BaseTaskBackend):
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict) -> None:
        super().__init__(alias, params)
        # Queues are CONVEYOR_TASK_QUEUES unless the backend's QUEUES names a subset.
        self.queues = set(params.get("QUEUES") or settings.CONVEYOR_TASK_QUEUES)

    def check(self, **kwargs: Any) -> Iterable[checks.CheckMessage]:
        unknown = sorted(self.queues - set(settings.CONVEYOR_TASK_QUEUES))
        if unknown:
            yield checks.Error(
                f"Task backend {self.alias!r} names queues without a job kind: {unknown}",
                hint="Add them to CONVEYOR_TASK_QUEUES.",
                id="jobs.E001",
            )
        covered = settings.Q_CLUSTER.get("timeout")
        for name in sorted(self.queues - set(unknown)):
            with contextlib.suppress(UnknownKind):
                limit = get_kind(queue_kind(name)).time_limit or 0
                needed = limit + settings.CONVEYOR_CANCEL_GRACE_SECONDS
                if covered and needed + settings.CONVEYOR_TASK_BUDGET_SECONDS > covered:
                    yield checks.Error(
                        f"Tasks of queue {name!r} may run {limit:g} s, longer than "
                        f"django-q2's timeout (Q_CLUSTER['timeout'] = {covered} s) allows.",
                        hint="Raise Q_CLUSTER['timeout'] above the longest task time "
                        "limit plus CONVEYOR_TASK_BUDGET_SECONDS and the cancel grace.",
                        id="jobs.E002",
                    )

    def enqueue(self, task: Task, args: Sequence[Any], kwargs: Mapping[str, Any]) -> TaskResult:
        """One job, in one transaction (the caller's, inside an atomic block)."""
        submission = self._submission(task, args, kwargs)
        job, _ = job_submit(
            kind=submission.kind,
            params=submission.params,
            owner=submission.owner,
            priority=submission.priority,
            label=submission.label,
            run_after=submission.run_after,
            max_attempts=submission.max_attempts,
        )
        return self._enqueued(task, job, submission.params)

    def enqueue_many(
        self, task: Task, calls: Iterable[tuple[Sequence[Any], Mapping[str, Any]]]
    ) -> list[TaskResult]:
        """Many calls of `task` (`(args, kwargs)` each) as jobs, in one transaction."""
        submissions = [self._submission(task, args, kwargs) for args, kwargs in calls]
        jobs = job_submit_many(submissions)
        return [
            self._enqueued(task, job, s.params) for job, s in zip(jobs, submissions, strict=True)
        ]

    def get_result(self, result_id: str) -> TaskResult:
        try:
            pk = int(result_id)
        except (TypeError, ValueError):
            raise TaskResultDoesNotExist(result_id) from None
        job = Job.objects.filter(pk=pk, kind__startswith=KIND_PREFIX).first()
        if job is None:
            raise TaskResultDoesNotExist(result_id)
        return result_from_job(job)

    def _submission(self, task: Task, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Submission:
        self.validate_task(task)
        _check_importable(task)
        params = {
            "task": task.module_path,
            "args": _json(list(args)),
            "kwargs": _json(dict(kwargs)),
            "priority": task.priority,
            "backend": self.alias,
        }
        if task.run_after is not None:
            params["run_after"] = task.run_after.isoformat()
        opted = getattr(task.func, RETRIES_ATTRIBUTE, None)
        return Submission(
            kind=queue_kind(task.queue_name),
            params=params,
            owner=_owner.get(),
            priority=conveyor_priority(task.priority),
            label=task.module_path,
            run_after=task.run_after,
            max_attempts=None if opted is None else 1 + opted,
        )

    def _enqueued(self, task: Task, job: Job, params: dict[str, Any]) -> TaskResult:
        result = TaskResult(
            task=task,
            id=str(job.pk),
            status=TaskResultStatus.READY,
            enqueued_at=job.created_at,
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=params["args"],
            kwargs=params["kwargs"],
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        task_enqueued.send(type(self), task_result=result)
        return result


def _json(value: Any) -> Any:
    """`value` as JSON types, refused unless it comes back the same from JSON."""
    try:
        normal = normalize_json(value)
        same = json.loads(json.dumps(normal, allow_nan=False)) == normal
    except (TypeError, ValueError) as exc:
        raise InvalidTaskArguments(f"Task arguments must be JSON: {exc}") from None
    if not same:
        raise InvalidTaskArguments("Task arguments must be JSON (keys must be strings)")
    return normal


def _check_importable(task: Task) -> None:
    found = _import_task(task.module_path)
    if found.func is not task.func:
        raise InvalidTask(f"{task.module_path} does not name this task's function")


def _import_task(path: str) -> Task:
    """The task at `path`; a worker runs only functions decorated with `@task`."""
    try:
        found = import_string(path)
    except ImportError as exc:
        raise InvalidTask(f"Task {path} cannot be imported: {exc}") from None
    if not isinstance(found, Task):
        raise InvalidTask(f"{path} is not a task: decorate it with @task")
    return found


def _validate_params(params: dict[str, Any], owner: Any) -> dict[str, Any]:
    """For jobs submitted by name (API, CLI), should an operator allow the kind."""
    if not isinstance(params.get("args", []), list) or not isinstance(
        params.get("kwargs", {}), dict
    ):
        raise ValueError("args must be a list and kwargs an object")
    priority = params.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int) or abs(priority) > 100:
        raise ValueError("priority must be a whole number between -100 and 100")
    path = str(params.get("task", ""))
    if path.rpartition(".")[0] not in sys.modules:
        # Importing runs a module's code: a user naming any dotted path would make this
        # process import it before the @task check could refuse it.
        raise ValueError(
            f"Task {path} is unknown here: tasks submitted by name must be in a module this "
            "server has loaded (an installed app's `tasks` module is loaded at start-up)"
        )
    try:
        _import_task(path)
    except InvalidTask as exc:
        raise ValueError(str(exc)) from None
    return params


# -- results ---------------------------------------------------------------------------------


def result_from_job(job: Job, starts: list[tuple[str, datetime]] | None = None) -> TaskResult:
    """The TaskResult a job stands for (one more query for a job that has started,
    unless its `starts` are given)."""
    params = secrets.unseal(job.params or {})
    run_after = parse_datetime(params["run_after"]) if params.get("run_after") else None
    task = _import_task(params["task"]).using(
        priority=params.get("priority", 0),
        queue_name=job.kind.removeprefix(KIND_PREFIX),
        run_after=run_after,
        backend=params.get("backend", DEFAULT_TASK_BACKEND_ALIAS),
    )
    if starts is None:
        starts = _starts(job) if job.started_at else []
    status = STATUSES[job.status]
    result = TaskResult(
        task=task,
        id=str(job.pk),
        status=status,
        enqueued_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at if job.is_terminal else None,
        last_attempted_at=starts[-1][1] if starts else job.started_at,
        args=params.get("args", []),
        kwargs=params.get("kwargs", {}),
        backend=task.backend,
        errors=_errors(job),
        worker_ids=[worker for worker, _ in starts],
    )
    if status == TaskResultStatus.SUCCESSFUL:
        object.__setattr__(result, "_return_value", job.result)
    return result


def _starts(job: Job) -> list[tuple[str, datetime]]:
    """(worker, time) of each run of the job, from its "Started on ..." events.

    Plain SQL: a worker reads them for every task it starts (`task_started`), and the
    ORM's compiling of the query cost ten times the query itself."""
    with connection.cursor() as cursor:
        cursor.execute(
            _starts_sql(connection.vendor), [job.pk, JobEvent.Kind.STATE, Status.RUNNING]
        )
        events = cursor.fetchall()
    at_field = JobEvent._meta.get_field("at")
    converters = connection.ops.get_db_converters(at_field.get_col(JobEvent._meta.db_table))
    starts = []
    for message, at in events:
        if match := _STARTED.match(message):
            for convert in converters:
                at = convert(at, at_field, connection)
            starts.append((match["worker"], at))
    return starts


@functools.cache
def _starts_sql(vendor: str) -> str:
    quote = connection.ops.quote_name
    field = JobEvent._meta.get_field
    job, kind, status = (quote(field(name).column) for name in ("job", "kind", "status"))
    return (
        f"SELECT {quote(field('message').column)}, {quote(field('at').column)} "
        f"FROM {quote(JobEvent._meta.db_table)} WHERE {job} = %s AND {kind} = %s "
        f"AND {status} = %s ORDER BY {quote(field('id').column)}"
    )


def _errors(job: Job) -> list[TaskError]:
    return _errors_of(job.status, job.error, job.traceback)


def _errors_of(status: str, error: str, traceback: str) -> list[TaskError]:
    """The error that failed the task (earlier, retried runs' are on its timeline)."""
    if status == Status.CANCELLED:
        return [TaskError(exception_class_path=CANCELLED_EXCEPTION, traceback="Cancelled")]
    if status != Status.FAILED or (not error and not traceback):
        return []
    path = exception_path(traceback) if traceback else None
    if path is None:
        path = f"{TaskJobFailed.__module__}.{TaskJobFailed.__qualname__}"
    return [TaskError(exception_class_path=path, traceback=traceback or error)]


def exception_path(traceback: str) -> str | None:
    """The dotted class of the exception a formatted traceback ends with.

    Python writes it as the first unindented line after the last frame list:
    `module.Class: message`, or `Class: message` for builtins.
    """
    last = traceback.rpartition("Traceback (most recent call last):\n")[2]
    for line in last.splitlines():
        if line and not line.startswith(" "):
            name = line.partition(":")[0].strip()
            if not re.fullmatch(r"[A-Za-z_][\w.]*", name):
                return None
            return name if "." in name else f"builtins.{name}"
    return None


# -- running in a worker -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ConveyorTaskContext(TaskContext):
    """Django's task context plus the job's controls: report progress, stop cleanly.

    `job` is the `JobContext` itself, for what the API does not say (`job.cursor`,
    `job.commit(...)`). `checkpoint()` raises to stop the task when it is cancelled or
    paused: let that exception through (no bare `except Exception` around it).
    """

    job: JobContext

    def progress(self, done: int, total: int | None = None, message: str | None = None) -> None:
        """Units done so far (absolute), of `total`; then a checkpoint."""
        self.job.progress(done, total, message)

    def checkpoint(self) -> None:
        self.job.checkpoint()

    def should_stop(self) -> bool:
        """True when the task should reach a checkpoint soon (a cheap test, no query)."""
        return self.job.should_stop()

    def log(self, message: str, *, level: str = "info") -> None:
        """A line on the job's timeline."""
        self.job.log(message, level=level)

    async def aprogress(
        self, done: int, total: int | None = None, message: str | None = None
    ) -> None:
        await sync_to_async(self.progress)(done, total, message)

    async def acheckpoint(self) -> None:
        await sync_to_async(self.checkpoint)()


class _Running:
    """The result of the task this worker process runs (one at a time), as it started:
    `task_finished` is that plus the outcome, with no query on the hot path."""

    result: TaskResult | None = None


def run_task(ctx: JobContext) -> Any:
    """The handler of every queue's kind: import the task by its path and call it."""
    params = ctx.params
    task = _import_task(params["task"])
    args = list(params.get("args", []))
    job = ctx.claimed  # as claimed: RUNNING, started now
    # Its first run (the claim stamped both with one time): no runs to read before it.
    first = job.started_at is not None and job.started_at == job.updated_at
    result = result_from_job(job, [(ctx.worker, job.started_at)] if first else None)
    _Running.result = result
    if task.takes_context:
        args.insert(0, ConveyorTaskContext(task_result=result, job=ctx))
    _send(task_started, result)
    return normalize_json(task.call(*args, **params.get("kwargs", {})))


def send_task_finished(job_id: int, outcome: Mapping[str, Any] | None = None) -> None:
    """The kinds' `on_end`: `task_finished` with the result as committed. `outcome`:
    the fields the end wrote (the runner's, a force stop's), else the job is read."""
    started, _Running.result = _Running.result, None
    if outcome is not None and started is not None and started.id == str(job_id):
        result = _ended(started, outcome)
    else:
        job = Job.objects.filter(pk=job_id).first()
        if job is None:
            return
        try:
            result = result_from_job(job)
        except InvalidTask:  # a job whose path names no task never ran one
            return
    _send(task_finished, result)


def _ended(started: TaskResult, outcome: Mapping[str, Any]) -> TaskResult:
    """The started result with the outcome of its run."""
    status = outcome["status"]
    error, tb = outcome.get("error", ""), outcome.get("traceback", "")
    result = dataclasses.replace(
        started,
        status=STATUSES[status],
        finished_at=outcome.get("finished_at"),
        errors=_errors_of(status, error, tb),
    )
    if status == Status.SUCCEEDED:
        object.__setattr__(result, "_return_value", outcome.get("result"))
    return result


def _send(signal: Any, result: TaskResult) -> None:
    """Send a Tasks signal from a worker: a receiver's error is logged, never the
    task's outcome (nor the worker's end)."""
    for receiver, response in signal.send_robust(ConveyorBackend, task_result=result):
        if isinstance(response, Exception):
            log.error(
                "%s receiver %r failed for task %s",
                signal,
                receiver,
                result.id,
                exc_info=response,
            )
