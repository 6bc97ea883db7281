"""`manage.py conveyor schedule list|show|pause|resume|delete|run-now` (jobs/cli/schedules.py):
what they print and change, scoped to the acting user, with bad input as exit code 2
and one error line."""

from __future__ import annotations

import pytest

from jobs.cli.base import GROUPS, VERBS
from jobs.management.commands import conveyor as command  # registers every app's verbs
from jobs.models import Job, Schedule
from jobs.schedules.services import run_due_schedules, schedule_create
from tests.jobs.cli.test_verbs import conveyor, run_process

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(staff_user):
    return staff_user


def make(owner, **kw) -> Schedule:
    fields = {"kind": "demo.count", "params": {"n": 1}, "every": 600, "name": "Count", **kw}
    return schedule_create(owner=owner, **fields)


def test_schedule_is_a_verb_group_apps_add_to():
    assert command.cli.GROUPS is GROUPS and "schedule" in GROUPS
    names = {key for key in VERBS if key.startswith("schedule ")}
    assert names >= {
        "schedule list",
        "schedule show",
        "schedule pause",
        "schedule resume",
        "schedule delete",
        "schedule run-now",
        "schedule add",  # registered by sheets/cli.py
    }


def test_list_and_show(admin):
    schedule = make(admin, name="Hourly count", every=3600)
    table = conveyor("schedule", "list").out
    assert "Hourly count" in table and "every 1 h" in table and "enabled" in table
    listed = conveyor("schedule", "list", "--json").json()
    assert [s["id"] for s in listed] == [schedule.pk]
    shown = conveyor("schedule", "show", str(schedule.pk)).out
    assert f"Schedule #{schedule.pk}" in shown and "Next run" in shown
    assert conveyor("schedule", "show", str(schedule.pk), "--json").json()["every"] == 3600
    assert len(conveyor("schedule", "list").out.splitlines()) == 2  # header and one row


def test_pause_resume_run_now_delete(admin):
    schedule = make(admin)
    assert "is paused" in conveyor("schedule", "pause", str(schedule.pk)).out
    assert not Schedule.objects.get().enabled
    assert conveyor("schedule", "pause", str(schedule.pk)).code == 2  # already paused
    resumed = conveyor("schedule", "resume", str(schedule.pk), "--json").json()
    assert resumed["enabled"] and resumed["next_run_at"]
    job_id = int(conveyor("schedule", "run-now", str(schedule.pk)).out)
    job = Job.objects.get(pk=job_id)
    assert (job.schedule_id, job.kind) == (schedule.pk, "demo.count")
    refused = conveyor("schedule", "run-now", str(schedule.pk))  # nothing new: exit 3
    assert refused.code == 3 and "already queued for schedule" in refused.err
    assert "deleted" in conveyor("schedule", "delete", str(schedule.pk)).out
    assert not Schedule.objects.exists() and Job.objects.filter(pk=job_id).exists()


def test_a_user_sees_and_changes_only_their_own_schedules(admin, user, other_user):
    mine, theirs = make(user, name="mine"), make(other_user, name="theirs")
    listed = conveyor("schedule", "list", "--json", "--user", "alice").json()
    assert [s["id"] for s in listed] == [mine.pk]
    for verb in ("show", "pause", "resume", "delete", "run-now"):
        result = conveyor("schedule", verb, str(theirs.pk), "--user", "alice")
        assert result.code == 2 and f"Schedule #{theirs.pk} not found" in result.err, verb
    assert Schedule.objects.get(pk=theirs.pk).enabled
    assert len(conveyor("schedule", "list", "--json").json()) == 2  # the superuser sees all


def test_show_tells_how_the_last_run_went(admin):
    schedule = make(admin, every=60)
    run_due_schedules(schedule.next_run_at)
    job = Job.objects.get()
    assert f"job #{job.pk} queued" in conveyor("schedule", "show", str(schedule.pk)).out
    assert f"job #{job.pk} queued" in conveyor("schedule", "list").out


@pytest.mark.django_db(transaction=True)
def test_bad_input_is_exit_2_with_one_error_line(admin):
    cases = [
        (["schedule", "show", "abc"], "is not a schedule id"),
        (["schedule", "show", "999"], "Schedule #999 not found"),
        (["schedule"], "the following arguments are required"),
        (["schedule", "explode", "1"], "invalid choice"),
        (["schedule", "list", "--limit", "0"], "--limit must be at least 1"),
    ]
    for args, message in cases:
        done = run_process(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.startswith("Error: ") and message in done.stderr, done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
