"""Sheet pages: upload (and every way it can go wrong), the sample in two clicks, the
start form, results, exports with formulas neutralised, escaping and permissions."""

from __future__ import annotations

import csv
import io

import openpyxl
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from jobs.models import Job
from sheets.models import Sheet, SheetRow
from tests.sheets.factories import make_sheet, run_to_end

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}
DANGEROUS = ["=1+1", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tTAB", "-42", "+3.5", "plain"]


@pytest.fixture
def alice(client, user):
    client.force_login(user)
    return client


def upload(client, content: bytes, name: str = "data.csv", **extra):
    return client.post("/sheets/upload/", {"file": SimpleUploadedFile(name, content), **extra})


def test_upload_imports_and_opens_the_sheet_page(alice, user):
    response = upload(alice, b"name;email\nAda;ada@example.com\n")
    sheet = Sheet.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/sheets/{sheet.pk}/"
    page = alice.get(response["Location"]).content.decode()
    assert "Start and watch" in page and "Run in background" in page
    assert "delimiter “;”" in page and "ada@example.com" in page
    assert f'ws-connect="/ws/live/?entity=sheet:{sheet.pk}"' in page


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (b"", "empty.csv", "is empty"),
        (b"name,email\n", "header.csv", "no data rows"),
        (
            b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20,
            "image.csv",
            "is a PNG image, not a spreadsheet",
        ),
        (b"PK\x03\x04broken zip", "broken.xlsx", "damaged or invalid XLSX"),
        (b"a,b\n1,2,3\n", "ragged.csv", "Row 2 has a value in column C"),
        (b"a,a\n1,2\n", "dupe.csv", "repeats column names"),
        (b"a,,c\n1,2,3\n", "blank.csv", "Column B has no name"),
    ],
)
def test_bad_files_get_a_clear_400_and_leave_nothing(alice, content, name, message):
    response = upload(alice, content, name)
    assert response.status_code == 400
    text = response.content.decode()
    assert 'role="alert"' in text and message in text.replace("&#x27;", "'")
    assert not Sheet.objects.exists() and not SheetRow.objects.exists()


def test_oversize_and_missing_uploads(alice, settings):
    settings.CONVEYOR_MAX_UPLOAD_BYTES = 50
    response = upload(alice, b"name\n" + b"x" * 100 + b"\n")
    assert response.status_code in (400, 413)
    assert "the largest file accepted is 50 bytes" in response.content.decode()
    response = alice.post("/sheets/upload/", {})
    assert response.status_code == 400 and "Choose a CSV or XLSX file" in response.content.decode()
    assert not Sheet.objects.exists()


def test_the_sample_sheet_starts_a_clean_job_in_two_clicks(alice, user):
    first = alice.post("/sheets/sample/")
    sheet = Sheet.objects.get()
    page = alice.get(first["Location"])
    assert page.context["processor"].name == "clean"
    form = {"processor": "clean", "mode": "watch"}
    form["columns"] = page.context["chosen_columns"]
    second = alice.post(f"/sheets/{sheet.pk}/start/", form)
    job = Job.objects.get()
    assert second.status_code == 302 and second["Location"] == f"/sheets/{sheet.pk}/"
    assert job.params["processor"] == "clean" and job.total == sheet.row_count == 30


def test_run_in_background_returns_to_the_list(alice, user):
    sheet = make_sheet(user, [["a"], ["1"]])
    response = alice.post(
        f"/sheets/{sheet.pk}/start/", {"processor": "clean", "mode": "background"}, follow=True
    )
    assert response.redirect_chain[-1][0] == "/sheets/"
    assert "running in the background" in str(list(response.context["messages"])[0])


