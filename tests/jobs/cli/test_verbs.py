"""jobs/cli/verbs.py and the verbs apps register (sheets: submit, export) through
`manage.py conveyor`: in-process through call_command for what they print and change,
and as a real subprocess for exit codes, one-line errors, Ctrl-C and `--wait` against
a real cluster. Progress display and waiting alone: test_base.py."""

from __future__ import annotations

import csv
import io
import json
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import openpyxl
import pytest
from django.core.management import call_command

from jobs.cli.base import EXIT_BAD_INPUT, CliError
from jobs.engine.runner import run_one_slice
from jobs.engine.services import job_cancel
from jobs.models import Job
from sheets.models import Sheet
from tests.conftest import subprocess_env
from tests.jobs.factories import fresh, submit_demo
from tests.sheets.make_files import write_csv, write_xlsx
from tests.support.processes import ROOT, wait_for

pytest_plugins = ["tests.fakes.google_sheets"]

S = Job.Status
JSON_FIELDS = {
    "id",
    "kind",
    "status",
    "priority",
    "total",
    "processed",
    "failed",
    "percent",
    "message",
    "error",
    "created_at",
    "started_at",
    "finished_at",
}
PEOPLE = [
    ["name", "email", "phone"],
    ["  Ann   Smith ", "ANN@Example.com", "4155552671"],
    ["=HYPERLINK(1)", "bob@example.com", "+44 20 7946 0958"],
    ["Cy", "not an email", ""],
]
GOOGLE_ID = "1BxiMVs0XRA5nFMdKvBdBZjgmUUqptlbs74OgvE2upms"


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


def conveyor(*args: str) -> Result:
    """Run the command in-process; a CliError becomes its exit code and stderr line."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("conveyor", *args, stdout=out, stderr=err)
    except CliError as exc:
        return Result(exc.code, out.getvalue(), err.getvalue() + exc.message)
    return Result(0, out.getvalue(), err.getvalue())


def conveyor_process(*args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "conveyor", *args],
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def run_process(*args: str) -> subprocess.CompletedProcess:
    proc = conveyor_process(*args)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run_in_process(job_id: int) -> Job:
    """Run the job's slices here (no cluster) until it finishes."""
    for _ in range(20):
        run_one_slice(job_id)
        job = Job.objects.get(pk=job_id)
        if job.is_terminal:
            return job
    raise AssertionError(f"job #{job_id} did not finish")


@pytest.fixture
def people(tmp_path) -> Path:
    return write_csv(tmp_path / "people.csv", PEOPLE)


@pytest.fixture
def finished_job(admin, people) -> Job:
    """A clean job over `people`, run to success in this process."""
    job_id = int(conveyor("submit", str(people), "--processor", "clean").out)
    return run_in_process(job_id)


# -- submit -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_submit_imports_the_file_and_prints_the_queued_job_id(admin, people):
    result = conveyor(
        "submit", str(people), "--processor", "clean", "--option", "case=upper",
        "--columns", "name,email", "--priority", "high",
    )  # fmt: skip
    assert (result.code, result.err) == (0, "")
    job = Job.objects.get(pk=int(result.out))
    assert (job.kind, job.status, job.owner, job.priority, job.total) == (
        "sheets.process",
        S.QUEUED,
        admin,
        10,
        3,
    )
    assert job.params["options"]["case"] == "upper"
    assert job.params["columns"] == ["name", "email"]
    sheet = Sheet.objects.get(pk=job.params["sheet_id"])
    assert (sheet.name, sheet.row_count, sheet.owner) == ("people.csv", 3, admin)


@pytest.mark.django_db
def test_submit_json_has_the_job_fields(admin, people):
    result = conveyor("submit", str(people), "--processor", "clean", "--priority", "7", "--json")
    data = result.json()
    assert set(data) >= JSON_FIELDS
    assert data["kind"] == "sheets.process" and data["status"] == "queued"
    assert (data["priority"], data["total"], data["processed"], data["percent"]) == (7, 3, 0, 0)
    assert data["created_at"].endswith("+00:00") and data["finished_at"] is None


