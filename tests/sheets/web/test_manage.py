"""Managing sheets from the pages (issue #12): rename, delete (with confirmation, never
under an active job), names one can tell apart, sorting the list, the job history with
the downloads of any earlier job, and what the results table and upload messages say."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from jobs.engine.runner import run_one_slice
from jobs.engine.services import job_cancel, job_submit
from jobs.models import Job, Schedule
from jobs.schedules.services import schedule_create
from sheets.kinds import KIND, WRITE_BACK
from sheets.models import RowResult, Sheet, SheetRow
from sheets.rows.pipeline import CPU_BATCH_ROWS
from sheets.services import sheet_chain_submit
from tests.sheets.factories import make_sheet, run_to_end

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(client, user):
    client.force_login(user)
    return client


def _start(client, sheet, processor: str = "clean") -> Job:
    client.post(f"/sheets/{sheet.pk}/start/", {"processor": processor, "mode": "watch"})
    return Job.objects.latest("id")


def _text(response) -> str:
    return response.content.decode().replace("&#x27;", "'").replace("&quot;", '"')


def test_uploads_of_the_same_file_get_names_one_can_tell_apart(alice, user):
    for _ in range(3):
        alice.post("/sheets/upload/", {"file": SimpleUploadedFile("good.csv", b"a\n1\n")})
    names = sorted(Sheet.objects.values_list("name", flat=True))
    assert names == ["good.csv", "good.csv (2)", "good.csv (3)"]
    html = alice.get("/sheets/").content.decode()
    assert ">good.csv (3)</a>" in html and ">good.csv</a>" in html


def test_a_sheet_is_renamed_from_its_page(alice, user):
    sheet = make_sheet(user, [["a"], ["1"]], name="good.csv")
    make_sheet(user, [["a"], ["1"]], name="Contacts")
    page = alice.get(f"/sheets/{sheet.pk}/").content.decode()
    assert 'id="rename"' in page and f'action="/sheets/{sheet.pk}/rename/"' in page
    response = alice.post(f"/sheets/{sheet.pk}/rename/", {"name": "  Leads   May "}, follow=True)
    assert "Renamed to “Leads May”." in _text(response)
    assert Sheet.objects.get(pk=sheet.pk).name == "Leads May"
    alice.post(f"/sheets/{sheet.pk}/rename/", {"name": "Contacts"})
    assert Sheet.objects.get(pk=sheet.pk).name == "Contacts (2)", "a taken name gets a number"


@pytest.mark.parametrize(
    ("name", "message"), [("   ", "Give the sheet a name."), ("x" * 201, "at most 200")]
)
def test_a_bad_new_name_is_refused_with_a_message(alice, user, name, message):
    sheet = make_sheet(user, [["a"], ["1"]], name="good.csv")
    response = alice.post(f"/sheets/{sheet.pk}/rename/", {"name": name}, follow=True)
    assert message in _text(response)
    assert Sheet.objects.get(pk=sheet.pk).name == "good.csv"


def test_delete_asks_first_then_removes_the_rows_and_finished_jobs(alice, user):
    sheet = make_sheet(user, [["a"], ["1"], ["2"]], name="old.csv")
    job = run_to_end(_start(alice, sheet))
    assert RowResult.objects.filter(job=job).count() == 2
    listing = alice.get("/sheets/").content.decode()
    assert f'href="/sheets/{sheet.pk}/delete/"' in listing
    page = alice.get(f"/sheets/{sheet.pk}/").content.decode()
    assert 'id="delete-sheet"' in page
    confirm = alice.get(f"/sheets/{sheet.pk}/delete/")
    assert confirm.status_code == 200
    assert "Delete “old.csv”?" in _text(confirm) and "2 rows and its 1 finished job" in _text(
        confirm
    )
    assert Sheet.objects.filter(pk=sheet.pk).exists(), "GET only asks"
    response = alice.post(f"/sheets/{sheet.pk}/delete/", follow=True)
    assert response.redirect_chain[-1][0] == "/sheets/"
    assert "Deleted “old.csv” and its 1 job." in _text(response)
    assert not Sheet.objects.filter(pk=sheet.pk).exists()
    assert not SheetRow.objects.exists() and not RowResult.objects.exists()
    assert not Job.objects.filter(pk=job.pk).exists()


def test_delete_takes_the_sheets_schedules_and_write_backs_with_it(alice, user, other_user):
    sheet = make_sheet(user, [["a"], ["1"]], name="leads.csv")
    other = make_sheet(user, [["a"], ["1"]], name="other.csv")
    job = run_to_end(_start(alice, sheet))
    writer, _ = job_submit(
        kind=WRITE_BACK, params={"job_id": job.pk}, owner=user, entity_key=f"write-back:{job.pk}"
    )
    job_cancel(job=writer)
    nightly = schedule_create(
        owner=user, kind=KIND, params={"sheet_id": sheet.pk, "processor": "clean"},
        name="Nightly clean", every="1d",
    )  # fmt: skip
    kept = schedule_create(
        owner=user, kind=KIND, params={"sheet_id": other.pk, "processor": "clean"}, every="1h"
    )
    confirm = _text(alice.get(f"/sheets/{sheet.pk}/delete/"))
    assert 'id="delete-schedules"' in confirm and "Nightly clean" in confirm
    assert "2 finished jobs" in confirm, "the run and its write-back"
    response = alice.post(f"/sheets/{sheet.pk}/delete/", follow=True)
    assert "Deleted “leads.csv” and its 2 jobs and 1 schedule." in _text(response)
    assert not Schedule.objects.filter(pk=nightly.pk).exists()
    assert not Job.objects.filter(pk__in=[job.pk, writer.pk]).exists()
    assert Schedule.objects.filter(pk=kept.pk).exists(), "another sheet's schedule stays"


def test_a_sheet_with_an_active_job_is_not_deleted(alice, user):
    sheet = make_sheet(user, [["a"], ["1"]])
    job = _start(alice, sheet)
    confirm = _text(alice.get(f"/sheets/{sheet.pk}/delete/"))
    assert "Cancel it first" in confirm and f"/jobs/{job.pk}/" in confirm
    assert 'id="confirm-delete"' not in confirm
    response = alice.post(f"/sheets/{sheet.pk}/delete/")
    assert response.status_code == 409
    assert f"has an active job (#{job.pk}): cancel it, then delete the sheet" in _text(response)
    assert Sheet.objects.filter(pk=sheet.pk).exists() and Job.objects.filter(pk=job.pk).exists()


def test_only_the_owner_renames_or_deletes_a_sheet(client, user, other_user, staff_user):
    sheet = make_sheet(user, [["a"], ["1"]], name="mine.csv")
    for someone in (other_user, staff_user):
        client.force_login(someone)
        assert client.get(f"/sheets/{sheet.pk}/delete/").status_code == 404
        assert client.post(f"/sheets/{sheet.pk}/delete/").status_code == 404
        assert client.post(f"/sheets/{sheet.pk}/rename/", {"name": "x"}).status_code == 404
    assert Sheet.objects.get(pk=sheet.pk).name == "mine.csv"
    assert 'id="delete-sheet"' not in client.get(f"/sheets/{sheet.pk}/").content.decode()


def test_an_older_jobs_results_are_shown_and_downloaded(alice, user):
    sheet = make_sheet(user, [["value"], ["=1+1"], ["plain"]], name="data.csv")
    first = run_to_end(_start(alice, sheet))
    second = run_to_end(_start(alice, sheet, processor="copy"))
    html = alice.get(f"/sheets/{sheet.pk}/").content.decode()
    assert 'id="job-history"' in html
    for job in (first, second):
        assert f'href="/sheets/jobs/{job.pk}/export.csv"' in html
        assert f'href="/sheets/jobs/{job.pk}/export.xlsx"' in html
        assert f'href="?job={job.pk}#results"' in html
    older = alice.get(f"/sheets/{sheet.pk}/?job={first.pk}").content.decode()
    assert f"Results of job #{first.pk}" in older and "clean_value" in older
    job_page = alice.get(f"/jobs/{first.pk}/").content.decode()
    assert f'href="/sheets/jobs/{first.pk}/export.csv">Download CSV</a>' in job_page
    assert f'href="/sheets/jobs/{first.pk}/export.xlsx">Download XLSX</a>' in job_page
    response = alice.get(f"/sheets/jobs/{first.pk}/export.csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert rows[0][:2] == ["value", "clean_value"] and rows[1][:2] == ["'=1+1", "'=1+1"]


def _results_box(html: str) -> str:
    """The opening tag of the results table's box (its data-* say what refreshes show)."""
    start = html.index('<div id="results"')
    return html[start : html.index(">", start)]