def test_start_form_errors_are_shown_and_no_job_is_made(alice, user):
    sheet = make_sheet(user, [["a", "b"], ["1", "2"]])
    response = alice.post(
        f"/sheets/{sheet.pk}/start/",
        {"processor": "clean", "opt_case": "sideways", "start_row": "9", "priority": "urgent"},
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert "Choose one of" in html
    response = alice.post(f"/sheets/{sheet.pk}/start/", {"processor": "clean", "start_row": "9"})
    assert "Start row must be between 1 and 1." in response.content.decode()
    response = alice.post(
        f"/sheets/{sheet.pk}/start/", {"processor": "clean", "priority": "urgent"}
    )
    assert "priority must be high, normal, low" in response.content.decode()
    response = alice.post(f"/sheets/{sheet.pk}/start/", {"processor": "nope"})
    assert response.status_code == 400 and "nope" in response.content.decode()
    assert not Job.objects.exists()


def test_llm_form_says_plainly_when_no_endpoint_is_configured(alice, user, settings):
    settings.CONVEYOR_LLM_BASE_URL = ""
    sheet = make_sheet(user, [["a"], ["1"]])
    html = alice.get(f"/sheets/{sheet.pk}/options/?processor=llm", **HX).content.decode()
    assert 'id="processor-notice"' in html and "No LLM endpoint is configured" in html
    assert "11434" in html and "OPENAI_BASE_URL" in html


def test_the_llm_notice_follows_the_typed_base_url(alice, user, other_user, settings):
    settings.CONVEYOR_LLM_BASE_URL = ""
    settings.CONVEYOR_LLM_ALLOWED_BASE_URLS = ["http://127.0.0.1:11434/v1"]
    sheet = make_sheet(user, [["a"], ["1"]])
    form = alice.get(f"/sheets/{sheet.pk}/options/?processor=llm", **HX).content.decode()
    notice_url = f"/sheets/{sheet.pk}/options/notice/"
    assert f'hx-get="{notice_url}" hx-trigger="change"' in form
    assert 'id="processor-notice-slot"' in form
    url = f"{notice_url}?processor=llm&opt_model=llama3.2&opt_base_url="
    allowed = alice.get(url + "http://127.0.0.1:11434/v1", **HX).content.decode()
    assert "No LLM endpoint is configured" not in allowed
    assert "Each row is sent to http://127.0.0.1:11434/v1 (model llama3.2)." in allowed
    refused = alice.get(url + "http://example.com/v1", **HX).content.decode()
    assert "only sends rows to the LLM endpoints its operator allows" in refused
    empty = alice.get(url, **HX).content.decode()
    assert "No LLM endpoint is configured" in empty
    unknown = alice.get(f"{notice_url}?processor=nope", **HX)
    assert unknown.status_code == 400 and "nope" in unknown.content.decode()
    alice.force_login(other_user)
    assert alice.get(url, **HX).status_code == 404


def test_the_options_notice_takes_whether_a_key_is_typed_never_the_key(alice, user, settings):
    settings.CONVEYOR_LLM_ALLOWED_BASE_URLS = ["http://127.0.0.1:11434/v1"]
    sheet = make_sheet(user, [["a"], ["1"]])
    form = alice.get(f"/sheets/{sheet.pk}/options/?processor=llm", **HX).content.decode()
    notice_include = 'hx-include="#start-form [name=processor], #processor-options [name^=opt_]'
    assert notice_include + ':not([type=password])"' in form  # not the form: no CSRF, no key
    url = f"/sheets/{sheet.pk}/options/notice/?processor=llm&opt_base_url=http://127.0.0.1:11434/v1"
    no_key = "No API key is configured"
    assert no_key in alice.get(url, **HX).content.decode()
    assert no_key not in alice.get(url + "&has_opt_api_key=1", **HX).content.decode()
    # A key put in the URL anyway (an old page, a hand-made link) counts for nothing.
    assert no_key in alice.get(url + "&opt_api_key=sk-in-a-url", **HX).content.decode()


MAIN_KEY = "sk-main-form-secret-1234"
STEP_KEY = "sk-step-secret-5678"


def test_a_form_error_never_shows_a_typed_key_and_asks_for_it_again(alice, user, settings):
    settings.CONVEYOR_LLM_ALLOWED_BASE_URLS = ["http://127.0.0.1:11434/v1"]
    sheet = make_sheet(user, [["a"], ["1"]])
    form = {
        "processor": "llm",
        "opt_prompt": "Say {a}",
        "opt_base_url": "http://127.0.0.1:11434/v1",
        "opt_api_key": MAIN_KEY,
        "opt_temperature": "9",  # above the maximum: the form comes back
    }
    for path in ("start", "trial"):
        response = alice.post(f"/sheets/{sheet.pk}/{path}/", form)
        page = response.content.decode()
        assert response.status_code == 400 and "Must be at most 2" in page
        assert MAIN_KEY not in page and "Enter the key again" in page
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("options", "error"),
    [
        (f"prompt=Say {{a}}\napi_key={STEP_KEY}\n{STEP_KEY}", "line 3 is not"),  # the form
        (f"prompt=Say {{a}}\napi_key={STEP_KEY}\ntemperature=9", "Must be at most 2"),  # the step
    ],
)
def test_a_then_run_step_never_shows_a_typed_key_again(alice, user, settings, options, error):
    settings.CONVEYOR_LLM_ALLOWED_BASE_URLS = ["http://127.0.0.1:11434/v1"]
    sheet = make_sheet(user, [["a"], ["1"]])
    options += "\nbase_url=http://127.0.0.1:11434/v1"
    response = alice.post(
        f"/sheets/{sheet.pk}/start/",
        {"processor": "clean", "then_processor": ["llm"], "then_options": [options]},
    )
    page = response.content.decode()
    assert response.status_code == 400 and error in page
    assert "Enter the key again (api_key=…)" in page
    assert f"api_key={STEP_KEY}" not in page and "prompt=Say {a}" in page
    assert f"not '{STEP_KEY}'" not in page  # the message does not repeat a malformed line
    if error == "Must be at most 2":
        assert STEP_KEY not in page
    assert not Job.objects.exists()