@pytest.mark.django_db
def test_submit_a_row_range_of_a_named_xlsx_worksheet(admin, tmp_path):
    book = write_xlsx(
        tmp_path / "book.xlsx", {"Notes": [["x"], ["y"]], "People": PEOPLE}
    )  # fmt: skip
    result = conveyor(
        "submit", str(book), "--processor", "clean", "--worksheet", "People",
        "--start-row", "2", "--rows", "5",
    )  # fmt: skip
    job = Job.objects.get(pk=int(result.out))
    assert (job.params["start_row"], job.params["row_count"], job.total) == (2, 2, 2)
    assert Sheet.objects.get(pk=job.params["sheet_id"]).worksheet == "People"


@pytest.mark.django_db
def test_submit_accepts_a_google_sheet_link(admin, google_sheets):
    google_sheets.add_spreadsheet(GOOGLE_ID, "Contacts", {"People": PEOPLE})
    url = f"https://docs.google.com/spreadsheets/d/{GOOGLE_ID}/edit"
    job = Job.objects.get(pk=int(conveyor("submit", url, "--processor", "clean").out))
    sheet = Sheet.objects.get(pk=job.params["sheet_id"])
    assert (sheet.source, sheet.google_id, sheet.row_count) == ("gsheet", GOOGLE_ID, 3)


@pytest.mark.django_db
def test_submit_acts_as_the_first_superuser_unless_told(admin, user, people, django_user_model):
    django_user_model.objects.create_superuser("later", password="later-password")
    as_admin = conveyor("submit", str(people), "--processor", "clean")
    as_alice = conveyor("submit", str(people), "--processor", "clean", "--user", "alice")
    assert Job.objects.get(pk=int(as_admin.out)).owner == admin
    assert Job.objects.get(pk=int(as_alice.out)).owner == user


def bad_inputs(tmp: Path, people: Path) -> list[tuple[list[str], str]]:
    empty = tmp / "empty.csv"
    empty.write_bytes(b"")
    header_only = write_csv(tmp / "header.csv", [["name", "email"]])
    pdf = tmp / "report.csv"
    pdf.write_bytes(b"%PDF-1.7 not a sheet")
    clean = ["--processor", "clean"]
    return [
        ([str(tmp / "missing.csv"), *clean], f"No such file: {tmp / 'missing.csv'}"),
        ([str(tmp), *clean], "is not a file"),
        ([str(empty), *clean], "“empty.csv” is empty."),
        ([str(header_only), *clean], "no data rows"),
        ([str(pdf), *clean], "a PDF document"),
        (
            [str(people), "--processor", "nope"],
            "Available processors: clean, copy, llm, plugin.length, web.",
        ),
        ([str(people), *clean, "--option", "case=weird"], "--option case: Choose one of: keep,"),
        ([str(people), *clean, "--option", "colour=red"], "--option colour: Unknown option."),
        ([str(people), *clean, "--option", "case"], "--option takes NAME=VALUE, not 'case'."),
        ([str(people), *clean, "--columns", "name,zzz"], "--columns: Not columns of this sheet"),
        ([str(people), *clean, "--start-row", "9"], "--start-row: Start row must be between 1"),
        ([str(people), *clean, "--rows", "-1"], "--rows: Number of rows must be a positive"),
        ([str(people), *clean, "--priority", "urgent"], "Bad --priority 'urgent'"),
        ([str(people), *clean, "--user", "nobody"], "No active user named 'nobody'."),
        ([str(people)], "the following arguments are required: --processor"),
        ([str(people), *clean, "--bogus"], "unrecognized arguments: --bogus"),
        (["https://example.com/sheet", *clean], "is not a Google Sheets link or id"),
    ]


