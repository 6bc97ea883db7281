"""The one writer of job state: nothing else writes Job rows, transitions only go where
the table allows, an outcome's fields are the same whoever caused it, and a one-unit
job stays within its statement budget."""

from __future__ import annotations

import ast
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from jobs.engine import transitions
from jobs.engine.errors import JobActionError, LeaseLost
from jobs.engine.runner import run_one_slice, run_slice
from jobs.engine.services import job_cancel, job_retry, job_submit
from jobs.engine.transitions import Outcome
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
    assert not transitions.end_slice(job.pk, "nobody", Outcome.succeeded(None))
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
    transitions.end_slice(claimed.pk, "w1", Outcome.cancelled())
    lost = submit_demo(user, n=3)
    transitions.claim(lost.pk, "w2")
    job_cancel(job=fresh(lost))
    transitions.rescue(lost.pk, "w2", "its worker died")  # honours the pending cancel
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


# -- every (from, to) pair of statuses, through the named transitions -----------------

HOLDER = "w1"


def _job_in(user, status: str, *, leased: bool, requested: str = "") -> Job:
    """A job in `status`, held by HOLDER if `leased` (set up directly: a state the
    named transitions may never produce, such as a leased queued job, is where their
    status rules show)."""
    (job,) = transitions.create([Job(kind="demo.count", params={"n": 3}, owner=user)])
    Job.objects.filter(pk=job.pk).update(
        status=status, lease_owner=HOLDER if leased else "", requested=requested
    )
    return fresh(job)


def _row(job: Job) -> dict:
    return Job.objects.filter(pk=job.pk).values().get()


def _yield(job: Job) -> bool:
    winner = transitions.create([Job(kind="demo.count", params={"n": 1}, owner=job.owner)])[0]
    return transitions.yield_to(job.pk, HOLDER, winner.pk, 0.5)


# The named transitions into each status: (name, held by the worker, attempt -> done).
INTO = {
    S.QUEUED: [
        ("requeue", True, lambda j: transitions.end_slice(j.pk, HOLDER, Outcome.requeued("x"))),
        ("yield_to", True, _yield),
        ("rescue", True, lambda j: transitions.rescue(j.pk, HOLDER, "x", resumable=False)),
        ("resume", False, lambda j: transitions.resume(j) == "resumed"),
        ("retry", False, lambda j: transitions.retry(j, {}, "whole job")),
    ],
    S.RUNNING: [("claim", False, lambda j: transitions.claim(j.pk, HOLDER) is not None)],
    S.PAUSED: [
        ("pause", False, lambda j: transitions.pause(j) == "now"),
        ("paused", True, lambda j: transitions.end_slice(j.pk, HOLDER, Outcome.paused())),
    ],
    S.RETRYING: [
        (
            "retrying",
            True,
            lambda j: transitions.end_slice(
                j.pk,
                HOLDER,
                Outcome.retrying(
                    attempt=1, max_attempts=3, error="e", tb="", delay=1.0, reason="x"
                ),
            ),
        )
    ],
    S.SUCCEEDED: [
        ("succeeded", True, lambda j: transitions.end_slice(j.pk, HOLDER, Outcome.succeeded(1)))
    ],
    S.FAILED: [
        ("failed", True, lambda j: transitions.end_slice(j.pk, HOLDER, Outcome.failed("e"))),
        (
            "stop_by_force",
            True,
            lambda j: transitions.stop_by_force(j.pk, HOLDER, Outcome.failed("e")),
        ),
    ],
    S.CANCELLED: [
        ("cancel", False, lambda j: transitions.cancel(j) == "now"),
        ("cancelled", True, lambda j: transitions.end_slice(j.pk, HOLDER, Outcome.cancelled())),
        (
            "stop_by_force",
            True,
            lambda j: transitions.stop_by_force(j.pk, HOLDER, Outcome.cancelled("stopped")),
        ),
    ],
}
PAIRS = [(old, new) for old in S.values for new in S.values]
# The allowed (from, to) pairs, spelled out here rather than read from the table.
ALLOWED = {
    *((old, S.QUEUED) for old in (S.RUNNING, S.PAUSED, S.SUCCEEDED, S.FAILED, S.CANCELLED)),
    *((old, S.RUNNING) for old in (S.QUEUED, S.RETRYING, S.RUNNING)),
    *((old, S.PAUSED) for old in (S.QUEUED, S.RETRYING, S.RUNNING)),
    (S.RUNNING, S.RETRYING),
    (S.RUNNING, S.SUCCEEDED),
    (S.RUNNING, S.FAILED),
    *((old, S.CANCELLED) for old in (S.QUEUED, S.RETRYING, S.RUNNING, S.PAUSED)),
}


def test_the_table_allows_the_pairs_of_the_walk_and_every_status_has_a_way_in():
    table = {(old, new) for new, olds in transitions.TRANSITIONS.items() for old in olds}
    assert table == ALLOWED
    assert set(INTO) == set(S.values)


