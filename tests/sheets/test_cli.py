"""Sheets on a schedule: `conveyor schedule add SOURCE ...` (sheets/cli.py) for a file
(imported once), `sheet:ID`, or a Google Sheet link, which each run re-reads
(`google_url` in sheets/kinds.py); and `conveyor submit sheet:ID`."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.models import Job, JobEvent, Schedule
from jobs.schedules.services import run_due_schedules
from sheets.models import RowResult, Sheet
from tests.jobs.cli.test_verbs import GOOGLE_ID, PEOPLE, conveyor, run_in_process, run_process
from tests.sheets.make_files import write_csv

pytest_plugins = ["tests.fakes.google_sheets"]
pytestmark = pytest.mark.django_db

S = Job.Status
URL = f"https://docs.google.com/spreadsheets/d/{GOOGLE_ID}/edit"


@pytest.fixture
def admin(staff_user):
    return staff_user


@pytest.fixture
def people(tmp_path) -> Path:
    return write_csv(tmp_path / "people.csv", PEOPLE)


def due_run(schedule_id: int) -> Job:
    """Start the schedule's next due run (as a worker's heartbeat would) and return it."""
    schedule = Schedule.objects.get(pk=schedule_id)
    [outcome] = run_due_schedules(schedule.next_run_at)
    assert outcome.outcome == "started", outcome
    return Job.objects.get(pk=outcome.job_id)


def test_a_file_is_imported_once_and_each_run_processes_that_sheet(admin, people):
    result = conveyor(
        "schedule", "add", str(people), "--processor", "clean", "--option", "case=upper",
        "--columns", "name,email", "--every", "10m", "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    data = result.json()
    sheet = Sheet.objects.get()
    assert (data["kind"], data["every"], data["owner"]) == ("sheets.process", 600, "operator")
    assert data["params"]["sheet_id"] == sheet.pk and "google_url" not in data["params"]
    assert data["name"].startswith("people.csv · ")
    first = run_in_process(due_run(data["id"]).pk)
    second = run_in_process(due_run(data["id"]).pk)
    assert (first.status, second.status) == (S.SUCCEEDED, S.SUCCEEDED)
    assert first.params["sheet_id"] == second.params["sheet_id"] == sheet.pk
    assert Sheet.objects.count() == 1
    assert RowResult.objects.filter(job=second).count() == 3


def test_cron_in_a_time_zone_is_shown_in_words(admin, people):
    result = conveyor(
        "schedule", "add", str(people), "--processor", "clean",
        "--cron", "0 7 * * 1-5", "--timezone", "Europe/Paris", "--overlap", "queue",
        "--name", "Weekday clean-up", "--priority", "low",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert "Weekday clean-up" in result.out and "0 7 * * 1-5 (Europe/Paris)" in result.out
    schedule = Schedule.objects.get()
    assert (schedule.overlap, schedule.priority) == ("queue", -10)


def test_an_imported_sheet_by_id(admin, people):
    job_id = int(conveyor("submit", str(people), "--processor", "clean").out)
    sheet_id = Job.objects.get(pk=job_id).params["sheet_id"]
    result = conveyor(
        "schedule", "add", f"sheet:{sheet_id}", "--processor", "clean", "--every", "1h"
    )
    assert result.code == 0, result.err
    assert Schedule.objects.get().params["sheet_id"] == sheet_id
    assert Sheet.objects.count() == 1


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--cron", "0 7 * *"], "--cron: must have 5 fields"),
        (["--cron", "0 7 * * *", "--timezone", "Mars/Olympus"], "--timezone: unknown time zone"),
        (["--every", "1s"], "--every: must be at least"),
        (["--every", "sometimes"], "--every: 'sometimes' is not an interval"),
        (["--every", "1h", "--priority", "urgent"], "Bad --priority"),
        (["--every", "1h", "--columns", "nope"], "--columns: Not columns of this sheet"),
        (["--every", "1h", "--option", "case=sideways"], "--option case"),
    ],
)
def test_bad_schedules_are_exit_2_and_leave_nothing_behind(admin, people, flags, message):
    result = conveyor("schedule", "add", str(people), "--processor", "clean", *flags)
    assert result.code == 2
    assert message in result.err, result.err
    assert not Schedule.objects.exists() and not Sheet.objects.exists()


def test_cron_and_every_together_or_neither_are_refused(admin, people):
    both = conveyor(
        "schedule",
        "add",
        str(people),
        "--processor",
        "clean",
        "--cron",
        "0 7 * * *",
        "--every",
        "1h",
    )
    neither = conveyor("schedule", "add", str(people), "--processor", "clean")
    assert both.code == neither.code == 2
    assert "not allowed with argument" in both.err
    assert "one of the arguments --cron --every is required" in neither.err
    assert not Sheet.objects.exists()


def test_another_users_sheet_is_not_found(admin, user, people):
    job_id = int(conveyor("submit", str(people), "--processor", "clean").out)
    sheet_id = Job.objects.get(pk=job_id).params["sheet_id"]
    result = conveyor(
        "schedule", "add", f"sheet:{sheet_id}", "--processor", "clean", "--every", "1h",
        "--user", "alice",
    )  # fmt: skip
    assert result.code == 2 and f"No sheet #{sheet_id}" in result.err
    assert not Schedule.objects.exists() and Sheet.objects.filter(pk=sheet_id).exists()


@pytest.mark.django_db(transaction=True)
def test_a_bad_cron_from_the_shell_is_one_error_line(admin, people):
    done = run_process(
        "schedule", "add", str(people), "--processor", "clean", "--cron", "every morning"
    )
    assert done.returncode == 2
    assert done.stderr.startswith("Error: --cron:") and done.stderr.count("\n") == 1
    assert not Sheet.objects.exists()


# -- Google Sheets: re-read at every run -----------------------------------------------------


def test_a_google_sheet_on_a_schedule_is_re_read_at_every_run(admin, google_sheets):
    spreadsheet = google_sheets.add_spreadsheet(GOOGLE_ID, "Contacts", {"People": PEOPLE})
    result = conveyor(
        "schedule", "add", URL, "--processor", "clean", "--cron", "0 7 * * *",
        "--timezone", "Europe/Paris", "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    data = result.json()
    assert data["params"]["google_url"] == URL
    template = Sheet.objects.get()

    spreadsheet.worksheets[0].rows.append(["Dee", "dee@example.com", ""])
    first = due_run(data["id"])
    assert first.params == Schedule.objects.get().params  # nothing extra at submit
    first = run_in_process(first.pk)
    assert first.status == S.SUCCEEDED, first.error
    reread = Sheet.objects.get(pk=first.params["sheet_id"])
    assert reread.pk != template.pk and reread.google_id == GOOGLE_ID
    assert (reread.row_count, first.total, first.processed) == (4, 4, 4)
    assert first.entity_key == f"sheet:{reread.pk}"
    assert RowResult.objects.filter(job=first).count() == 4
    messages = JobEvent.objects.filter(job=first).values_list("message", flat=True)
    assert any("Re-read the Google Sheet" in m for m in messages)

    spreadsheet.worksheets[0].rows.append(["Eve", "eve@example.com", ""])
    second = run_in_process(due_run(data["id"]).pk)
    assert second.status == S.SUCCEEDED
    assert Sheet.objects.get(pk=second.params["sheet_id"]).row_count == 5
    assert second.processed == 5


def test_a_google_sheet_that_lost_a_column_fails_the_run_clearly(admin, google_sheets):
    spreadsheet = google_sheets.add_spreadsheet(GOOGLE_ID, "Contacts", {"People": PEOPLE})
    data = conveyor(
        "schedule", "add", URL, "--processor", "clean", "--columns", "email", "--every", "1h",
        "--json",
    ).json()  # fmt: skip
    spreadsheet.worksheets[0].rows = [["name", "mail"], ["Ann", "ann@example.com"]]
    job = run_in_process(due_run(data["id"]).pk)
    assert job.status == S.FAILED
    assert "no longer has the column(s) email" in job.error
    assert Sheet.objects.count() == 1  # the re-read sheet is not kept


# -- submit sheet:ID --------------------------------------------------------------------------


def test_submit_accepts_an_imported_sheet_by_id_and_never_deletes_it(admin, people):
    first = Job.objects.get(pk=int(conveyor("submit", str(people), "--processor", "clean").out))
    sheet_id = first.params["sheet_id"]
    run_in_process(first.pk)
    again = conveyor("submit", f"sheet:{sheet_id}", "--processor", "clean", "--json")
    assert again.code == 0, again.err
    assert again.json()["entity_key"] == f"sheet:{sheet_id}"
    refused = conveyor("submit", f"sheet:{sheet_id}", "--processor", "clean", "--columns", "nope")
    assert refused.code == 2 and "--columns" in refused.err
    assert Sheet.objects.filter(pk=sheet_id).exists()
    missing = conveyor("submit", "sheet:99999", "--processor", "clean")
    assert missing.code == 2 and "No sheet #99999" in missing.err


def test_queue_on_a_sheet_skips_while_the_sheet_has_an_active_job(admin, people):
    data = conveyor(
        "schedule", "add", str(people), "--processor", "clean", "--every", "1h",
        "--overlap", "queue", "--json",
    ).json()  # fmt: skip
    first = due_run(data["id"])
    schedule = Schedule.objects.get()
    [outcome] = run_due_schedules(schedule.next_run_at)
    assert (outcome.outcome, outcome.job_id) == ("skipped", first.pk)
    assert f"is active on sheet:{first.params['sheet_id']}" in outcome.reason
    assert Schedule.objects.get().skipped_count == 1


def test_schedule_add_beyond_the_ceiling_is_a_one_line_error(user, people, settings):
    settings.CONVEYOR_MAX_SCHEDULES_PER_USER = 1
    add = ("schedule", "add", str(people), "--processor", "clean", "--every", "1h")
    assert conveyor(*add, "--user", user.username).code == 0
    refused = conveyor(*add, "--user", user.username)
    assert refused.code == 2 and "CONVEYOR_MAX_SCHEDULES_PER_USER=1" in refused.err
    assert (Schedule.objects.count(), Sheet.objects.count()) == (1, 1)  # nothing left behind