@pytest.mark.django_db
def test_every_bad_submission_is_exit_2_with_one_line_and_creates_nothing(admin, people, tmp_path):
    for args, message in bad_inputs(tmp_path, people):
        result = conveyor("submit", *args)
        assert result.code == EXIT_BAD_INPUT, args
        assert message in result.err and "\n" not in result.err.strip(), (args, result.err)
        assert result.out == ""
    assert not Job.objects.exists() and not Sheet.objects.exists()


@pytest.mark.django_db
def test_without_a_superuser_the_user_must_be_named(user, people):
    result = conveyor("submit", str(people), "--processor", "clean")
    assert result.code == EXIT_BAD_INPUT and "No superuser to act as" in result.err
    assert conveyor("submit", str(people), "--processor", "clean", "--user", "alice").code == 0


# -- status, list, actions -------------------------------------------------------------


@pytest.mark.django_db
def test_status_shows_state_progress_and_counts(admin, people):
    job_id = conveyor("submit", str(people), "--processor", "clean").out.strip()
    lines = conveyor("status", job_id).out.splitlines()
    assert lines[0].startswith(f"Job #{job_id}  people.csv")
    assert lines[1] == "Status    queued, priority normal"
    assert lines[2] == "Progress  [....................]   0%  0/3 done, 0 failed"
    data = conveyor("status", f"#{job_id}", "--json").json()
    assert set(data) >= JSON_FIELDS and data["id"] == int(job_id)


@pytest.mark.django_db
def test_list_is_a_table_filtered_by_status_kind_and_limit(admin):
    jobs = [submit_demo(admin, n=3) for _ in range(3)]
    job_cancel(job=jobs[0])
    table = conveyor("list").out.splitlines()
    assert table[0].split() == [
        "ID",
        "STATUS",
        "PRIORITY",
        "PROGRESS",
        "FAILED",
        "CREATED",
        "TITLE",
    ]
    assert [line.split()[0] for line in table[1:]] == [str(j.pk) for j in reversed(jobs)]
    cancelled = conveyor("list", "--status", "cancelled", "--json").json()
    assert [item["id"] for item in cancelled] == [jobs[0].pk]
    assert all(set(item) >= JSON_FIELDS for item in cancelled)
    assert len(conveyor("list", "--limit", "2", "--json").json()) == 2
    assert conveyor("list", "--kind", "sheets.process").out.strip() == "No jobs."
    assert conveyor("list", "--status", "done").code == EXIT_BAD_INPUT


@pytest.mark.django_db
def test_a_user_sees_and_controls_only_their_own_jobs(admin, user, other_user):
    mine, theirs = submit_demo(user, n=3), submit_demo(other_user, n=3)
    listed = conveyor("list", "--user", "alice", "--json").json()
    assert [item["id"] for item in listed] == [mine.pk]
    for action in ("status", "cancel", "pause", "resume", "retry", "export"):
        args = [action, str(theirs.pk), "--user", "alice"]
        result = conveyor(*args, "-o", "-") if action == "export" else conveyor(*args)
        assert result.code == EXIT_BAD_INPUT, action
        assert result.err == f"Job #{theirs.pk} not found (acting as alice)."
    assert fresh(theirs).status == S.QUEUED
    assert conveyor("status", str(theirs.pk)).code == 0, "staff see every job"


@pytest.mark.django_db
def test_pause_resume_cancel_print_the_new_state(admin):
    job = submit_demo(admin, n=3)
    assert conveyor("pause", str(job.pk)).out == f"Job #{job.pk} is paused.\n"
    assert conveyor("resume", str(job.pk)).out == f"Job #{job.pk} is queued.\n"
    assert conveyor("cancel", str(job.pk), "--json").json()["status"] == "cancelled"
    again = conveyor("cancel", str(job.pk))
    assert again.code == EXIT_BAD_INPUT and again.err.endswith("there is nothing to cancel.")
    assert conveyor("resume", str(job.pk)).code == EXIT_BAD_INPUT
    assert conveyor("status", "abc").err == "'abc' is not a job id (a number)."
    assert conveyor("status", "999999").err.startswith("Job #999999 not found")


