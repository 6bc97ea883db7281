"""Sheet jobs through the JSON API: the same validation and permissions as the pages."""

from __future__ import annotations

import json

import pytest

from jobs.models import Job
from sheets.models import RowResult
from tests.sheets.factories import make_sheet, run_to_end

pytestmark = pytest.mark.django_db(transaction=True)


def post(client, body) -> tuple[int, dict]:
    response = client.post("/api/jobs/", json.dumps(body), content_type="application/json")
    return response.status_code, response.json()


def test_a_sheet_job_is_created_through_the_api(client, user):
    sheet = make_sheet(user, [["name", "email"], ["Ada", "ADA@example.com"]])
    client.force_login(user)
    status, body = post(
        client,
        {
            "kind": "sheets.process",
            "params": {"sheet_id": sheet.pk, "processor": "clean"},
            "priority": "high",
        },
    )
    assert status == 201 and body["status"] == "queued" and body["priority"] == "high"
    assert body["entity_key"] == f"sheet:{sheet.pk}", "the sheet's page will find it"
    assert body["label"] == "data.csv · Clean and validate"
    again_status, again = post(
        client, {"kind": "sheets.process", "params": {"sheet_id": sheet.pk, "processor": "clean"}}
    )
    assert again_status == 200 and again["deduplicated"] and again["id"] == body["id"]


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"processor": "clean"}, "No such sheet"),
        ({"sheet_id": "SHEET", "processor": "nope"}, "nope"),
        (
            {"sheet_id": "SHEET", "processor": "clean", "columns": ["zzz"]},
            "Not columns of this sheet",
        ),
        ({"sheet_id": "SHEET", "processor": "clean", "options": {"case": "x"}}, "Choose one of"),
        (
            {"sheet_id": "SHEET", "processor": "clean", "options": "loud"},
            "options must be an object",
        ),
        ({"sheet_id": "SHEET", "processor": "clean", "start_row": 0}, "Start row must be between"),
    ],
)
def test_bad_sheet_params_are_400_and_make_nothing(client, user, params, needle):
    sheet = make_sheet(user, [["name"], ["Ada"]])
    params = {k: (sheet.pk if v == "SHEET" else v) for k, v in params.items()}
    client.force_login(user)
    status, body = post(client, {"kind": "sheets.process", "params": params})
    assert status == 400 and needle in json.dumps(body), body
    assert not Job.objects.exists()


def test_another_users_sheet_cannot_be_processed(client, user, other_user):
    sheet = make_sheet(user, [["name"], ["Ada"]])
    client.force_login(other_user)
    status, body = post(
        client, {"kind": "sheets.process", "params": {"sheet_id": sheet.pk, "processor": "clean"}}
    )
    assert status == 400 and "No such sheet" in json.dumps(body)
    assert not Job.objects.exists()


def test_a_pipeline_step_names_the_columns_of_the_job_it_waits_for(client, user):
    """`after` at the top of the API's body, as for any job: the step may read the columns
    the earlier job will write (it has not run yet), and has a key of its own."""
    sheet = make_sheet(user, [["name", "email"], ["  Ada ", "ADA@example.com"]])
    client.force_login(user)
    clean = {"kind": "sheets.process", "params": {"sheet_id": sheet.pk, "processor": "clean"}}
    status, first = post(client, clean)
    assert status == 201 and first["status"] == "queued"
    step = {"sheet_id": sheet.pk, "processor": "copy", "columns": ["clean_name"]}
    status, body = post(client, {"kind": "sheets.process", "params": step, "after": [first["id"]]})
    assert status == 201, body
    assert body["entity_key"] == f"sheet:{sheet.pk}:after:{first['id']}"
    assert body["params"]["sources"] == {"clean_name": first["id"]}
    status, refused = post(client, {"kind": "sheets.process", "params": step})
    assert status == 400 and "clean_name" in refused["fields"]["params"], "without after"

    assert run_to_end(Job.objects.get(pk=first["id"])).status == Job.Status.SUCCEEDED
    done = run_to_end(Job.objects.get(pk=body["id"]))
    assert done.status == Job.Status.SUCCEEDED and done.processed == 1
    assert RowResult.objects.get(job=done).outputs == {"copy_clean_name": "Ada"}