def test_sheet_pages_of_other_users_are_not_found(client, user, other_user):
    sheet = make_sheet(user, [["a"], ["1"]])
    client.force_login(user)
    job = run_to_end(_start(client, sheet))
    client.force_login(other_user)
    for url in (
        f"/sheets/{sheet.pk}/",
        f"/sheets/{sheet.pk}/results/",
        f"/sheets/{sheet.pk}/options/",
        f"/sheets/jobs/{job.pk}/export.csv",
        f"/sheets/jobs/{job.pk}/export.xlsx",
    ):
        assert client.get(url).status_code == 404, url
    assert client.post(f"/sheets/{sheet.pk}/start/", {"processor": "clean"}).status_code == 404
    assert Job.objects.count() == 1


def _start(client, sheet) -> Job:
    client.post(f"/sheets/{sheet.pk}/start/", {"processor": "clean", "mode": "watch"})
    return Job.objects.latest("id")


def test_results_table_filters_errors_and_escapes_cells(alice, user, fake_openai):
    fake_openai.categories = ["Yes", "No"]
    sheet = make_sheet(user, [["text"], ["<script>alert(1)</script> yes"], ["WRONG"], ["no"]])
    alice.post(
        f"/sheets/{sheet.pk}/start/",
        {
            "processor": "llm",
            "opt_base_url": fake_openai.base_url,
            "opt_api_key": "k",
            "opt_categories": "Yes,No",
        },
    )
    job = run_to_end(Job.objects.get())
    assert job.failed == 1
    html = alice.get(f"/sheets/{sheet.pk}/").content.decode()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    errors = alice.get(f"/sheets/{sheet.pk}/results/?job={job.pk}&errors=1", **HX).content.decode()
    assert errors.count('class="row-failed"') == 1 and "Banana" in errors
    everything = alice.get(f"/sheets/{sheet.pk}/results/?job={job.pk}", **HX).content.decode()
    assert everything.count("data-row=") == 3