@pytest.mark.django_db
def test_resume_set_takes_only_what_the_jobs_kind_lets_a_resume_change(admin):
    job = submit_demo(admin, n=3)
    conveyor("pause", str(job.pk))
    refused = conveyor("resume", str(job.pk), "--set", "n=5")
    assert refused.code == EXIT_BAD_INPUT
    assert (
        refused.err
        == f"--set n: unknown field; a resume of job #{job.pk} (demo.count) changes nothing."
    )
    malformed = conveyor("resume", str(job.pk), "--set", "n")
    assert malformed.err == "--set takes NAME=VALUE, not 'n'."
    assert conveyor("pause", str(job.pk), "--set", "n=5").code == EXIT_BAD_INPUT, "resume only"
    assert fresh(job).status == S.PAUSED and fresh(job).params["n"] == 3


@pytest.mark.django_db(transaction=True)
def test_retry_runs_a_finished_job_again(finished_job):
    assert finished_job.status == S.SUCCEEDED and finished_job.processed == 3
    only_failed = conveyor("retry", str(finished_job.pk), "--failed-rows")
    assert only_failed.code == EXIT_BAD_INPUT and "no failed rows" in only_failed.err
    retried = conveyor("retry", str(finished_job.pk), "--json").json()
    assert (retried["status"], retried["processed"], retried["finished_at"]) == ("queued", 0, None)


# -- export ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_export_writes_csv_and_xlsx_with_formulas_neutralised(finished_job, tmp_path):
    target = tmp_path / "out.csv"
    result = conveyor("export", str(finished_job.pk), "-o", str(target))
    assert result.out == f"Wrote 3 rows of job #{finished_job.pk} to {target} (csv).\n"
    assert target.read_bytes().startswith(b"\xef\xbb\xbf"), "a BOM, so Excel reads UTF-8"
    rows = list(csv.reader(target.read_text(encoding="utf-8-sig").splitlines()))
    assert rows[0][:4] == ["name", "email", "phone", "clean_name"]
    assert rows[2][0] == "'=HYPERLINK(1)"
    workbook = tmp_path / "out.xlsx"
    conveyor("export", str(finished_job.pk), "-o", str(workbook))
    cells = list(openpyxl.load_workbook(workbook).active.values)
    assert cells[0][:3] == ("name", "email", "phone") and cells[2][0] == "'=HYPERLINK(1)"


@pytest.mark.django_db(transaction=True)
def test_export_to_stdout_is_csv_without_bom(finished_job):
    result = conveyor("export", str(finished_job.pk), "--format", "csv", "-o", "-")
    assert result.out.startswith("name,email,phone,clean_name,")
    assert len(result.out.splitlines()) == 4
    xlsx = conveyor("export", str(finished_job.pk), "--format", "xlsx", "-o", "-")
    assert xlsx.code == EXIT_BAD_INPUT and "Only CSV can go to standard output" in xlsx.err


@pytest.mark.django_db
def test_export_refuses_jobs_without_rows_and_unwritable_targets(admin, people, tmp_path):
    demo = submit_demo(admin, n=3)
    result = conveyor("export", str(demo.pk), "-o", str(tmp_path / "x.csv"))
    assert result.code == EXIT_BAD_INPUT
    assert result.err == f"Job #{demo.pk} is a demo.count job; only sheets.process jobs have rows."
    job_id = conveyor("submit", str(people), "--processor", "clean").out.strip()
    missing_dir = tmp_path / "no" / "x.csv"
    result = conveyor("export", job_id, "-o", str(missing_dir))
    assert result.code == EXIT_BAD_INPUT and result.err.startswith(f"Cannot write {missing_dir}")


