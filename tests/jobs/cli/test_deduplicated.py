"""The CLI's one rule for verbs that may find their work already being done (`submit`,
`schedule run-now`; jobs/cli/base.py `deduplicated`): nothing new started, and the
command says so: the active job's id on stdout, "Job #N (kind) is already running on
this sheet; nothing new started" on stderr, exit 3; with --json that job's JSON with
`"deduplicated": true` and exit 0. Through the real command (exit codes, streams) and
call_command (JSON)."""

from __future__ import annotations

import pytest

from jobs.cli.base import EXIT_DEDUPLICATED
from jobs.models import Job
from jobs.schedules.services import schedule_create
from tests.jobs.cli.test_verbs import conveyor, run_process
from tests.sheets.make_files import write_csv

S = Job.Status


@pytest.fixture
def people(tmp_path):
    return write_csv(tmp_path / "people.csv", [["name"], ["Ann"], ["Bob"]])


def running_sheet_job(people) -> Job:
    """A clean job on `people`'s sheet, in the running state (as a worker holds it)."""
    job = Job.objects.get(pk=int(conveyor("submit", str(people), "--processor", "clean").out))
    Job.objects.filter(pk=job.pk).update(status=S.RUNNING)
    return job


@pytest.mark.django_db(transaction=True)
def test_a_submit_on_a_sheet_with_a_running_job_says_nothing_started_and_exits_3(admin, people):
    job = running_sheet_job(people)
    sheet = f"sheet:{job.params['sheet_id']}"
    done = run_process("submit", sheet, "--processor", "copy")
    assert done.returncode == EXIT_DEDUPLICATED == 3, done.stderr
    assert done.stdout == f"{job.pk}\n"  # the job that holds the sheet, for a script to follow
    assert done.stderr == (
        f"Job #{job.pk} (sheets.process: people.csv · Clean and validate) is already running on this "
        f"sheet; nothing new started (manage.py conveyor status {job.pk}).\n"
    )
    waited = run_process("submit", sheet, "--processor", "copy", "--wait")
    assert waited.returncode == 3 and "nothing new started" in waited.stderr  # never waits
    assert list(Job.objects.values_list("pk", flat=True)) == [job.pk]


@pytest.mark.django_db
def test_with_json_a_deduplicated_submit_is_exit_0_and_says_deduplicated(admin, people):
    fresh_submit = conveyor("submit", str(people), "--processor", "clean", "--json")
    assert fresh_submit.code == 0 and fresh_submit.json()["deduplicated"] is False
    job = Job.objects.get()
    again = conveyor("submit", f"sheet:{job.params['sheet_id']}", "--processor", "copy", "--json")
    assert (again.code, again.err) == (0, "")
    data = again.json()
    assert (data["id"], data["status"], data["deduplicated"]) == (job.pk, "queued", True)
    assert Job.objects.count() == 1


@pytest.mark.django_db
def test_schedule_run_now_follows_the_same_rule(admin):
    schedule = schedule_create(owner=admin, kind="demo.count", params={"n": 3}, every=3600)
    first = conveyor("schedule", "run-now", str(schedule.pk), "--json").json()
    assert first["deduplicated"] is False
    again = conveyor("schedule", "run-now", str(schedule.pk))
    assert (again.code, again.out) == (EXIT_DEDUPLICATED, f"{first['id']}\n")
    assert again.err == (
        f"Job #{first['id']} (demo.count) is already queued for schedule #{schedule.pk}; "
        f"nothing new started (manage.py conveyor status {first['id']}).\n"
    )
    as_json = conveyor("schedule", "run-now", str(schedule.pk), "--json")
    assert as_json.code == 0 and as_json.json()["deduplicated"] is True
    assert as_json.json()["id"] == first["id"] and Job.objects.count() == 1
