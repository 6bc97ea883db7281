"""sheets.run: `SheetRun`, a run's parameters with the one validation of pages, API, CLI
and schedules; every refusal says what is wrong, keyed by the field that is."""

from __future__ import annotations

import pytest
from django.test import override_settings

from jobs.models import Job
from sheets.names import IMPORT, KIND
from sheets.run import SheetParamsError, SheetRun, rows_to_do
from sheets.services import run_submit, sheet_upload
from tests.sheets.factories import csv_upload, make_sheet

pytestmark = pytest.mark.django_db

GOOGLE_URL = (
    "https://docs.google.com/spreadsheets/d/1BxiMVs0XRA5nFMdKvBdBZjgmUUqptlbs74OgvE2upms/edit"
)
ROWS = [["name", "email"], ["Ann", "ann@example.com"], ["Bob", "bob@example.com"]]


@pytest.fixture
def sheet(user):
    return make_sheet(user, ROWS)


def refusal(run: SheetRun, owner) -> dict[str, str]:
    with pytest.raises(SheetParamsError) as caught:
        run.check(owner)
    return caught.value.errors


def test_a_run_checks_into_the_params_of_its_job(sheet, user):
    params = SheetRun(sheet.pk, "clean", start_row="2", row_count="5").check(user)
    assert params["sheet_id"] == sheet.pk and params["processor"] == "clean"
    assert params["columns"] == ["name", "email"], "all columns by default"
    assert (params["start_row"], params["row_count"]) == (2, 1), "at most the rows there are"
    assert params["sources"] == {} and "trial" not in params and "google_url" not in params


def test_the_api_params_and_the_fields_are_one_run(sheet, user):
    fields = SheetRun(sheet.pk, "clean", columns="email, name", row_timeout="30", trial=True)
    given = {
        "sheet_id": sheet.pk,
        "processor": "clean",
        "columns": ["email", "name"],
        "row_timeout": 30,
        "trial": True,
        "unknown": "ignored",
    }
    assert SheetRun.from_params(given).check(user) == fields.check(user)


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"sheet_id": 10**9}, "sheet_id", "No such sheet."),
        ({"sheet_id": "x"}, "sheet_id", "No such sheet."),
        ({"processor": "nope"}, "processor", "Unknown processor 'nope'. Available processors:"),
        ({"options": ["x"]}, "options", "options must be an object"),
        ({"options": {"case": "shouting"}}, "case", ""),
        ({"columns": [1]}, "columns", "columns must be a list of column names"),
        (
            {"columns": "name,phone"},
            "columns",
            "Not columns of this sheet: phone. Columns are: name, email.",
        ),
        ({"start_row": "0"}, "start_row", "Start row must be between 1 and 2."),
        ({"start_row": "3"}, "start_row", "Start row must be between 1 and 2."),
        ({"start_row": "one"}, "start_row", "Start row must be between 1 and 2."),
        ({"row_count": "0"}, "row_count", "Number of rows must be a positive whole number."),
        ({"row_count": "a"}, "row_count", "Number of rows must be a positive whole number."),
        ({"row_timeout": "soon"}, "row_timeout", "Row time limit must be a number of seconds."),
        ({"row_timeout": "0"}, "row_timeout", "Row time limit must be between 0 and 3600 s."),
        ({"row_timeout": "3601"}, "row_timeout", "Row time limit must be between 0 and 3600 s."),
        ({"google_url": 7}, "google_url", "must be a Google Sheets link"),
        ({"google_url": "not a link"}, "google_url", "is not a Google Sheets link or id"),
        (
            {"google_url": GOOGLE_URL},
            "google_url",
            "is not the Google Sheet this sheet was read from",
        ),
    ],
)
def test_every_refusal_names_its_field(sheet, user, changes, field, message):
    errors = refusal(SheetRun(sheet.pk, "clean").replace(**changes), user)
    assert field in errors and message in errors[field], errors


def test_every_problem_is_reported_at_once(sheet, user):
    run = SheetRun(sheet.pk, "nope", columns="phone", start_row="9", row_timeout="x")
    assert set(refusal(run, user)) == {"processor", "columns", "start_row", "row_timeout"}


def test_another_users_sheet_is_no_such_sheet(sheet, other_user):
    assert refusal(SheetRun(sheet.pk, "clean"), other_user) == {"sheet_id": "No such sheet."}


def test_an_earlier_jobs_output_columns_are_inputs_of_a_step_after_it(sheet, user):
    first, _ = run_submit(SheetRun(sheet.pk, "copy"), owner=user)
    outputs = first.params["output_columns"]
    refused = refusal(SheetRun(sheet.pk, "clean", columns=outputs[:1]), user)
    assert "Not columns of this sheet" in refused["columns"], "not before it ran, not waited for"
    params = SheetRun(sheet.pk, "clean", columns=outputs[:1], after=[first.pk]).check(user)
    assert params["sources"] == {outputs[0]: first.pk}


@override_settings(CONVEYOR_INLINE_IMPORT_BYTES=0)
def test_a_sheet_being_imported_takes_a_run_only_after_its_import(user):
    importing = sheet_upload(upload=csv_upload(ROWS, "big.csv"), owner=user)
    assert refusal(SheetRun(importing.pk, "clean"), user) == {
        "sheet_id": "The sheet is still being imported (or failed to)."
    }
    [import_job] = Job.objects.filter(kind=IMPORT)
    waiting = SheetRun(importing.pk, "clean", after=[import_job.pk])
    assert refusal(waiting.replace(start_row="0"), user) == {
        "start_row": "Start row must be a whole number from 1."
    }
    assert refusal(waiting.replace(row_count="-1"), user) == {
        "row_count": "Number of rows must be a positive whole number."
    }
    params = waiting.replace(start_row="2", row_count="10").check(user)
    assert (params["start_row"], params["row_count"], params["rows_wanted"]) == (2, None, 10)
    assert not Job.objects.filter(kind=KIND).exists(), "checking writes nothing"


def test_a_schedules_google_sheet_keeps_the_rows_asked_for(user, sheet):
    sheet.google_id = "1BxiMVs0XRA5nFMdKvBdBZjgmUUqptlbs74OgvE2upms"
    sheet.save(update_fields=["google_id"])
    run = SheetRun(sheet.pk, "clean", row_count="1", google_url=f" {GOOGLE_URL} ")
    params = run.check(user)
    assert params["google_url"] == GOOGLE_URL and params["google_row_count"] == 1
    assert run.replace(google_row_count=None).check(user)["google_row_count"] is None


@pytest.mark.parametrize(
    ("rows", "start", "wanted", "expected"), [(10, 1, None, 10), (10, 4, 3, 3), (10, 9, 5, 2)]
)
def test_rows_to_do_are_those_wanted_at_most_those_there_are(rows, start, wanted, expected):
    assert rows_to_do(rows, start, wanted) == expected