# -- the real command: exit codes, --wait, Ctrl-C ---------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_process_bad_input_is_exit_2_with_one_error_line_and_no_traceback(admin, people, tmp_path):
    cases = [
        (["submit", str(tmp_path / "missing.csv"), "--processor", "clean"], "No such file"),
        (["submit", str(people), "--processor", "nope"], "Unknown processor 'nope'"),
        (["status", "12345"], "Job #12345 not found"),
        (["list", "--limit", "x"], "invalid int value: 'x'"),
    ]
    for args, message in cases:
        done = run_process(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.startswith("Error: ") and message in done.stderr, done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert not Job.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_process_resume_with_a_change_its_kind_refuses_is_exit_2(admin):
    job = submit_demo(admin, n=3)
    conveyor("pause", str(job.pk))
    done = run_process("resume", str(job.pk), "--set", "n=5")
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        f"Error: --set n: unknown field; a resume of job #{job.pk} (demo.count) changes nothing.\n"
    )
    assert fresh(job).status == S.PAUSED


@pytest.mark.django_db(transaction=True)
def test_wait_exits_1_when_the_job_is_cancelled_meanwhile(admin, people):
    proc = conveyor_process("submit", str(people), "--processor", "clean", "--wait")
    job = Job.objects.get(pk=int(proc.stdout.readline()))
    job_cancel(job=job)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    assert err.splitlines()[-1] == f"Job #{job.pk} was cancelled: 0/3 done, 0 failed."


@pytest.mark.django_db(transaction=True)
def test_wait_exits_1_with_the_error_when_the_job_fails(admin, people):
    proc = conveyor_process("submit", str(people), "--processor", "clean", "--wait")
    job = Job.objects.get(pk=int(proc.stdout.readline()))
    Sheet.objects.filter(pk=job.params["sheet_id"]).delete()
    assert run_in_process(job.pk).status == S.FAILED
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    assert err.splitlines()[-1].startswith(f"Job #{job.pk} failed: The sheet was deleted.")


def as_from_a_terminal() -> None:
    """Ctrl-C's default in the child, even when the test run itself ignores SIGINT (a
    shell's background job does): Python then installs its KeyboardInterrupt handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.django_db(transaction=True)
def test_ctrl_c_stops_waiting_but_not_the_job(admin, people):
    proc = conveyor_process(
        "submit", str(people), "--processor", "clean", "--wait", preexec_fn=as_from_a_terminal
    )
    line = proc.stdout.readline()
    assert line.strip().isdigit(), line + proc.stderr.read()
    job_id = int(line)
    first = proc.stderr.readline()
    assert first.startswith(f"Job #{job_id} queued    [....................]   0%  0/3 done")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert err == (
        f"Stopped waiting; job #{job_id} keeps running in the background "
        f"(manage.py conveyor status {job_id}).\n"
    )
    assert Job.objects.get(pk=job_id).status == S.QUEUED


@pytest.mark.cluster
@pytest.mark.django_db(transaction=True)
def test_wait_follows_a_job_on_a_real_cluster_to_success(cluster, admin, tmp_path):
    rows = [["name", "email"]] + [[f" person {i} ", f"P{i}@Example.com"] for i in range(3000)]
    big = write_csv(tmp_path / "big.csv", rows)
    done = run_process("submit", str(big), "--processor", "clean", "--wait", "--json")
    assert done.returncode == 0, done.stderr + cluster.log()
    data = json.loads(done.stdout)
    assert set(data) >= JSON_FIELDS
    assert (data["status"], data["processed"], data["failed"], data["percent"]) == (
        "succeeded",
        3000,
        0,
        100,
    )
    lines = done.stderr.splitlines()
    assert lines[0].startswith(f"Job #{data['id']} queued    [") or "running" in lines[0]
    assert lines[-1].startswith(f"Job #{data['id']} succeeded: 3,000/3,000 done, 0 failed in ")
    assert "Traceback" not in done.stderr and "Enqueued" not in done.stderr
    status = run_process("status", str(data["id"]))
    assert status.returncode == 0 and "Status    succeeded" in status.stdout
    wait_for(lambda: not Job.objects.filter(lease_owner__gt="").exists(), what="leases released")
