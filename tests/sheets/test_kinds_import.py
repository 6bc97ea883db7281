"""Large uploads are imported by a background job: the request returns at once, the
sheet's page follows the import, and a crash, a bad row or a cancel never leaves half
a sheet."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps as django_apps
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from jobs.engine.services import job_cancel, job_submit
from jobs.models import Job
from sheets.io.importing import kept_upload
from sheets.kinds import IMPORT
from sheets.models import Sheet, SheetRow
from tests.support.processes import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.django_db(transaction=True)]


def csv_bytes(rows: int, bad_at: int | None = None) -> bytes:
    lines = ["name,email"]
    for i in range(rows):
        extra = ",an extra cell" if i == bad_at else ""
        lines.append(f"person {i},p{i}@example.com{extra}")
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def upload(settings, user):
    settings.CONVEYOR_INLINE_IMPORT_BYTES = 1000
    client = Client()
    client.force_login(user)

    def post(content: bytes) -> Sheet:
        file = SimpleUploadedFile("people.csv", content, "text/csv")
        response = client.post("/sheets/upload/", {"file": file})
        assert response.status_code == 302
        sheet = Sheet.objects.get(owner=user)
        page = client.get(sheet.get_absolute_url()).content.decode()
        assert sheet.status == "importing" and "Importing in the background" in page
        return sheet

    return post


def import_job(sheet: Sheet) -> Job:
    return Job.objects.get(kind=IMPORT, params__sheet_id=sheet.pk)


def test_a_large_upload_is_imported_by_a_job(upload, cluster):
    sheet = upload(csv_bytes(5000))
    wait_for(lambda: import_job(sheet).is_terminal, timeout=60, what="the import job")
    sheet.refresh_from_db()
    assert sheet.row_count == 5000 and SheetRow.objects.filter(sheet=sheet).count() == 5000
    job = import_job(sheet)
    assert (job.status, job.processed, job.result) == ("succeeded", 5000, {"rows": 5000})


def test_a_bad_row_far_down_fails_the_import_and_stores_nothing(upload, cluster):
    sheet = upload(csv_bytes(5000, bad_at=4000))
    wait_for(lambda: import_job(sheet).is_terminal, timeout=60, what="the import job")
    sheet.refresh_from_db()
    assert "Row 4002 has a value in column C" in sheet.import_error
    assert not SheetRow.objects.filter(sheet=sheet).exists()
    assert import_job(sheet).status == Job.Status.FAILED


def test_a_cancelled_import_leaves_no_rows(upload, cluster_factory):
    sheet = upload(csv_bytes(200_000))
    cluster_factory(workers=1)
    wait_for(lambda: import_job(sheet).processed > 0, timeout=60, what="the import to start")
    job_cancel(job=import_job(sheet))
    wait_for(lambda: import_job(sheet).status == Job.Status.CANCELLED, timeout=30, what="cancel")
    sheet.refresh_from_db()
    assert sheet.status == "failed" and "cancelled" in sheet.import_error
    assert not SheetRow.objects.filter(sheet=sheet).exists()


def test_a_worker_killed_mid_import_restarts_it_and_the_sheet_is_whole(upload, cluster_factory):
    sheet = upload(csv_bytes(200_000))
    cluster = cluster_factory(workers=1)
    wait_for(lambda: import_job(sheet).processed > 0, timeout=60, what="the import to start")
    cluster.kill_workers()
    wait_for(lambda: Sheet.objects.get(pk=sheet.pk).status == "ready", timeout=120, what="import")
    assert SheetRow.objects.filter(sheet=sheet).count() == 200_000


def test_an_import_job_shows_users_no_server_path(upload, user, settings, cluster):
    """Its params name the kept file, not where the server keeps it: the job page, the
    API's JSON (and the admin, which shows the same params) never show DATA_DIR."""
    sheet = upload(csv_bytes(5000))
    client = Client()
    client.force_login(user)
    job = import_job(sheet)
    shown = [
        client.get(f"/jobs/{job.pk}/").content.decode(),
        client.get(f"/api/jobs/{job.pk}/").content.decode(),
    ]
    for text in shown:
        assert str(settings.DATA_DIR) not in text and "uploads/" not in text
        assert job.params["upload"].endswith("-people.csv") and job.params["upload"] in text
    wait_for(lambda: import_job(sheet).is_terminal, timeout=60, what="the import job")
    assert import_job(sheet).status == Job.Status.SUCCEEDED
    assert not kept_upload(job.params["upload"]).exists()


def test_import_jobs_queued_with_a_path_keep_only_its_name(user, settings):
    """The migration that took server paths out of queued import jobs' params."""
    migration = importlib.import_module("sheets.migrations.0006_import_params_upload_name")
    path = settings.DATA_DIR / "uploads" / "0123abcd-people.csv"
    job, _ = job_submit(kind=IMPORT, params={"sheet_id": 1, "path": str(path)}, owner=user)
    migration.path_to_name(django_apps, None)
    job.refresh_from_db()
    assert job.params == {"sheet_id": 1, "upload": "0123abcd-people.csv"}


def test_a_large_upload_beyond_the_job_quota_is_refused_and_leaves_nothing(user, settings):
    settings.CONVEYOR_INLINE_IMPORT_BYTES = 1000
    settings.CONVEYOR_MAX_ACTIVE_JOBS = 1
    job_submit(kind="demo.count", params={"n": 1}, owner=user)
    client = Client()
    client.force_login(user)
    kept = set((settings.DATA_DIR / "uploads").glob("*"))
    file = SimpleUploadedFile("people.csv", csv_bytes(5000), "text/csv")
    response = client.post("/sheets/upload/", {"file": file})
    assert response.status_code == 429 and "CONVEYOR_MAX_ACTIVE_JOBS" in response.content.decode()
    assert not Sheet.objects.exists()
    assert set((settings.DATA_DIR / "uploads").glob("*")) == kept
