"""The Django Tasks benchmark: a no-op `@task` enqueued through Conveyor's backend
(`jobs.tasks_backend.ConveyorBackend`, each call a job) against the same no-op sent with
django-q2's `async_task`, on the same cluster, database and broker, in the same run.

- throughput: first enqueue -> every job succeeded, against first `async_task` -> last
  result saved (`bench.engine.django_q2_batch`), in alternating rounds; and the same
  jobs submitted by one `enqueue_many` call (what the workers sustain).
- SQL per enqueue: statements and transactions of one `enqueue` in-process (the job's
  INSERTs, then the dispatch look after commit), against one ORM-broker `async_task`.
bench/README.md explains the method.
"""

from __future__ import annotations

from statistics import median

from bench.common import Bench, Stopwatch
from bench.engine import Batch, SqlCounter, _batch_text, _warm_up, django_q2_batch, jobs_done


def run(bench: Bench) -> None:
    _record_sql(bench, tasks_sql(bench.size(50, 10)), async_task_sql())
    with bench.cluster("tasks"):
        _warm_up(bench, None)
        tasks_batch(bench.workers * 3)
        baseline: list[Batch] = []
        ours: list[Batch] = []
        batched: list[Batch] = []
        for _ in range(bench.size(3, 1)):
            baseline.append(django_q2_batch(bench.size(1000, 150)))
            bench.say(_batch_text("django-q2 async_task no-ops", baseline[-1], "tasks"))
            ours.append(tasks_batch(bench.size(500, 60)))
            bench.say(_batch_text("Django Tasks no-ops on Conveyor", ours[-1], "tasks"))
            batched.append(tasks_batch(bench.size(500, 60), many=True))
            bench.say(_batch_text("the same, enqueue_many", batched[-1], "tasks"))
    _record_throughput(bench, baseline, ours, batched)


def tasks_batch(count: int, many: bool = False) -> Batch:
    """Enqueue `count` no-op Django tasks (one call each, or one `enqueue_many`); done
    when every job has succeeded."""
    from bench.tasks import django_noop
    from jobs.tasks_compat import default_task_backend

    watch = Stopwatch()
    if many:
        calls = [((i,), {}) for i in range(count)]
        ids = [int(r.id) for r in default_task_backend.enqueue_many(django_noop, calls)]
    else:
        ids = [int(django_noop.enqueue(i).id) for i in range(count)]
    sent = watch.lap()
    return jobs_done(ids, watch, sent, "Django task jobs")


def tasks_sql(count: int) -> dict[str, float]:
    """SQL of one `enqueue`, in-process with no worker alive (dispatch looks, finds no
    free worker, and stops: the usual case under load)."""
    from bench.tasks import django_noop

    django_noop.enqueue()
    with SqlCounter() as counted:
        for number in range(count):
            django_noop.enqueue(number)
    return {
        "statements": counted.statements / count,
        "transactions": counted.transactions / count,
    }


def async_task_sql() -> dict[str, float]:
    from django_q.brokers.orm import ORM
    from django_q.tasks import async_task

    from bench.tasks import shared_broker

    broker = shared_broker()
    if not isinstance(broker, ORM):  # the Redis broker's enqueue is not SQL
        return {"statements": 0, "transactions": 0}
    with SqlCounter() as counted:
        async_task("bench.tasks.noop", broker=broker)
    return {"statements": counted.statements, "transactions": counted.transactions}


def _record_sql(bench: Bench, ours: dict[str, float], theirs: dict[str, float]) -> None:
    bench.detail("sql_per_enqueue", ours)
    bench.detail("async_task_sql", theirs)
    redis = bench.variant.broker == "redis"
    bench.figure(
        "SQL per task enqueue",
        ours["statements"],
        "statements",
        baseline=("an async_task on the ORM broker", theirs["statements"], "statements"),
        better="lower",
        comment=(
            f"{ours['transactions']:.1f} transactions"
            + (" (Redis broker: async_task runs no SQL)" if redis else "")
        ),
        note=(
            "counted in-process on the default connection: `django_noop.enqueue()` (the job "
            "and its event and change rows in one transaction, then dispatch's capacity look) "
            "against django-q2's enqueue."
        ),
    )


def _record_throughput(
    bench: Bench, baseline: list[Batch], ours: list[Batch], batched: list[Batch]
) -> None:
    bench.detail("django_q2_batches", [batch.as_dict() for batch in baseline])
    bench.detail("django_tasks_batches", [batch.as_dict() for batch in ours])
    bench.detail("django_tasks_enqueue_many_batches", [batch.as_dict() for batch in batched])
    task_rate = median(batch.rate for batch in ours)
    q2_rate = median(batch.rate for batch in baseline)
    bench.figure(
        "Django Tasks throughput",
        task_rate,
        "tasks/s",
        baseline=("django-q2 async_task no-ops", q2_rate, "tasks/s"),
        comment=(
            f"goal >= 0.8x; enqueue {median(b.send_rate for b in ours):.0f}/s, "
            f"async_task {median(b.send_rate for b in baseline):.0f}/s"
        ),
        note=(
            "a no-op @task enqueued through jobs.tasks_backend.ConveyorBackend (one job each), "
            "first enqueue to every job succeeded, against the same no-op sent with async_task, "
            f"first enqueue to last result saved; same cluster; median of {len(ours)} round(s)."
        ),
    )
    bench.figure(
        "Django Tasks throughput, enqueue_many",
        median(batch.rate for batch in batched),
        "tasks/s",
        baseline=("django-q2 async_task no-ops", q2_rate, "tasks/s"),
        comment=f"{batched[0].count} tasks per enqueue_many call",
        note=(
            "the same no-op jobs submitted by one ConveyorBackend.enqueue_many call (one "
            "transaction, one dispatch): what the workers sustain when enqueueing is not "
            "the limit."
        ),
    )
