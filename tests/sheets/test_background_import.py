"""Large uploads are imported by a background job: the request returns at once, the
sheet's page follows the import, and a crash, a bad row or a cancel never leaves half
a sheet."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from jobs.engine.services import job_cancel
from jobs.models import Job
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