@pytest.mark.django_db
@pytest.mark.parametrize(("old", "new"), PAIRS, ids=[f"{a}-{b}" for a, b in PAIRS])
def test_a_transition_applies_only_where_the_table_allows_it(user, old, new):
    """An allowed pair is done by one of the named transitions into `new`; from a
    forbidden one every such transition refuses and leaves the row as it was."""
    allowed = (old, new) in ALLOWED
    done = []
    for name, leased, attempt in INTO[new]:
        job = _job_in(user, old, leased=leased)
        before = _row(job)
        if attempt(job):
            done.append(name)
            assert fresh(job).status == new, name
        else:
            assert _row(job) == before, name
    assert bool(done) == allowed, done


def test_a_rescue_through_the_table_fails_a_job_whose_attempts_are_used_up(user):
    job = _job_in(user, S.RUNNING, leased=True)
    Job.objects.filter(pk=job.pk).update(attempts=4)  # of 5
    assert transitions.rescue(job.pk, HOLDER, "its worker died") == S.FAILED
    ended = fresh(job)
    assert (ended.status, ended.attempts, ended.lease_owner) == (S.FAILED, 5, "")
    assert ended.error.startswith("Gave up after 5 attempts: its worker died each time")
    note = ended.notifications.get()
    assert note.message == f"{ended.title} failed: {ended.error}"


# -- the named transitions one by one -----------------------------------------------------


def _events(job: Job) -> list[tuple[str, str, str]]:
    return list(job.events.order_by("id").values_list("kind", "status", "message"))


@pytest.mark.django_db
def test_a_claim_starts_a_queued_job_once_and_takes_a_running_one_between_slices(user):
    job = _job_in(user, S.QUEUED, leased=False)
    claimed = transitions.claim(job.pk, HOLDER)
    assert (claimed.status, claimed.lease_owner) == (S.RUNNING, HOLDER)
    assert claimed.started_at is not None and claimed.lease_expires_at > claimed.started_at
    assert transitions.claim(job.pk, "w2") is None  # held
    assert transitions.end_slice(job.pk, HOLDER, Outcome.next_slice())
    again = transitions.claim(job.pk, "w2")  # a running job between slices: no new line
    assert (again.lease_owner, again.started_at) == ("w2", claimed.started_at)
    assert _events(job)[-1] == ("state", S.RUNNING, f"Started on {HOLDER}")


@pytest.mark.django_db
def test_progress_writes_only_progress_fields_while_the_lease_is_held(user):
    job = _job_in(user, S.RUNNING, leased=True)
    Job.objects.filter(pk=job.pk).update(requested=Job.Request.PAUSE)
    fields = {"processed": 2, "cursor": 2, "message": "two done"}
    assert transitions.progress(job.pk, HOLDER, fields, event={"processed": 2}) == "pause"
    stored = fresh(job)
    assert (stored.processed, stored.cursor, stored.message) == (2, 2, "two done")
    assert stored.heartbeat_at is not None
    assert _events(job)[-1] == ("progress", "", "two done")
    with pytest.raises(ValueError, match="progress writes only"):
        transitions.progress(job.pk, HOLDER, {"status": S.SUCCEEDED})
    with pytest.raises(LeaseLost):
        transitions.progress(job.pk, "w2", {"processed": 3})
    assert fresh(job).processed == 2


@pytest.mark.django_db
def test_a_lease_is_renewed_only_by_its_holder_who_learns_the_pending_request(user):
    job = _job_in(user, S.RUNNING, leased=True)
    assert transitions.renew_lease(job.pk, HOLDER) == ""
    assert transitions.cancel(job) == "requested"
    assert transitions.renew_lease(job.pk, HOLDER) == Job.Request.CANCEL
    assert transitions.renew_lease(job.pk, "w2") is None


@pytest.mark.django_db
def test_replace_input_writes_params_total_and_key_only_for_the_holder(user):
    job = _job_in(user, S.RUNNING, leased=True)
    fields = {"params": {"n": 5}, "total": 5, "entity_key": "demo:5"}
    transitions.replace_input(job.pk, HOLDER, fields, "Read afresh")
    stored = fresh(job)
    assert (stored.params, stored.total, stored.entity_key) == ({"n": 5}, 5, "demo:5")
    assert _events(job)[-1] == ("log", "", "Read afresh")
    with pytest.raises(ValueError, match="replace_input writes only"):
        transitions.replace_input(job.pk, HOLDER, {"priority": 9}, "x")
    with pytest.raises(LeaseLost):
        transitions.replace_input(job.pk, "w2", {"total": 6}, "x")


@pytest.mark.django_db
def test_an_ended_slice_tells_the_owner_and_a_kept_one_only_logs(user):
    job = _job_in(user, S.RUNNING, leased=True)
    transitions.end_slice(job.pk, HOLDER, Outcome({"attempts": 1}, "Recovered: x"))
    assert (fresh(job).status, fresh(job).lease_owner) == (S.RUNNING, "")
    assert _events(job)[-1] == ("log", "", "Recovered: x")
    transitions.claim(job.pk, HOLDER)
    assert transitions.end_slice(job.pk, HOLDER, Outcome.succeeded({"n": 3}, row_errors=2))
    ended = fresh(job)
    assert (ended.status, ended.result) == (S.SUCCEEDED, {"n": 3})
    assert ended.message == "Succeeded with 2 row errors"
    note = ended.notifications.get()
    assert (note.level, note.message) == ("error", f"{ended.title} finished with 2 row errors")