def test_exports_neutralise_formulas_in_csv_and_xlsx(alice, user):
    sheet = make_sheet(user, [["id", "value"], *[[str(i), v] for i, v in enumerate(DANGEROUS)]])
    job = run_to_end(_start(alice, sheet))
    response = alice.get(f"/sheets/jobs/{job.pk}/export.csv")
    assert response["Content-Disposition"] == f'attachment; filename="data-job{job.pk}.csv"'
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:4] == ["id", "value", "clean_id", "clean_value"]
    assert [r[1] for r in rows[1:]] == [
        "'=1+1",
        "'+cmd|' /C calc'!A0",
        "'-2+3",
        "'@SUM(A1)",
        "'\tTAB",
        "-42",
        "+3.5",
        "plain",
    ]
    assert rows[1][3] == "'=1+1", "outputs are neutralised too"

    response = alice.get(f"/sheets/jobs/{job.pk}/export.xlsx")
    workbook = openpyxl.load_workbook(io.BytesIO(b"".join(response.streaming_content)))
    cells = [row[1] for row in workbook.active.iter_rows(min_row=2, values_only=True)]
    assert cells[0] == "'=1+1" and cells[3] == "'@SUM(A1)" and cells[-1] == "plain"
    formulas = [c for row in workbook.active.iter_rows() for c in row if c.data_type == "f"]
    assert not formulas, "no cell is stored as a formula"


def test_a_finished_job_shows_completed_while_away_once(alice, user):
    sheet = make_sheet(user, [["a"], ["1"]])
    run_to_end(_start(alice, sheet))
    assert "Completed while you were away." in alice.get(f"/sheets/{sheet.pk}/").content.decode()
    assert "while you were away" not in alice.get(f"/sheets/{sheet.pk}/").content.decode()


def test_a_running_job_says_still_running_with_its_progress(alice, user):
    sheet = make_sheet(user, [["a"], *[[str(i)] for i in range(10)]])
    job = _start(alice, sheet)
    alice.get(f"/sheets/{sheet.pk}/")  # the page "Start and watch" opens
    Job.objects.filter(pk=job.pk).update(status=Job.Status.RUNNING, processed=7)
    html = alice.get(f"/sheets/{sheet.pk}/").content.decode()  # coming back
    assert "Still running, 70%" in html and 'id="current-job-live"' in html


def test_a_sheet_jobs_page_links_back_to_its_sheet(alice, user):
    sheet = make_sheet(user, [["a"], ["1"]])
    job = _start(alice, sheet)
    html = alice.get(f"/jobs/{job.pk}/").content.decode()
    assert f'href="/sheets/{sheet.pk}/">Open the sheet</a>' in html


def test_results_show_outputs_first_and_honest_counts(alice, user):
    sheet = make_sheet(user, [["name", "email"], ["Ada", "ada@example.com"], ["Bob", "not-mail"]])
    job = run_to_end(_start(alice, sheet))
    assert job.failed == 0
    html = alice.get(f"/sheets/{sheet.pk}/results/?job={job.pk}", **HX).content.decode()
    head = html[html.index("<thead>") : html.index("</thead>")]
    assert head.index("clean_email") < head.index(">name<"), "outputs left of the inputs"
    assert f"All rows ({job.processed})" in html and "Failed rows (0)" in html
    assert "Rows with issues (1)" in html
    issues = alice.get(f"/sheets/{sheet.pk}/results/?job={job.pk}&errors=issues", **HX)
    rows = issues.content.decode()
    assert rows.count("data-row=") == 1 and "not-mail" in rows
    assert 'data-errors="issues"' in rows


def test_a_one_row_import_says_row(alice, user):
    response = upload(alice, b"name\nAda\n")
    assert "Imported 1 row from data.csv." in alice.get(response["Location"]).content.decode()


def test_an_html_page_uploaded_as_csv_is_called_an_html_page(alice):
    page = b"<!doctype html><html><head><title>My sheet</title></head><body></body></html>"
    response = upload(alice, page, name="contacts.csv")
    assert response.status_code == 400
    assert "is an HTML page" in response.content.decode()
    assert not Sheet.objects.exists()
