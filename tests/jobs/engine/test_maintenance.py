"""jobs/engine/maintenance.py, retention: finished jobs older than the setting go, with
their events, row results, notifications and units; nothing younger, nothing active.
The periodic schedule (`run_periodic`) and the `prune_jobs` command do the same sweep."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO
from types import SimpleNamespace

import pytest
from django.core.management import CommandError, call_command

from jobs.engine import maintenance
from jobs.engine.recovery import SCHEDULE_NAME, ensure_schedule
from jobs.engine.runner import run_one_slice
from jobs.models import DemoUnit, Job, JobEvent, Notification
from sheets.models import RowResult
from sheets.services import sheet_job_submit
from tests.jobs.factories import submit_demo
from tests.sheets.factories import make_sheet, run_to_end

pytestmark = pytest.mark.django_db

S = Job.Status
NOW = datetime(2026, 3, 1, 12, 0, 0, 0, tzinfo=UTC)
DAYS = 30
CUTOFF = NOW - timedelta(days=DAYS)
MICROSECOND = timedelta(microseconds=1)


@pytest.fixture
def frozen(monkeypatch, settings):
    """Pruning sees a fixed 'now'; the retention setting is DAYS."""
    monkeypatch.setattr(maintenance, "timezone", SimpleNamespace(now=lambda: NOW))
    settings.CONVEYOR_RETENTION_DAYS = DAYS


def finished(owner, status: str = S.SUCCEEDED, at: datetime = CUTOFF, **params) -> Job:
    """A demo job run to completion in-process (units, events, notification), then dated."""
    job = submit_demo(owner, n=params.pop("n", 3), batch=3, **params)
    while Job.objects.get(pk=job.pk).status in Job.ACTIVE:
        run_one_slice(job.pk)
    Job.objects.filter(pk=job.pk).update(status=status, finished_at=at)
    return job


def remaining() -> set[int]:
    return set(Job.objects.values_list("pk", flat=True))


def test_prunes_exactly_the_finished_jobs_older_than_the_setting(frozen, user):
    just_older = finished(user, at=CUTOFF - MICROSECOND)
    failed_old = finished(user, S.FAILED, at=CUTOFF - timedelta(days=300))
    cancelled_old = finished(user, S.CANCELLED, at=CUTOFF - timedelta(hours=1))
    at_cutoff = finished(user, at=CUTOFF)
    just_younger = finished(user, at=CUTOFF + MICROSECOND)
    recent = finished(user, S.FAILED, at=NOW - timedelta(minutes=5))
    # Active jobs stay whatever their age (even with a stale finish time from a retry).
    queued_old = submit_demo(user, n=3)
    Job.objects.filter(pk=queued_old.pk).update(created_at=NOW - timedelta(days=400))
    retried = finished(user, at=CUTOFF - timedelta(days=2))
    Job.objects.filter(pk=retried.pk).update(status=S.QUEUED)

    assert maintenance.prunable_jobs().count() == 3
    assert maintenance.prune_finished_jobs() == 3

    assert remaining() == {
        at_cutoff.pk,
        just_younger.pk,
        recent.pk,
        queued_old.pk,
        retried.pk,
    }
    gone = [just_older.pk, failed_old.pk, cancelled_old.pk]
    for model in (JobEvent, Notification, DemoUnit):
        assert not model.objects.filter(job_id__in=gone).exists(), model.__name__
        assert model.objects.filter(job_id=at_cutoff.pk).exists(), model.__name__


def test_row_results_of_pruned_sheet_jobs_go_too(frozen, user):
    sheet = make_sheet(user, [["email"], ["a@example.com"], ["b@example.com"]])
    old = run_to_end(sheet_job_submit(sheet=sheet, owner=user, processor="clean")[0])
    young = run_to_end(sheet_job_submit(sheet=sheet, owner=user, processor="clean")[0])
    Job.objects.filter(pk=old.pk).update(finished_at=CUTOFF - timedelta(days=1))
    Job.objects.filter(pk=young.pk).update(finished_at=CUTOFF + timedelta(days=1))
    assert RowResult.objects.filter(job=old).count() == 2

    assert maintenance.prune_finished_jobs() == 1

    assert not RowResult.objects.filter(job_id=old.pk).exists()
    assert RowResult.objects.filter(job=young).count() == 2
    assert sheet.rows.count() == 2, "the sheet itself is kept"


def test_a_large_backlog_is_deleted_in_batches(frozen, user, monkeypatch):
    monkeypatch.setattr(maintenance, "PRUNE_BATCH_JOBS", 2)
    old = [finished(user, at=CUTOFF - timedelta(days=i + 1)) for i in range(5)]
    keep = finished(user, at=NOW)
    assert maintenance.prune_finished_jobs() == 5
    assert remaining() == {keep.pk}
    assert not JobEvent.objects.filter(job_id__in=[j.pk for j in old]).exists()


def test_an_explicit_age_overrides_the_setting_and_zero_means_every_finished_job(frozen, user):
    week_old = finished(user, at=NOW - timedelta(days=7, seconds=1))
    today = finished(user, at=NOW - timedelta(seconds=1))
    active = submit_demo(user, n=1)
    assert maintenance.prune_finished_jobs(days=7) == 1
    assert remaining() == {today.pk, active.pk}
    assert week_old.pk not in remaining()
    assert maintenance.prune_finished_jobs(days=0) == 1
    assert remaining() == {active.pk}


def test_retention_setting_of_zero_turns_the_periodic_sweep_off(frozen, user, settings):
    settings.CONVEYOR_RETENTION_DAYS = 0
    job = finished(user, at=NOW - timedelta(days=3000))
    assert maintenance.prune_finished_jobs() == 0
    assert job.pk in remaining()


def test_the_periodic_schedule_prunes_with_the_setting(frozen, user):
    ensure_schedule()
    from django_q.models import Schedule

    schedule = Schedule.objects.get(name=SCHEDULE_NAME)
    assert schedule.func == "jobs.engine.maintenance.run_periodic" and schedule.repeats == -1
    old = finished(user, at=CUTOFF - timedelta(seconds=1))
    young = finished(user, at=CUTOFF + timedelta(seconds=1))

    result = maintenance.run_periodic()

    assert result["pruned_jobs"] == 1
    assert old.pk not in remaining() and young.pk in remaining()


def test_the_periodic_sweep_drops_shared_states_nobody_changed_for_a_day():
    from django.utils import timezone

    from jobs.engine.shared_state import apply_shared_state
    from jobs.models import SharedState

    def bump(state, now):
        state["n"] = state.get("n", 0) + 1
        return state["n"]

    assert [apply_shared_state(key, bump) for key in ("old", "new", "new")] == [1, 1, 2]
    SharedState.objects.filter(key="old").update(updated_at=timezone.now() - timedelta(days=2))
    assert maintenance.run_periodic()["pruned_shared_state"] == 1
    assert list(SharedState.objects.values_list("key", "state")) == [("new", {"n": 2})]


# -- the command -------------------------------------------------------------------------


def run_command(*args: str) -> str:
    out = StringIO()
    call_command("prune_jobs", *args, stdout=out)
    return out.getvalue().strip()


def test_command_dry_run_counts_without_deleting(frozen, user):
    old = [finished(user, at=CUTOFF - timedelta(days=1)) for _ in range(2)]
    assert run_command("--dry-run") == "Would delete 2 jobs finished more than 30 days ago."
    assert {j.pk for j in old} <= remaining()
    assert run_command() == "Deleted 2 jobs finished more than 30 days ago."
    assert not {j.pk for j in old} & remaining()
    assert run_command() == "Deleted 0 jobs finished more than 30 days ago."


def test_command_days_option(frozen, user):
    finished(user, at=NOW - timedelta(days=2))
    keep = finished(user, at=NOW - timedelta(hours=1))
    assert run_command("--days", "1", "--dry-run") == (
        "Would delete 1 job finished more than 1 day ago."
    )
    assert run_command("--days", "1") == "Deleted 1 job finished more than 1 day ago."
    assert remaining() == {keep.pk}
    with pytest.raises(CommandError, match="--days must be 0 or more"):
        run_command("--days", "-1")


def test_command_with_retention_off_prunes_nothing_unless_told(frozen, user, settings):
    settings.CONVEYOR_RETENTION_DAYS = 0
    job = finished(user, at=NOW - timedelta(days=90))
    assert run_command().startswith("Retention is off")
    assert job.pk in remaining()
    assert run_command("--days", "60") == "Deleted 1 job finished more than 60 days ago."