def test_an_outcome_scrubs_every_text_it_stores_and_carries_the_usage():
    outcome = Outcome.failed("key sk-123 refused", "Traceback: sk-123")
    outcome.add_usage({"run_seconds": 1.5, "cpu_seconds": 0.2, "peak_rss_mb": 80.0})
    outcome.scrub(lambda text: text.replace("sk-123", "***"))
    assert outcome.fields["error"] == outcome.message == "key *** refused"
    assert outcome.fields["traceback"] == "Traceback: ***"
    assert outcome.notification == ("error", "failed: key *** refused")
    assert outcome.fields["run_seconds"] == 1.5 and outcome.ended


def test_a_retry_later_says_when_and_a_restart_keeps_its_new_budget_start():
    again = Outcome.retrying(
        attempt=1, max_attempts=3, error="e", tb="", delay=2.0, reason="Transient error: e"
    )
    assert again.message == "Transient error: e; retrying in 2.0 s (attempt 2 of 3)"
    assert (again.status, again.data, again.ended) == (
        S.RETRYING,
        {"delay": 2.0, "attempt": 1},
        False,
    )
    restart = Outcome.retrying(
        attempt=1, max_attempts=3, error="e", tb="", delay=2.0, reason="x", restart_at=7.5
    )
    assert restart.fields["run_seconds_at_retry"] == 7.5
    assert "restarting from the beginning in 2.0 s" in restart.message


@pytest.mark.django_db
def test_dispatch_marks_are_set_cleared_for_unleased_jobs_and_go_stale(user):
    free = _job_in(user, S.QUEUED, leased=False)
    held = _job_in(user, S.RUNNING, leased=True)
    transitions.mark_dispatched([free.pk, held.pk])
    assert fresh(free).dispatched_at is not None
    transitions.clear_dispatch([free.pk, held.pk])
    assert fresh(free).dispatched_at is None and fresh(held).dispatched_at is not None
    transitions.mark_dispatched([free.pk])
    assert transitions.release_stale_dispatches(fresh(free).dispatched_at) == 0
    later = fresh(free).dispatched_at + timedelta(seconds=1)
    assert transitions.release_stale_dispatches(later) == 1  # the held job's mark stays
    assert fresh(held).dispatched_at is not None


@pytest.mark.django_db
def test_a_resume_withdraws_a_pause_not_yet_acted_on(user):
    job = _job_in(user, S.RUNNING, leased=True)
    assert transitions.pause(job) == "requested"
    assert transitions.resume(job) == "withdrawn"
    assert (fresh(job).status, fresh(job).requested) == (S.RUNNING, "")
    assert [m for _, _, m in _events(job)][-2:] == ["Pause requested", "Pause request withdrawn"]


@pytest.mark.django_db
def test_only_a_finished_job_is_deleted(user):
    running = _job_in(user, S.RUNNING, leased=True)
    done = _job_in(user, S.SUCCEEDED, leased=False)
    assert not transitions.delete(running)
    assert transitions.delete(done)
    assert list(Job.objects.values_list("pk", flat=True)) == [running.pk]


@pytest.mark.django_db
def test_a_job_cannot_wait_for_a_missing_or_failed_one(user):
    failed = _job_in(user, S.FAILED, leased=False)
    waiting = Job(kind="demo.count", params={"n": 1}, owner=user)
    with pytest.raises(JobActionError, match=f"Job #{failed.pk} is failed"):
        transitions.create([waiting], after=[failed.pk])
    with pytest.raises(JobActionError, match="There is no job #999999"):
        transitions.create([Job(kind="demo.count", owner=user)], after=[999999])
    upstream = _job_in(user, S.RUNNING, leased=True)
    (downstream,) = transitions.create([Job(kind="demo.count", owner=user)], after=[upstream.pk])
    assert fresh(downstream).upstream_pending == 1 and fresh(upstream).has_dependents


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's one-statement submit")
def test_one_statement_submit_inserts_the_job_its_event_and_its_dispatch_mark(user):
    job = Job(kind="demo.count", params={"n": 1}, owner=user)
    assert transitions.create_in_one_statement(job, ("SELECT 1 AS beyond, 3 AS free", [])) == (
        True,
        3,
    )
    stored = fresh(job)
    assert (stored.status, stored.turn, stored.dispatched_at) == (S.QUEUED, 0, job.dispatched_at)
    assert _events(job) == [("state", S.QUEUED, "Queued")]
    later = Job(kind="demo.count", params={"n": 1}, owner=user)
    assert (
        transitions.create_in_one_statement(later, ("SELECT 0 AS beyond, 0 AS free", []))[0]
        is False
    )
    assert fresh(later).dispatched_at is None and fresh(later).turn == 1
