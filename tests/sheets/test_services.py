"""Batches of sheet jobs: several files submitted together (CLI, multi-file upload,
API) share one progress, one notification and the batch's controls; owners only."""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client

from jobs.cli.base import CliError
from jobs.models import Batch, Job, Notification
from sheets.models import Sheet
from tests.sheets.factories import make_sheet, run_to_end
from tests.sheets.make_files import write_csv
from tests.support.processes import wait_for

ROWS = [["name", "email"], [" Ann ", "ANN@example.com"], ["Bob", "bob@example.com"]]


def conveyor(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("conveyor", *args, stdout=out, stderr=err)
    except CliError as exc:
        return exc.code, out.getvalue(), exc.message
    return 0, out.getvalue(), err.getvalue()


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def make_batch(user, count: int = 2) -> Batch:
    from sheets.services import sheets_batch_submit

    sheets = [make_sheet(user, ROWS, f"s{i}.csv") for i in range(count)]
    batch, _ = sheets_batch_submit(sheets=sheets, owner=user, processor="clean")
    return batch


@pytest.mark.cluster
@pytest.mark.django_db(transaction=True)
def test_a_cli_batch_of_two_files_runs_as_one_with_one_notification(user, tmp_path, cluster):
    files = [write_csv(tmp_path / f"part{i}.csv", ROWS) for i in (1, 2)]
    code, out, err = conveyor(
        "submit", *map(str, files), "--processor", "clean", "--user", user.username
    )
    assert (code, err) == (0, "")
    first, *job_ids = out.split()[1:]
    batch = Batch.objects.get(pk=int(first))
    assert sorted(int(i) for i in job_ids) == sorted(batch.jobs.values_list("pk", flat=True))
    assert batch.job_count == 2 and batch.owner == user
    wait_for(
        lambda: Batch.objects.get(pk=batch.pk).finished_at is not None,
        timeout=30,
        what="the batch to finish",
    )
    from jobs.selectors import batch_progress

    progress = batch_progress(Batch.objects.get(pk=batch.pk))
    assert progress.percent == 100 and progress.status == "succeeded"
    notes = list(Notification.objects.filter(user=user))
    assert len(notes) == 1, [n.message for n in notes]
    assert notes[0].batch_id == batch.pk and "2 succeeded" in notes[0].message


@pytest.mark.django_db
def test_a_cli_batch_with_a_bad_file_names_it_and_makes_nothing(user, tmp_path):
    good = write_csv(tmp_path / "good.csv", ROWS)
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    code, _, message = conveyor(
        "submit", str(good), str(empty), "--processor", "clean", "--user", user.username
    )
    assert code == 2 and message.startswith(str(empty)), message
    assert not Sheet.objects.exists() and not Job.objects.exists()
    assert not Batch.objects.exists()


@pytest.mark.django_db
def test_cli_batch_json_lists_the_batch_and_its_jobs(user, tmp_path):
    files = [str(write_csv(tmp_path / f"p{i}.csv", ROWS)) for i in (1, 2)]
    code, out, _ = conveyor(
        "submit", *files, "--processor", "clean", "--user", user.username, "--json"
    )
    import json

    body = json.loads(out)
    assert code == 0 and body["job_count"] == 2 and len(body["jobs"]) == 2
    assert Job.objects.get(pk=body["jobs"][0]["id"]).batch_id == body["id"]


@pytest.mark.django_db
def test_bulk_cancel_of_a_batch_cancels_its_jobs_and_notifies_once(user):
    batch = make_batch(user)
    response = logged_in(user).post(f"/jobs/batches/{batch.pk}/cancel/")
    assert response.status_code == 302
    assert set(batch.jobs.values_list("status", flat=True)) == {Job.Status.CANCELLED}
    batch.refresh_from_db()
    assert batch.unfinished == 0 and batch.finished_at is not None
    notes = list(Notification.objects.filter(user=user))
    assert len(notes) == 1 and "2 cancelled" in notes[0].message


@pytest.mark.django_db
def test_a_retried_job_reopens_its_batch_which_notifies_again_when_done(user):
    batch = make_batch(user, count=1)
    job = run_to_end(batch.jobs.get())
    assert job.status == Job.Status.SUCCEEDED
    logged_in(user).post(f"/jobs/batches/{batch.pk}/retry/")
    batch.refresh_from_db()
    assert (batch.unfinished, batch.finished_at) == (1, None)
    run_to_end(batch.jobs.get())
    assert Notification.objects.filter(user=user, batch=batch).count() == 2


@pytest.mark.django_db
def test_the_batch_page_shows_its_progress_and_jobs(user):
    batch = make_batch(user)
    page = logged_in(user).get(f"/jobs/batches/{batch.pk}/").content.decode()
    assert f'data-batch="{batch.pk}"' in page and "0 of 2 jobs ended" in page
    for job in batch.jobs.all():
        assert f'data-job="{job.pk}"' in page


@pytest.mark.django_db
def test_other_users_get_404_for_a_batch_everywhere(user, other_user):
    batch = make_batch(user)
    bob = logged_in(other_user)
    assert bob.get(f"/jobs/batches/{batch.pk}/").status_code == 404
    assert bob.post(f"/jobs/batches/{batch.pk}/cancel/").status_code == 404
    assert bob.get(f"/api/batches/{batch.pk}/").status_code == 404
    assert bob.post(f"/api/batches/{batch.pk}/cancel/").status_code == 404
    assert bob.get("/api/batches/").json()["count"] == 0
    assert set(batch.jobs.values_list("status", flat=True)) == {Job.Status.QUEUED}


@pytest.mark.django_db
def test_api_creates_a_batch_all_or_nothing(user):
    alice = logged_in(user)
    sheets = [make_sheet(user, ROWS, f"a{i}.csv") for i in range(2)]
    jobs = [
        {"kind": "sheets.process", "params": {"sheet_id": s.pk, "processor": "clean"}}
        for s in sheets
    ]
    bad = [
        *jobs,
        {"kind": "sheets.process", "params": {"sheet_id": sheets[0].pk, "processor": "nope"}},
    ]
    response = alice.post(
        "/api/batches/", {"label": "two", "jobs": bad}, content_type="application/json"
    )
    assert response.status_code == 400 and "jobs[2].params" in response.json()["fields"]
    assert not Job.objects.exists() and not Batch.objects.exists()
    response = alice.post(
        "/api/batches/", {"label": "two", "jobs": jobs}, content_type="application/json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["title"], body["job_count"], body["percent"]) == ("two", 2, 0)
    job_id = body["jobs"][0]["id"]
    assert alice.get(f"/api/jobs/{job_id}/").json()["batch"] == body["id"]
    cancelled = alice.post(f"/api/batches/{body['id']}/cancel/").json()
    assert cancelled["changed"] == 2 and cancelled["finished"] is True


def csv_file(name: str, content: bytes = b"name,email\nAnn,ann@example.com\n"):
    return SimpleUploadedFile(name, content, "text/csv")


@pytest.mark.django_db
def test_uploading_several_files_with_a_processor_makes_one_batch(user):
    files = [csv_file("one.csv"), csv_file("two.csv")]
    response = logged_in(user).post("/sheets/upload/", {"file": files, "processor": "clean"})
    batch = Batch.objects.get()
    assert response.status_code == 302 and response.url == f"/jobs/batches/{batch.pk}/"
    names = {job.params["sheet_id"] for job in batch.jobs.all()}
    assert names == set(Sheet.objects.values_list("pk", flat=True)) and len(names) == 2


@pytest.mark.django_db
def test_a_bad_file_in_a_multi_upload_is_named_and_nothing_is_made(user):
    files = [csv_file("good.csv"), csv_file("empty.csv", b""), csv_file("also-good.csv")]
    response = logged_in(user).post("/sheets/upload/", {"file": files, "processor": "clean"})
    assert response.status_code == 400
    page = response.content.decode()
    assert "empty.csv:" in page and "Nothing was imported." in page
    assert not Sheet.objects.exists() and not Job.objects.exists()
    assert not Batch.objects.exists()


@pytest.mark.django_db
def test_a_multi_upload_whose_processor_needs_options_is_refused_before_reading_rows(user):
    files = [csv_file("one.csv"), csv_file("two.csv")]
    response = logged_in(user).post("/sheets/upload/", {"file": files, "processor": "llm"})
    assert response.status_code == 400
    page = response.content.decode()
    assert "one.csv: " in page and "prompt: Write a prompt" in page
    assert "Nothing was imported." in page
    assert not Sheet.objects.exists() and not Job.objects.exists()


@pytest.mark.django_db
def test_a_refused_batch_takes_the_sheets_of_its_upload_with_it(user, settings):
    settings.CONVEYOR_MAX_ACTIVE_JOBS = 1
    files = [csv_file("one.csv"), csv_file("two.csv")]
    response = logged_in(user).post("/sheets/upload/", {"file": files, "processor": "clean"})
    assert response.status_code == 429
    assert not Sheet.objects.exists() and not Job.objects.exists()
    assert not Batch.objects.exists()


@pytest.mark.django_db
def test_a_job_page_links_to_its_batch(user):
    batch = make_batch(user)
    job = batch.jobs.first()
    page = logged_in(user).get(f"/jobs/{job.pk}/").content.decode()
    assert f'href="/jobs/batches/{batch.pk}/"' in page


# -- an import and the work started on it: both or neither (sheet_import_then) ----------


def spooled(rows=ROWS, name: str = "in.csv"):
    from sheets.io.importing import spool_upload
    from tests.sheets.factories import csv_upload

    return spool_upload(upload=csv_upload(rows, name))


def nothing_stored() -> bool:
    from sheets.models import SheetRow

    return not (Sheet.objects.exists() or SheetRow.objects.exists() or Job.objects.exists())


@pytest.mark.django_db(transaction=True)
def test_an_import_and_its_run_are_stored_together(user):
    from sheets.run import SheetRun
    from sheets.services import sheet_import_and_submit

    with spooled() as table:
        sheet, job, created = sheet_import_and_submit(
            table=table, owner=user, run=SheetRun(processor="clean", row_count="1")
        )
    assert created and job.params["sheet_id"] == sheet.pk and job.total == 1
    assert sheet.is_ready and sheet.rows.count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_refused_run_leaves_no_sheet(user):
    from sheets.run import SheetParamsError, SheetRun
    from sheets.services import sheet_import_and_submit

    with spooled() as table, pytest.raises(SheetParamsError, match="Not columns of this sheet"):
        sheet_import_and_submit(
            table=table, owner=user, run=SheetRun(processor="clean", columns="x")
        )
    assert nothing_stored()


@pytest.mark.django_db(transaction=True)
def test_a_run_refused_after_its_job_was_written_leaves_no_sheet_and_no_job(user, settings):
    """The quota is checked after the job's row is inserted (its place in the owner's
    queue): the refusal rolls back the job and the sheet imported for it."""
    from jobs.public import QuotaExceeded
    from sheets.run import SheetRun
    from sheets.services import sheet_import_and_submit

    settings.CONVEYOR_MAX_ACTIVE_JOBS = 1
    with spooled() as table:
        first, _, _ = sheet_import_and_submit(
            table=table, owner=user, run=SheetRun(processor="clean")
        )
    with spooled(name="second.csv") as table, pytest.raises(QuotaExceeded):
        sheet_import_and_submit(table=table, owner=user, run=SheetRun(processor="clean"))
    assert list(Sheet.objects.all()) == [first] and Job.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_failure_after_the_work_was_started_leaves_nothing(user):
    from sheets.run import SheetRun
    from sheets.services import run_submit, sheet_import_then

    def start_then_fail(sheet):
        run_submit(SheetRun(sheet.pk, "clean"), owner=user)
        raise RuntimeError("the step after the import failed")

    with spooled() as table, pytest.raises(RuntimeError):
        sheet_import_then(table=table, owner=user, then=start_then_fail)
    assert nothing_stored()


@pytest.mark.django_db(transaction=True)
def test_a_batch_refused_on_its_second_sheet_leaves_none_of_the_sheets(user):
    from sheets.run import SheetParamsError, SheetRun
    from sheets.services import sheets_import_and_submit

    other = [["title"], ["x"]]
    with (
        spooled() as first,
        spooled(other, "other.csv") as second,
        pytest.raises(SheetParamsError) as caught,
    ):
        sheets_import_and_submit(
            tables=[first, second], owner=user, run=SheetRun(processor="clean", columns="email")
        )
    assert caught.value.index == 1 and caught.value.sheet.name == "other.csv"
    assert nothing_stored()


@pytest.mark.django_db(transaction=True)
def test_a_large_upload_refused_its_import_job_leaves_no_sheet_and_no_kept_file(user, settings):
    from jobs.public import QuotaExceeded
    from sheets.io.importing import kept_upload
    from sheets.services import sheet_upload
    from tests.sheets.factories import csv_upload

    settings.CONVEYOR_INLINE_IMPORT_BYTES = 0
    settings.CONVEYOR_MAX_ACTIVE_JOBS = 1
    sheet_upload(upload=csv_upload(ROWS, "first.csv"), owner=user)
    kept = set(kept_upload("x").parent.iterdir())
    with pytest.raises(QuotaExceeded):
        sheet_upload(upload=csv_upload(ROWS, "second.csv"), owner=user)
    assert list(Sheet.objects.values_list("name", flat=True)) == ["first.csv"]
    assert set(kept_upload("x").parent.iterdir()) == kept