def test_an_older_jobs_results_stay_shown_while_a_later_job_runs(alice, user):
    sheet = make_sheet(user, [["value"], ["a"], ["b"]], name="data.csv")
    first = run_to_end(_start(alice, sheet))
    running = _start(alice, sheet, processor="copy")
    run_one_slice(running.pk)  # rows of the running job are committed: the page refreshes
    box = _results_box(alice.get(f"/sheets/{sheet.pk}/?job={first.pk}").content.decode())
    assert f'data-job="{first.pk}"' in box and 'data-pinned="1"' in box
    # The live refresh re-reads the results fragment for the pinned job: it stays job N.
    refreshed = alice.get(f"/sheets/{sheet.pk}/results/?job={first.pk}&order=latest")
    box = _results_box(refreshed.content.decode())
    assert f'data-job="{first.pk}"' in box and 'data-pinned="1"' in box
    # Without ?job the table follows the running job, and is not pinned.
    for html in (
        alice.get(f"/sheets/{sheet.pk}/").content.decode(),
        alice.get(f"/sheets/{sheet.pk}/results/").content.decode(),
        alice.get(f"/sheets/{sheet.pk}/results/?job={running.pk}").content.decode(),
    ):
        box = _results_box(html)
        assert f'data-job="{running.pk}"' in box and "data-pinned" not in box


