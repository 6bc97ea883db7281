"""One rule for starting work in another user's name or on their sheet, on every path
that submits (`jobs.selectors.may_submit_for`): the work is the actor's own, or the
actor has the model permission `jobs.add_job`. Staff without it see other users' sheets
but start nothing on them: pages answer 404, the API "No such sheet" (400), the CLI a
usage error; retrying another's job takes `jobs.change_job` (`may_act`), as before."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from jobs.engine.runner import run_one_slice
from jobs.models import Batch, Job, Schedule
from jobs.schedules.services import schedule_create
from sheets.kinds import KIND
from sheets.models import Sheet
from tests.jobs.cli.test_verbs import conveyor
from tests.sheets.factories import make_sheet

pytestmark = pytest.mark.django_db

S = Job.Status


@pytest.fixture
def viewer(django_user_model):
    """Staff who may look at everyone's sheets and jobs, without model permissions."""
    return django_user_model.objects.create_user("viewer", password="pw", is_staff=True)


@pytest.fixture
def sheet(user) -> Sheet:
    return make_sheet(user, [["name", "email"], ["Ada", "ADA@example.com"], ["Bo", "b@x.io"]])


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def post_json(client: Client, url: str, body: dict, method: str = "post"):
    return getattr(client, method)(url, json.dumps(body), content_type="application/json")


def grant(user, codename: str) -> None:
    user.user_permissions.add(Permission.objects.get(codename=codename))


def run(sheet: Sheet) -> dict:
    return {"kind": KIND, "params": {"sheet_id": sheet.pk, "processor": "clean"}}


# -- the rule ------------------------------------------------------------------------


def test_the_rule_is_the_owner_or_the_model_permission(user, viewer, staff_user):
    from jobs.selectors import may_act_for, may_submit_for

    assert may_submit_for(user, user.pk)
    assert not may_submit_for(viewer, user.pk), "staff alone is not enough"
    assert not may_submit_for(viewer, None), "nobody's work needs the permission too"
    assert may_submit_for(staff_user, user.pk), "a superuser has every permission"
    grant(viewer, "add_job")
    viewer = type(viewer).objects.get(pk=viewer.pk)  # permissions are cached per object
    assert may_submit_for(viewer, user.pk)
    assert not may_act_for(viewer, user.pk, "change"), "adding is not changing"


# -- pages ---------------------------------------------------------------------------


def test_the_sheet_page_start_is_a_404_for_staff_without_the_permission(viewer, sheet):
    page = logged_in(viewer)
    assert page.get(f"/sheets/{sheet.pk}/").status_code == 200, "staff still see the sheet"
    response = page.post(f"/sheets/{sheet.pk}/start/", {"processor": "clean", "priority": "9"})
    assert response.status_code == 404
    assert not Job.objects.exists()


def test_try_on_5_rows_is_a_404_for_staff_without_the_permission(viewer, sheet):
    response = logged_in(viewer).post(f"/sheets/{sheet.pk}/trial/", {"processor": "clean"})
    assert response.status_code == 404
    assert not Job.objects.exists()


def test_then_run_chain_is_a_404_for_staff_without_the_permission(viewer, sheet):
    form = {"processor": "clean", "then_processor": ["copy"], "then_columns": ["name"]}
    response = logged_in(viewer).post(f"/sheets/{sheet.pk}/start/", form)
    assert response.status_code == 404
    assert not Job.objects.exists()


def test_write_back_is_a_404_for_staff_without_the_permission(viewer, user, sheet):
    mine = logged_in(user)
    mine.post(f"/sheets/{sheet.pk}/start/", {"processor": "clean"})
    job = Job.objects.get()
    response = logged_in(viewer).post(f"/sheets/jobs/{job.pk}/write-back/")
    assert response.status_code == 404
    assert Job.objects.count() == 1


def test_with_the_permission_staff_start_a_run_in_the_owners_name(viewer, user, sheet):
    grant(viewer, "add_job")
    response = logged_in(viewer).post(f"/sheets/{sheet.pk}/start/", {"processor": "clean"})
    assert response.status_code == 302
    assert Job.objects.get().owner == user, "the sheet page submits in its owner's name"


