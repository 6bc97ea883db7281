"""An importing sheet's page follows its import job over the live socket (no meta
refresh), and processing can be queued while the import runs: the job waits for the
import job and processes every row it stored."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from jobs.engine.runner import run_one_slice
from jobs.models import Job
from jobs.web import live
from sheets.io.sources import open_upload
from sheets.kinds import IMPORT, KIND
from sheets.models import Sheet
from tests.jobs.factories import run_to_end
from tests.jobs.web.test_live import connect, receive_until

ROWS = 5000


def csv_bytes(rows: int = ROWS) -> bytes:
    lines = ["name,email", *(f"person {i},p{i}@example.com" for i in range(rows))]
    return ("\n".join(lines) + "\n").encode()


def upload_importing(user) -> tuple[Client, Sheet]:
    client = Client()
    client.force_login(user)
    file = SimpleUploadedFile("people.csv", csv_bytes(), "text/csv")
    assert client.post("/sheets/upload/", {"file": file}).status_code == 302
    sheet = Sheet.objects.get(owner=user)
    assert sheet.status == "importing"
    return client, sheet


def import_job(sheet: Sheet) -> Job:
    return Job.objects.get(kind=IMPORT, params__sheet_id=sheet.pk)


@pytest.fixture
def background(settings):
    settings.CONVEYOR_INLINE_IMPORT_BYTES = 1000


@pytest.mark.django_db
def test_the_importing_page_uses_the_live_socket_not_a_meta_refresh(background, user):
    client, sheet = upload_importing(user)
    page = client.get(sheet.get_absolute_url()).content.decode()
    assert 'http-equiv="refresh"' not in page
    assert f"/ws/live/?entity=sheet:{sheet.pk}" in page
    assert (
        'data-reload-when-job-ends="current-job-live"' in page and 'id="current-job-live"' in page
    )
    assert 'id="start-form"' in page and "Queue after the import" in page


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_the_import_job_reaches_the_importing_page_live(background, user):
    _, sheet = await sync_to_async(upload_importing)(user)
    job = await sync_to_async(import_job)(sheet)
    communicator = await connect(user, f"?entity=sheet:{sheet.pk}")
    try:
        snapshot = await receive_until(communicator, 'id="current-job-live"')
        assert f'data-job="{job.pk}"' in snapshot and 'data-status="queued"' in snapshot
        await database_sync_to_async(run_one_slice)(job.pk)
        done = await receive_until(communicator, 'data-status="succeeded"')
        assert 'id="current-job-live"' in done and "100%" in done
        assert f"{ROWS} / {ROWS}" in done
    finally:
        await communicator.disconnect()
        await live.relay.stop()


def test_a_table_tells_the_share_of_its_file_read(tmp_path, settings):
    settings.CONVEYOR_MAX_ROWS = 10 * ROWS
    path = tmp_path / "people.csv"
    path.write_bytes(csv_bytes(20 * ROWS))  # far larger than the reader's buffers
    with open_upload(path, path.name) as table:
        for _ in range(10 * ROWS):
            next(table.rows)
        assert 0.4 < table.share_read() < 0.6


@pytest.mark.django_db(transaction=True)
def test_a_run_queued_during_the_import_waits_for_it_then_processes_every_row(background, user):
    client, sheet = upload_importing(user)
    response = client.post(f"/sheets/{sheet.pk}/start/", {"processor": "clean"})
    assert response.status_code == 302
    run = Job.objects.get(kind=KIND, params__sheet_id=sheet.pk)
    importing = import_job(sheet)
    assert run.status == "queued" and run.params["row_count"] is None
    assert list(run.upstream_links.values_list("depends_on_id", flat=True)) == [importing.pk]
    page = client.get(sheet.get_absolute_url()).content.decode()
    assert 'id="queued-after-import"' in page and f"Job #{run.pk}" in page
    assert run_to_end(importing).status == "succeeded"
    run = run_to_end(run)
    assert (run.status, run.processed, run.total) == ("succeeded", ROWS, ROWS)
    assert run.params["row_count"] == ROWS


@pytest.mark.django_db
def test_bad_runs_on_an_importing_sheet_get_clear_4xx(background, user, other_user):
    client, sheet = upload_importing(user)
    start = f"/sheets/{sheet.pk}/start/"
    response = client.post(start, {"processor": "clean", "start_row": "0"})
    assert response.status_code == 400 and "Start row must be" in response.content.decode()
    response = client.post(start, {"processor": "no-such"})
    assert response.status_code == 400
    stranger = Client()
    stranger.force_login(other_user)
    assert stranger.post(start, {"processor": "clean"}).status_code == 404
    Sheet.objects.filter(pk=sheet.pk).update(status="failed", import_error="Bad row 3.")
    Job.objects.filter(pk=import_job(sheet).pk).update(status="failed")
    response = client.post(start, {"processor": "clean"})
    assert response.status_code == 409 and "did not finish" in response.content.decode()
    assert not Job.objects.filter(kind=KIND).exists()
