"""The engine benchmark: what a Conveyor job and a Conveyor slice cost next to a plain
django-q2 task, on the same cluster, database and broker, measured in the same run.

- throughput: one-unit `demo.count` jobs, first submit -> last job succeeded, against
  no-op `async_task` calls, first enqueue -> last result saved.
- time per slice: one job cut into many minimal slices (CONVEYOR_SLICE_SECONDS=0: one
  unit per slice) against a chain of no-op tasks, each enqueueing the next. A worker
  goes from one slice to the next inside the same task (jobs.engine.runner.run_slice asks
  jobs.engine.dispatch.next_for_free_worker), so the chain is the broker round trip that
  Conveyor's hand-over avoids.
bench/README.md explains the method and how to read the ratios.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from statistics import median

from bench.common import Bench, Stopwatch, wait_for

DEFAULT_SLICE_SECONDS = 15.0  # CONVEYOR_SLICE_SECONDS when unset


@dataclass
class Batch:
    """One measured round: `count` items, sent in `send_seconds`, all done after `seconds`."""

    count: int
    seconds: float
    send_seconds: float

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    @property
    def send_rate(self) -> float:
        return self.count / self.send_seconds

    def as_dict(self) -> dict[str, float]:
        return {
            "count": self.count,
            "seconds": round(self.seconds, 4),
            "send_seconds": round(self.send_seconds, 4),
            "rate": round(self.rate, 2),
            "send_rate": round(self.send_rate, 2),
        }


def run(bench: Bench) -> None:
    from django.test import override_settings

    owner = _owner()
    _record_sql(bench, conveyor_sql(owner, bench.size(50, 10)), django_q2_sql())
    rounds = bench.size(3, 1)
    with bench.cluster("throughput"):
        _warm_up(bench, owner)
        tasks: list[Batch] = []
        jobs: list[Batch] = []
        bulk: list[Batch] = []
        for _ in range(rounds):
            tasks.append(django_q2_batch(bench.size(1000, 150)))
            bench.say(_batch_text("django-q2 no-op tasks", tasks[-1], "tasks"))
            jobs.append(conveyor_batch(bench.size(300, 30), owner))
            bench.say(_batch_text("Conveyor demo jobs", jobs[-1], "jobs"))
            bulk.append(conveyor_batch(bench.size(1000, 150), owner, bulk=True))
            bench.say(_batch_text("Conveyor demo jobs, job_submit_many", bulk[-1], "jobs"))
    _record_throughput(bench, tasks, jobs, bulk)

    slices_per_job = bench.size(40, 15)
    # Slices are counted from django-q2's saved results: kept by the cluster, and by
    # this process, which sends the first task of each job.
    keep = override_settings(CONVEYOR_KEEP_TASK_RESULTS=True)
    with keep, bench.cluster("slices", CONVEYOR_SLICE_SECONDS="0", CONVEYOR_KEEP_TASK_RESULTS="1"):
        _warm_up(bench, owner)
        chains: list[Batch] = []
        sliced: list[Batch] = []
        for _ in range(bench.size(5, 1)):
            chains.append(django_q2_chain(slices_per_job))
            bench.say(_per_item_text("django-q2 chain", chains[-1], "tasks"))
            sliced.append(conveyor_slices(slices_per_job, owner))
            bench.say(_per_item_text("Conveyor slices", sliced[-1], "slices"))
    _record_slices(bench, chains, sliced)


# --- measurements ----------------------------------------------------------------------


def django_q2_batch(count: int) -> Batch:
    """Enqueue `count` no-op tasks; done when the broker is empty and the last are saved.

    django-q2 keeps only `save_limit` successes per function (older ones are pruned), so
    completion is read from the broker (ORM: a task row is deleted only after its result
    is saved) and from the results of the last few tasks, which no later save prunes.
    """
    from django.conf import settings
    from django_q.models import Task
    from django_q.tasks import async_task

    from bench.tasks import shared_broker

    broker = shared_broker()
    group = f"bench-{uuid.uuid4().hex[:8]}"
    watch = Stopwatch()
    ids = [
        async_task("bench.tasks.noop", i, broker=broker, task_name=f"{group}-{i}", group=group)
        for i in range(count)
    ]
    sent = watch.lap()
    in_flight = settings.Q_CLUSTER["workers"] + settings.Q_CLUSTER["queue_limit"] + 2
    last = ids[-in_flight:]
    wait_for(
        lambda: _broker_empty(broker) and Task.objects.filter(id__in=last).count() == len(last),
        timeout=60 + count / 5,
        interval=0.01,
        what=f"{count} django-q2 tasks to finish",
    )
    seconds = watch.stop()
    failed = Task.objects.filter(group=group, success=False).count()
    if failed:
        raise RuntimeError(f"{failed} baseline tasks failed")
    return Batch(count, seconds, sent)


def _broker_empty(broker) -> bool:
    """No task waiting or (ORM broker) taken but not yet acknowledged after its save."""
    from django_q.brokers.orm import ORM
    from django_q.models import OrmQ

    if isinstance(broker, ORM):
        return not OrmQ.objects.filter(key=broker.list_key).exists()
    return broker.queue_size() == 0


def conveyor_batch(count: int, owner, bulk: bool = False) -> Batch:
    """Submit `count` one-unit demo jobs (one by one, or with `job_submit_many` in
    batches of 100, as a caller that enqueues many would); done when all succeeded."""
    from jobs.engine.services import Submission, job_submit, job_submit_many

    watch = Stopwatch()
    if bulk:
        one = Submission(kind="demo.count", params={"n": 1}, owner=owner)
        ids = [job.pk for _ in range(0, count, 100) for job in job_submit_many([one] * 100)]
    else:
        ids = [
            job_submit(kind="demo.count", params={"n": 1}, owner=owner)[0].pk for _ in range(count)
        ]
    sent = watch.lap()
    return jobs_done(ids, watch, sent, "Conveyor jobs")


def jobs_done(ids: list[int], watch: Stopwatch, sent: float, what: str) -> Batch:
    """Wait until the jobs `ids` (consecutive) all ended; they must all have succeeded."""
    from jobs.models import Job

    count = len(ids)
    ours = Job.objects.filter(pk__gte=ids[0], pk__lte=ids[-1])
    wait_for(
        lambda: ours.filter(status__in=Job.TERMINAL).count() >= count,
        timeout=60 + count,
        interval=0.01,
        what=f"{count} {what} to finish",
    )
    seconds = watch.stop()
    unsuccessful = ours.exclude(status=Job.Status.SUCCEEDED).count()
    if unsuccessful:
        raise RuntimeError(f"{unsuccessful} {what} did not succeed")
    return Batch(count, seconds, sent)


def django_q2_chain(length: int) -> Batch:
    """`length` no-op tasks run one after another, each enqueued by the one before."""
    from django_q.models import Task
    from django_q.tasks import async_task

    from bench.tasks import shared_broker

    prefix = f"chain-{uuid.uuid4().hex[:8]}"
    watch = Stopwatch()
    async_task(
        "bench.tasks.relay",
        length - 1,
        prefix,
        broker=shared_broker(),
        task_name=f"{prefix}-{length - 1}",
    )
    sent = watch.lap()
    wait_for(
        lambda: Task.objects.filter(name=f"{prefix}-0").exists(),
        timeout=30 + length,
        interval=0.01,
        what=f"a chain of {length} django-q2 tasks to finish",
    )
    return Batch(length, watch.stop(), sent)


def conveyor_slices(slices: int, owner) -> Batch:
    """One demo job run as `slices` minimal slices; the cluster must have a zero slice time.

    Every commit then ends its slice: each slice counts one unit (the total is known at
    submit), and the last one finds nothing left and finishes the job. The
    slices are counted from django-q2's saved `run_slice` results (this cluster keeps
    them: CONVEYOR_KEEP_TASK_RESULTS; fewer than `save_limit`, so none is pruned): a task reports the outcome of each slice it ran,
    comma-separated, as a worker goes on with the next slice without the broker.
    """
    from django_q.models import Task

    from jobs.engine.services import job_submit
    from jobs.models import Job

    watch = Stopwatch()
    job = job_submit(kind="demo.count", params={"n": slices - 1}, owner=owner)[0]
    sent = watch.lap()
    wait_for(
        lambda: Job.objects.filter(pk=job.pk, status__in=Job.TERMINAL).exists(),
        timeout=30 + slices,
        interval=0.01,
        what=f"job {job.pk} to finish",
    )
    seconds = watch.stop()
    job.refresh_from_db()
    if job.status != Job.Status.SUCCEEDED:
        raise RuntimeError(f"the sliced demo job ended {job.status}: {job.error}")

    def outcomes() -> Counter:
        saved = Task.objects.filter(name=f"job-{job.pk}").values_list("result", flat=True)
        results = Counter(outcome for result in saved for outcome in str(result).split(", "))
        return results if results["succeeded"] else Counter()

    results = wait_for(outcomes, timeout=30, what="django-q2 to save the last slice's result")
    ran = sum(n for outcome, n in results.items() if outcome != "not claimed")
    if ran != slices:
        raise RuntimeError(f"expected {slices} slices, counted {dict(results)}")
    return Batch(ran, seconds, sent)


class SqlCounter:
    """Statements and transactions run on the default connection inside a `with` block.

    A transaction is a commit of an atomic block, or a statement run outside one
    (autocommit). BEGIN and COMMIT themselves are not statements here.
    """

    def __init__(self) -> None:
        self.statements = 0
        self.transactions = 0

    def __enter__(self) -> SqlCounter:
        from django.db import connection

        self._connection = connection
        self._wrapper = connection.execute_wrapper(self._count)
        self._wrapper.__enter__()
        self._commit = connection.commit
        connection.commit = self._counted_commit
        return self

    def __exit__(self, *exc: object) -> None:
        self._connection.commit = self._commit
        self._wrapper.__exit__(*exc)

    def _counted_commit(self) -> None:
        self.transactions += 1
        self._commit()

    def _count(self, execute, sql, params, many, context):
        if not sql.lstrip().upper().startswith("BEGIN"):  # SQLite's BEGIN IMMEDIATE
            self.statements += 1
            if not self._connection.in_atomic_block:
                self.transactions += 1
        return execute(sql, params, many, context)


def conveyor_sql(owner, count: int) -> dict[str, float]:
    """SQL per one-unit job, in-process: `count` submits, then one worker task running
    them all (a worker settles a job and claims the next in one transaction)."""
    from jobs.engine.runner import run_slice
    from jobs.engine.services import job_submit

    warm, _ = job_submit(kind="demo.count", params={"n": 1}, owner=owner)
    run_slice(warm.pk)
    with SqlCounter() as submit:
        ids = [
            job_submit(kind="demo.count", params={"n": 1}, owner=owner)[0].pk for _ in range(count)
        ]
    with SqlCounter() as running:
        run_slice(ids[0])
    return {
        "statements": (submit.statements + running.statements) / count,
        "transactions": (submit.transactions + running.transactions) / count,
        "submit_statements": submit.statements / count,
        "run_statements": running.statements / count,
    }


def django_q2_sql() -> dict[str, float]:
    """SQL of one no-op django-q2 task in-process: enqueue, dequeue, run, save, ack."""
    from django_q.brokers import get_broker
    from django_q.brokers.orm import ORM
    from django_q.tasks import async_task

    broker = get_broker()
    with SqlCounter() as counted:
        if isinstance(broker, ORM):  # the Redis broker's own work is not SQL
            async_task("bench.tasks.noop", broker=broker)
            for ack_id, _ in broker.dequeue() or []:
                broker.acknowledge(ack_id)
        async_task("bench.tasks.noop", sync=True)
    return {"statements": counted.statements, "transactions": counted.transactions}


# --- set-up and recording -------------------------------------------------------------


def _owner():
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(username="bench")
    return user


def _warm_up(bench: Bench, owner) -> None:
    """Let every worker import the code paths and open its connections before timing."""
    django_q2_batch(bench.workers * 5)
    conveyor_batch(bench.workers * 3, owner)


def _record_throughput(
    bench: Bench, tasks: list[Batch], jobs: list[Batch], bulk: list[Batch]
) -> None:
    bench.detail("django_q2_batches", [batch.as_dict() for batch in tasks])
    bench.detail("conveyor_batches", [batch.as_dict() for batch in jobs])
    bench.detail("conveyor_bulk_batches", [batch.as_dict() for batch in bulk])
    task_rate = median(batch.rate for batch in tasks)
    bench.figure(
        "throughput, bulk submit",
        median(batch.rate for batch in bulk),
        "jobs/s",
        baseline=("django-q2 no-op tasks", task_rate, "tasks/s"),
        note=(
            "the same, with the jobs submitted by job_submit_many in batches of 100: what "
            "the workers sustain when submitting is not the bottleneck"
        ),
    )
    job_rate = median(batch.rate for batch in jobs)
    task_rate = median(batch.rate for batch in tasks)
    bench.figure(
        "throughput",
        job_rate,
        "jobs/s",
        baseline=("django-q2 no-op tasks", task_rate, "tasks/s"),
        comment=(
            f"a worker spends {bench.workers / job_rate * 1000:.0f} ms per job, "
            f"{bench.workers / task_rate * 1000:.1f} ms per task"
        ),
        note=(
            "one-unit demo.count jobs, first submit to last job succeeded, against no-op "
            "async_task calls, first enqueue to last result saved; median of "
            f"{len(jobs)} round(s), jobs submitted one by one from one process. A job also "
            "claims a lease, commits its progress, writes events and a notification, announces "
            "changes and claims the next job."
        ),
    )


def _record_sql(bench: Bench, ours: dict[str, float], theirs: dict[str, float]) -> None:
    bench.detail("sql_per_job", ours)
    bench.detail("django_q2_sql_per_task", theirs)
    bench.figure(
        "SQL per one-unit job",
        ours["statements"],
        "statements",
        baseline=("a django-q2 no-op task", theirs["statements"], "statements"),
        better="lower",
        comment=f"{ours['transactions']:.1f} transactions (django-q2: {theirs['transactions']:g}); goal <= 15 in <= 3",
        note=(
            "counted in-process on the default connection: one-unit demo.count jobs submitted, "
            "then run by one worker task (a worker settles a job and claims the next in one "
            "transaction); django-q2: enqueue, dequeue, run (sync), save the result, ack."
        ),
    )


def _record_slices(bench: Bench, chains: list[Batch], sliced: list[Batch]) -> None:
    bench.detail("django_q2_chains", [batch.as_dict() for batch in chains])
    bench.detail("conveyor_sliced_jobs", [batch.as_dict() for batch in sliced])
    per_slice = median(batch.seconds / batch.count for batch in sliced) * 1000
    per_task = median(batch.seconds / batch.count for batch in chains) * 1000
    bench.figure(
        "time per slice",
        per_slice,
        "ms",
        baseline=("django-q2 chained no-op task", per_task, "ms"),
        better="lower",
        note=(
            "a job run as minimal slices (one commit each, CONVEYOR_SLICE_SECONDS=0) against "
            "a chain of no-op tasks that each enqueue the next; median of "
            f"{len(sliced)} job(s). A Conveyor slice commits, releases its lease, picks the "
            "next job under the scheduling lock and claims it, in the same task: no broker "
            "round trip, which is what a chained task pays."
        ),
        comment=_slice_comment(bench, per_slice, per_task),
    )


def _slice_comment(bench: Bench, per_slice: float, per_task: float) -> str:
    share = (
        f"{per_slice / (DEFAULT_SLICE_SECONDS * 10):.2f} % of a {DEFAULT_SLICE_SECONDS:g} s slice"
    )
    if bench.variant.broker == "redis":
        gap = per_slice - per_task
        return f"a hand-over in the worker vs a Redis round trip: {gap:+.1f} ms; {share}"
    from django.conf import settings

    poll = bench.env.get("CONVEYOR_BROKER_POLL") or settings.Q_CLUSTER["poll"]
    return f"only the chained task waits for the ORM broker's {float(poll):g} s poll; {share}"


def _batch_text(what: str, batch: Batch, unit: str) -> str:
    return (
        f"{what}: {batch.count} in {batch.seconds:.2f} s = {batch.rate:.1f} {unit}/s "
        f"(sent at {batch.send_rate:.0f}/s)"
    )


def _per_item_text(what: str, batch: Batch, unit: str) -> str:
    return (
        f"{what}: {batch.count} {unit} in {batch.seconds:.2f} s = "
        f"{batch.seconds / batch.count * 1000:.1f} ms each"
    )