def test_an_older_jobs_downloads_are_not_found_for_others(client, user, other_user):
    sheet = make_sheet(user, [["a"], ["1"]])
    client.force_login(user)
    first = run_to_end(_start(client, sheet))
    run_to_end(_start(client, sheet))
    client.force_login(other_user)
    for url in (f"/sheets/jobs/{first.pk}/export.csv", f"/sheets/jobs/{first.pk}/export.xlsx"):
        assert client.get(url).status_code == 404
    assert client.get(f"/sheets/{sheet.pk}/?job={first.pk}").status_code == 404


def test_the_sheets_list_sorts_by_its_columns_and_ignores_bad_keys(alice, user):
    make_sheet(user, [["a"], ["1"], ["2"], ["3"]], name="b.csv")
    make_sheet(user, [["a"], ["1"]], name="c.csv")
    make_sheet(user, [["a"], ["1"], ["2"]], name="a.csv")

    def order(query: str) -> list[str]:
        response = alice.get(f"/sheets/{query}")
        assert response.status_code == 200
        return [sheet.name for sheet, _ in response.context["rows"]]

    assert order("") == ["a.csv", "c.csv", "b.csv"], "newest first"
    assert order("?sort=name") == ["a.csv", "b.csv", "c.csv"]
    assert order("?sort=-rows") == ["b.csv", "a.csv", "c.csv"]
    assert order("?sort=created") == ["b.csv", "c.csv", "a.csv"]
    for bad in ("password", "-owner__password", "--name", "name;drop"):
        assert order(f"?sort={bad}") == ["a.csv", "c.csv", "b.csv"]
    html = alice.get("/sheets/?sort=name").content.decode()
    assert 'aria-sort="ascending"' in html and 'href="?sort=-name"' in html


def _latest_cell(html: str, sheet) -> str:
    row = html[html.index(f'<a href="/sheets/{sheet.pk}/">') :]
    return row[: row.index("</tr>")]


def test_the_sheets_list_shows_a_chains_current_step_in_one_query(
    alice, user, django_assert_max_num_queries
):
    sheet = make_sheet(user, [["value"], ["a"], ["b"]], name="chained.csv")
    first, second = sheet_chain_submit(
        sheet=sheet, owner=user, steps=[{"processor": "clean"}, {"processor": "copy"}]
    )
    cell = _latest_cell(alice.get("/sheets/").content.decode(), sheet)
    assert f'href="/jobs/{first.pk}/"' in cell and "step 1 of 2" in cell
    run_to_end(first)
    cell = _latest_cell(alice.get("/sheets/").content.decode(), sheet)
    assert f'href="/jobs/{second.pk}/"' in cell and "step 2 of 2" in cell
    run_to_end(second)
    cell = _latest_cell(alice.get("/sheets/").content.decode(), sheet)
    assert f'href="/jobs/{second.pk}/"' in cell and "Succeeded" in cell
    alice.get("/sheets/")  # the session and the user are loaded: count the page alone
    with django_assert_max_num_queries(12) as few:
        alice.get("/sheets/")
    queries = len(few.captured_queries)
    for n in range(6):
        other = make_sheet(user, [["value"], ["a"]], name=f"more{n}.csv")
        run_to_end(_start(alice, other))
    alice.get("/sheets/")  # lists the six jobs that ended meanwhile, once ("while you were away")
    with django_assert_max_num_queries(queries):
        alice.get("/sheets/")  # more sheets with jobs: not one more query


def test_no_sheets_offers_an_upload_and_the_sample(alice):
    html = alice.get("/sheets/").content.decode()
    assert 'No sheets yet. <a href="#upload">Upload a CSV</a>' in html
    assert 'form="sample-form"' in html and 'id="sample-form"' in html


def test_a_partly_processed_job_shows_its_rows_not_no_results_yet(alice, user, settings):
    settings.CONVEYOR_SLICE_SECONDS = 0  # one batch per slice, then the job goes on later
    rows = CPU_BATCH_ROWS + 200
    sheet = make_sheet(user, [["a"], *[[str(i)] for i in range(rows)]])
    job = _start(alice, sheet)
    run_one_slice(job.pk)
    job.refresh_from_db()
    assert job.is_active and 0 < job.processed < rows
    for url in (f"/sheets/{sheet.pk}/", f"/sheets/{sheet.pk}/results/?job={job.pk}"):
        html = alice.get(url).content.decode()
        assert "No results yet" not in html and html.count("data-row=") == 50
        assert f"All rows ({job.processed})" in html


def test_utf16_without_bom_and_html_uploads_are_named_for_what_they_are(alice, user):
    text = "name\tcity\r\nZoë\tKöln\r\n".encode("utf-16-le")
    response = alice.post("/sheets/upload/", {"file": SimpleUploadedFile("u16.csv", text)})
    assert response.status_code == 302
    sheet = Sheet.objects.get()
    assert (sheet.encoding, sheet.columns) == ("utf-16-le", ["name", "city"])
    page = b"<html><head><title>Export</title></head><body><table></table></body></html>"
    response = alice.post("/sheets/upload/", {"file": SimpleUploadedFile("x.csv", page)})
    assert response.status_code == 400
    assert "is an HTML page (a web page)" in response.content.decode()
    assert "no data rows" not in response.content.decode()
