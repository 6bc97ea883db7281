"""Priorities for normal users are high, normal or low; any integer is for staff (it lets
a job overtake everyone's). Through the API (a 400 naming the field) and the sheet form
(a form error), and no job is made."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from jobs.models import Job
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
    assert "Choose high, normal or low" in response.content.decode()
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
