"""Entity and session keys belong to their owner, and the prefixes a plug-in derives its
keys with (sheets: `sheet:`, `write-back:`) are reserved (`jobs.engine.keys`): a user
cannot give them, every lookup by key only finds the requester's jobs, and deleting a
sheet acts on its owner's jobs only, never naming another user's job."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from jobs.engine.services import job_cancel, job_submit
from jobs.models import Batch, Job
from sheets.kinds import KIND
from sheets.models import Sheet
from tests.jobs.factories import submit_demo
from tests.sheets.factories import make_sheet

pytestmark = pytest.mark.django_db

RESERVED = ["sheet:1", "SHEET:1", "  sheet:1", "sheet:1:after:2", "write-back:3"]


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def post_json(client: Client, url: str, body: dict):
    return client.post(url, json.dumps(body), content_type="application/json")


@pytest.fixture(autouse=True)
def demo_submittable(settings) -> None:
    settings.CONVEYOR_SUBMITTABLE_KINDS = ["demo.count", KIND]


# -- user input ----------------------------------------------------------------------


@pytest.mark.parametrize("field", ["entity_key", "session_key"])
@pytest.mark.parametrize("key", RESERVED)
def test_the_api_refuses_a_reserved_key_prefix(user, field, key):
    response = post_json(logged_in(user), "/api/jobs/", {"kind": "demo.count", field: key})
    assert response.status_code == 400, response.json()
    assert "must not start with" in response.json()["fields"][field]
    assert not Job.objects.exists()


def test_a_batch_refuses_a_reserved_key_prefix(user):
    body = {"jobs": [{"kind": "demo.count"}, {"kind": "demo.count", "entity_key": "sheet:9"}]}
    response = post_json(logged_in(user), "/api/batches/", body)
    assert response.status_code == 400, response.json()
    assert "must not start with 'sheet:'" in response.json()["fields"]["jobs[1].entity_key"]
    assert not Job.objects.exists() and not Batch.objects.exists()


def test_keys_of_other_prefixes_stay_the_callers_to_choose(user):
    for key in ["doc:1", "sheets/42/tab 1", "my-sheet:1"]:
        response = post_json(
            logged_in(user), "/api/jobs/", {"kind": "demo.count", "entity_key": key}
        )
        assert response.status_code == 201, response.json()


def test_the_reserved_prefixes_are_what_plug_ins_register(user, monkeypatch):
    from jobs.engine import keys

    assert {"sheet:", "write-back:"} <= set(keys.reserved_prefixes()), "sheets at start-up"
    monkeypatch.setattr(keys, "_reserved", {*keys.reserved_prefixes(), "invoice:"})
    response = post_json(
        logged_in(user), "/api/jobs/", {"kind": "demo.count", "entity_key": "invoice:7"}
    )
    assert response.status_code == 400
    assert "'invoice:'" in response.json()["fields"]["entity_key"]


def test_a_sheet_job_through_the_api_still_gets_its_sheets_key(user):
    sheet = make_sheet(user, [["a"], ["1"]])
    body = {"kind": KIND, "params": {"sheet_id": sheet.pk, "processor": "clean"}}
    response = post_json(logged_in(user), "/api/jobs/", body)
    assert response.status_code == 201
    assert response.json()["entity_key"] == f"sheet:{sheet.pk}", "derived, not typed"


# -- lookups by key: the requester's jobs only ---------------------------------------------


def test_lookups_by_key_find_only_the_requesters_jobs(user, other_user):
    sheet = make_sheet(user, [["a"], ["1"]])
    key = f"sheet:{sheet.pk}"
    theirs = submit_demo(other_user, n=1, entity_key=key, session_key=key)  # an old forged key
    for segment in ("entity", "session"):
        response = logged_in(user).get(f"/api/jobs/by-{segment}/{key}/")
        assert response.status_code == 404, f"{segment}: not bob's job #{theirs.pk}"
    page = logged_in(user).get(f"/sheets/{sheet.pk}/").content.decode()
    assert f"/jobs/{theirs.pk}/" not in page


def test_unique_jobs_deduplicate_per_owner_and_ownerless_jobs_among_themselves(user, other_user):
    mine = submit_demo(user, n=1, entity_key="doc:1")
    theirs = submit_demo(other_user, n=1, entity_key="doc:1")
    system = submit_demo(None, n=1, entity_key="doc:1")
    assert len({mine.pk, theirs.pk, system.pk}) == 3
    again, created = job_submit(kind="demo.count", params={"n": 1}, entity_key="doc:1")
    assert (again.pk, created) == (system.pk, False)
    assert submit_demo(user, n=1, entity_key="doc:1").pk == mine.pk


# -- deleting a sheet ------------------------------------------------------------------


def forged(owner, key: str) -> Job:
    """A sheet job of `owner` on their own sheet, under another sheet's key (what the API
    let anyone type before the prefix was reserved)."""
    own = make_sheet(owner, [["a"], ["1"]])
    params = {"sheet_id": own.pk, "processor": "clean", "row_count": 1}
    job, _ = job_submit(
        kind=KIND, params=params, owner=owner, entity_key=key, label="forged", total=1
    )
    return job


def test_deleting_a_sheet_acts_only_on_its_owners_jobs(user, other_user):
    sheet = make_sheet(user, [["a"], ["1"]], name="alice.csv")
    key = f"sheet:{sheet.pk}"
    active = forged(other_user, key)
    finished = forged(other_user, f"{key}:after:1")
    job_cancel(job=finished)
    alice = logged_in(user)
    confirm = alice.get(f"/sheets/{sheet.pk}/delete/").content.decode()
    assert f"#{active.pk}" not in confirm and 'id="confirm-delete"' in confirm
    response = alice.post(f"/sheets/{sheet.pk}/delete/")
    assert response.status_code == 302, response.content.decode()
    assert not Sheet.objects.filter(pk=sheet.pk).exists()
    assert Job.objects.filter(pk__in=[active.pk, finished.pk]).count() == 2, "bob's stay"


def test_another_users_run_on_the_sheet_blocks_its_delete_without_being_named(user, staff_user):
    sheet = make_sheet(user, [["a"], ["1"]], name="alice.csv")
    body = {"kind": KIND, "params": {"sheet_id": sheet.pk, "processor": "clean"}}
    response = post_json(logged_in(staff_user), "/api/jobs/", body)
    job_id = response.json()["id"]
    assert Job.objects.get(pk=job_id).owner == staff_user
    response = logged_in(user).post(f"/sheets/{sheet.pk}/delete/")
    assert response.status_code == 409
    text = response.content.decode().replace("&#x27;", "'")
    assert "Another user's job is processing" in text and f"#{job_id}" not in text
    assert Sheet.objects.filter(pk=sheet.pk).exists()