# -- retry: the rule of may_act (change_job) -------------------------------------------


def test_retrying_anothers_job_needs_the_change_permission_everywhere(viewer, user, sheet):
    logged_in(user).post(f"/sheets/{sheet.pk}/start/", {"processor": "clean"})
    job = Job.objects.get()
    while not Job.objects.get(pk=job.pk).is_terminal:
        run_one_slice(job.pk)
    page = logged_in(viewer).post(f"/jobs/{job.pk}/retry/", follow=True)
    assert "belongs to another user" in page.content.decode()
    api = logged_in(viewer).post(f"/api/jobs/{job.pk}/retry/")
    assert api.status_code == 409 and "belongs to another user" in api.json()["error"]
    cli = conveyor("retry", str(job.pk), "--user", "viewer")
    assert cli.code == 2 and "belongs to another user" in cli.err
    assert Job.objects.get(pk=job.pk).status == S.SUCCEEDED


# -- the API -------------------------------------------------------------------------


def test_api_sheet_job_submit_on_anothers_sheet_is_refused(viewer, sheet):
    response = post_json(logged_in(viewer), "/api/jobs/", run(sheet))
    assert response.status_code == 400, response.json()
    assert "No such sheet" in response.json()["error"]
    assert not Job.objects.exists()


def test_api_batch_on_anothers_sheet_is_refused(viewer, sheet):
    response = post_json(logged_in(viewer), "/api/batches/", {"jobs": [run(sheet)]})
    assert response.status_code == 400, response.json()
    assert "No such sheet" in response.json()["fields"]["jobs[0].params"]
    assert not Job.objects.exists() and not Batch.objects.exists()


def test_api_schedule_on_anothers_sheet_is_refused_at_create_and_edit(viewer, sheet):
    client = logged_in(viewer)
    response = post_json(client, "/api/schedules/", {**run(sheet), "every": "1h"})
    assert response.status_code == 400, response.json()
    assert "No such sheet" in response.json()["error"]
    own = make_sheet(viewer, [["a"], ["1"]])
    schedule = schedule_create(
        owner=viewer, kind=KIND, params={"sheet_id": own.pk, "processor": "clean"}, every="1h"
    )
    edit = {"params": {"sheet_id": sheet.pk, "processor": "clean"}}
    response = post_json(client, f"/api/schedules/{schedule.pk}/", edit, method="patch")
    assert response.status_code == 400, response.json()
    assert Schedule.objects.get(pk=schedule.pk).params["sheet_id"] == own.pk
    assert Schedule.objects.count() == 1


def test_api_with_the_permission_staff_may_submit_on_anothers_sheet(viewer, sheet):
    grant(viewer, "add_job")
    response = post_json(logged_in(viewer), "/api/jobs/", run(sheet))
    assert response.status_code == 201, response.json()


# -- the CLI ---------------------------------------------------------------------------


def test_cli_submit_and_batch_on_anothers_sheet_are_refused(viewer, user, sheet):
    ref = f"sheet:{sheet.pk}"
    result = conveyor("submit", ref, "--processor", "clean", "--user", "viewer")
    assert result.code == 2 and f"No sheet #{sheet.pk} (acting as viewer)" in result.err
    own = make_sheet(viewer, [["a"], ["1"]])
    several = conveyor("submit", f"sheet:{own.pk}", ref, "--processor", "clean", "--user", "viewer")
    assert several.code == 2 and f"No sheet #{sheet.pk}" in several.err
    assert not Job.objects.exists() and not Batch.objects.exists()
    assert conveyor("submit", ref, "--processor", "clean", "--user", "alice").code == 0


def test_cli_schedule_add_on_anothers_sheet_is_refused(viewer, sheet):
    result = conveyor(
        "schedule", "add", f"sheet:{sheet.pk}", "--processor", "clean", "--every", "1h",
        "--user", "viewer",
    )  # fmt: skip
    assert result.code == 2 and f"No sheet #{sheet.pk}" in result.err
    assert not Schedule.objects.exists()
