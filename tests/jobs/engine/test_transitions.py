"""The one writer of job state: nothing else writes Job rows, transitions only go where
the table allows, an outcome's fields are the same whoever caused it, and a one-unit
job stays within its statement budget."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from jobs.engine import transitions
from jobs.engine.runner import run_one_slice, run_slice
from jobs.engine.services import job_cancel, job_retry, job_submit
from jobs.models import Job
from tests.jobs.factories import fresh, run_to_end, submit_demo
from tests.support.processes import ROOT

pytestmark = pytest.mark.django_db(transaction=True)
S = Job.Status
WRITES = {"update", "save", "create", "bulk_create", "delete", "get_or_create", "update_or_create"}


def _job_writes(path: Path) -> list[int]:
    """Lines where `path` writes Job rows: a write call on `Job.objects...` or a job."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in WRITES:
            continue
        source = ast.unparse(node.func.value)
        if source.startswith("Job.objects") or source in ("job", "self.job"):
            lines.append(node.lineno)
    return lines


def test_only_the_transitions_module_writes_job_rows():
    writers = {}
    for path in [*ROOT.glob("jobs/**/*.py"), *ROOT.glob("sheets/**/*.py")]:
        if "migrations" in path.parts or path.name == "transitions.py":
            continue
        if lines := _job_writes(path):
            writers[str(path.relative_to(ROOT))] = lines
    assert writers == {}


def test_a_running_job_cannot_be_resumed_and_a_queued_one_cannot_succeed(user):
    job = submit_demo(user, n=3)
    assert transitions.resume(job) == ""
    assert not transitions.release(job.pk, "nobody", {"status": S.SUCCEEDED}, "Succeeded")
    assert fresh(job).status == S.QUEUED


def _cancel_fields(job: Job) -> tuple:
    job = fresh(job)
    return (
        job.status,
        job.requested,
        job.dispatched_at,
        job.run_after,
        job.cancelled_at is not None and job.cancelled_at == job.finished_at,
    )


def test_a_cancelled_job_looks_the_same_whoever_cancelled_it(user):
    queued = submit_demo(user, n=3)
    job_cancel(job=queued)  # no worker holds it: cancelled at once
    at_checkpoint = submit_demo(user, n=3, delay=0.01)
    claimed = transitions.claim(at_checkpoint.pk, "w1")
    job_cancel(job=claimed)  # requested; the worker stops at its next checkpoint
    transitions.release(claimed.pk, "w1", transitions.cancelled_fields(claimed.updated_at), "x")
    lost = submit_demo(user, n=3)
    transitions.claim(lost.pk, "w2")
    job_cancel(job=fresh(lost))
    transitions.recover(lost.pk, "w2", "its worker died")  # honours the pending cancel
    expected = (S.CANCELLED, "", None, None, True)
    assert [_cancel_fields(j) for j in (queued, at_checkpoint, lost)] == [expected] * 3


def _count(fn) -> tuple[int, int]:
    """SQL statements run by `fn` and how many transactions they were in."""
    with CaptureQueriesContext(connection) as captured:
        fn()
    statements = [q["sql"] for q in captured.captured_queries]
    work = [
        s
        for s in statements
        if not s.upper().startswith(("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE"))
    ]
    commits = sum(1 for s in statements if s.upper().startswith(("COMMIT", "RELEASE")))
    return len(work), commits


def test_a_one_unit_job_costs_at_most_15_statements(user):
    """Steady state: a worker finishes a job and claims the next in one transaction, so a
    job costs its submit, its unit's commit and its share of that hand-over."""
    first = submit_demo(user, n=1)
    run_one_slice(first.pk)
    jobs = [job_submit(kind="demo.count", params={"n": 1}, owner=user)[0] for _ in range(5)]
    submit_statements, _ = _count(
        lambda: jobs.append(job_submit(kind="demo.count", params={"n": 1}, owner=user)[0])
    )
    run_statements, _ = _count(lambda: run_slice(jobs[0].pk))
    assert all(fresh(job).status == S.SUCCEEDED for job in jobs)
    per_job = submit_statements + run_statements / len(jobs)
    print(f"statements per job: submit {submit_statements}, run {run_statements / len(jobs)}")
    assert per_job <= 15, (submit_statements, run_statements)


def test_a_retry_keeps_rate_and_eta_true_and_a_rerun_starts_a_new_clock(user):
    failed = run_to_end(submit_demo(user, n=40, delay=0.05, time_limit=0.6))
    rate_before = failed.rate
    job_retry(job=failed)
    resumed = fresh(failed)
    assert resumed.rate == rate_before and resumed.run_seconds > 0.5
    Job.objects.filter(pk=resumed.pk).update(time_limit=None)
    done = run_to_end(resumed)
    job_retry(job=done)
    rerun = fresh(done)
    assert (rerun.processed, rerun.run_seconds, rerun.rate) == (0, 0.0, None)
