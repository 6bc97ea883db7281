"""Priorities for normal users are high, normal or low; any integer is for staff (it lets
a job overtake everyone's). Through the API (a 400 naming the field), the sheet form
(a form error) and the CLI for the user it acts as (`--user`: a usage error), and no
job or schedule is made. One rule: `jobs.selectors.priority_for`."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from jobs.models import Job, Schedule
from tests.jobs.cli.test_verbs import conveyor
from tests.sheets.factories import make_sheet

pytestmark = pytest.mark.django_db


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def submit(client: Client, priority):
    body = json.dumps({"kind": "sheets.process", "params": {}, "priority": priority})
    return client.post("/api/jobs/", body, content_type="application/json")


@pytest.mark.parametrize("priority", [2**31 - 1, 11, 1, -11, "1000", "-2147483647"])
def test_api_refuses_integer_priorities_from_users(user, priority):
    response = submit(logged_in(user), priority)
    assert response.status_code == 400
    assert "high, normal or low" in response.json()["fields"]["priority"]
    assert not Job.objects.exists()


def test_api_lets_staff_use_any_integer(staff_user, user):
    sheet = make_sheet(staff_user, [["a"], ["1"]])
    body = {"kind": "sheets.process", "priority": 2**31 - 1}
    body["params"] = {"sheet_id": sheet.pk, "processor": "clean"}
    response = logged_in(staff_user).post(
        "/api/jobs/", json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 201, response.json()
    assert Job.objects.get().priority == 2**31 - 1


@pytest.mark.parametrize("priority", ["high", "normal", "low", 10, -10, 0])
def test_api_accepts_the_named_priorities_from_users(user, priority):
    response = submit(logged_in(user), priority)
    assert "priority" not in response.json().get("fields", {})


@pytest.mark.parametrize("priority", ["2147483647", "11", "-1"])
def test_sheet_form_refuses_integer_priorities_from_users(user, priority):
    sheet = make_sheet(user, [["a"], ["1"]])
    response = logged_in(user).post(
        f"/sheets/{sheet.pk}/start/", {"processor": "clean", "priority": priority}
    )
    assert response.status_code == 400
    assert "must be high, normal or low (other values are for staff)" in response.content.decode()
    assert not Job.objects.exists()


def test_sheet_form_takes_named_priorities_from_users_and_integers_from_staff(user, staff_user):
    sheet = make_sheet(user, [["a"], ["1"]])
    response = logged_in(user).post(
        f"/sheets/{sheet.pk}/start/", {"processor": "clean", "priority": "high"}
    )
    assert response.status_code == 302
    assert Job.objects.get().priority == 10
    Job.objects.all().delete()
    response = logged_in(staff_user).post(
        f"/sheets/{sheet.pk}/start/", {"processor": "clean", "priority": "500"}
    )
    assert response.status_code == 302
    assert Job.objects.get().priority == 500


def test_sheet_form_refuses_a_staff_priority_beyond_the_column(staff_user, user):
    sheet = make_sheet(user, [["a"], ["1"]])
    response = logged_in(staff_user).post(
        f"/sheets/{sheet.pk}/start/", {"processor": "clean", "priority": str(2**31)}
    )
    assert response.status_code == 400
    assert "must be between -2147483647 and 2147483647" in response.content.decode()
    assert not Job.objects.exists()


@pytest.mark.parametrize("priority", ["500", "11", "-1"])
def test_cli_refuses_integer_priorities_for_the_user_it_acts_as(user, priority):
    sheet = make_sheet(user, [["a"], ["1"]])
    ref = f"sheet:{sheet.pk}"
    submitted = conveyor(
        "submit", ref, "--processor", "clean", "--priority", priority, "--user", "alice"
    )
    assert submitted.code == 2
    assert "must be high, normal or low (other values are for staff)" in submitted.err
    batch = conveyor(
        "submit", ref, ref, "--processor", "clean", "--priority", priority, "--user", "alice"
    )
    assert batch.code == 2 and "other values are for staff" in batch.err
    scheduled = conveyor(
        "schedule", "add", ref, "--processor", "clean", "--every", "1h",
        "--priority", priority, "--user", "alice",
    )  # fmt: skip
    assert scheduled.code == 2 and "other values are for staff" in scheduled.err
    assert not Job.objects.exists() and not Schedule.objects.exists()


def test_cli_takes_named_priorities_from_users_and_integers_from_staff(user, staff_user):
    sheet = make_sheet(user, [["a"], ["1"]])
    ref = f"sheet:{sheet.pk}"
    mine = conveyor("submit", ref, "--processor", "clean", "--priority", "low", "--user", "alice")
    assert mine.code == 0, mine.err
    assert Job.objects.get(pk=int(mine.out)).priority == -10
    staff = conveyor("submit", ref, "--processor", "clean", "--priority", "500")  # a superuser
    assert staff.code == 0, staff.err
    assert Job.objects.get(pk=int(staff.out)).priority == 500
