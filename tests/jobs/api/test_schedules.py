"""The schedules API (jobs/api/schedules.py), the Schedules page and the schedule admin:
each for its owner, for another user (404), for staff; bad input is a clear 400 that
creates nothing; runs show up in the job JSON with their schedule and due time."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from jobs.models import Job, Schedule
from jobs.schedules.services import run_due_schedules, schedule_create
from tests.jobs.api.conftest import client_for

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def submittable(settings) -> None:
    settings.CONVEYOR_SUBMITTABLE_KINDS = ["demo.count"]
    settings.CONVEYOR_SCHEDULE_MIN_EVERY_SECONDS = 5


def send(client: Client, method: str, url: str, body: Any = None):
    data = body if isinstance(body, str | bytes) or body is None else json.dumps(body)
    call = getattr(client, method)
    if data is None:
        return call(url)
    return call(url, data=data, content_type="application/json")


def make(owner, **kw) -> Schedule:
    fields = {"kind": "demo.count", "params": {"n": 1}, "every": 60, **kw}
    return schedule_create(owner=owner, **fields)


DAILY = {"kind": "demo.count", "params": {"n": 2}, "cron": "0 7 * * *", "timezone": "Europe/Paris"}


# -- API: create, read, list ------------------------------------------------------------


def test_create_a_cron_schedule(alice, user):
    response = send(alice, "post", "/api/schedules/", {**DAILY, "name": "Morning count"})
    assert response.status_code == 201, response.json()
    body = response.json()
    assert response["Location"] == f"/api/schedules/{body['id']}/"
    assert body["name"] == "Morning count"
    assert (body["cron"], body["every"], body["timezone"]) == ("0 7 * * *", None, "Europe/Paris")
    assert (body["overlap"], body["enabled"], body["owner"]) == ("skip", True, "alice")
    assert body["next_run_at"].endswith(("05:00:00+00:00", "06:00:00+00:00"))  # 07:00 Paris
    assert Schedule.objects.get().owner == user


def test_create_an_interval_schedule_from_a_duration(alice):
    body = {"kind": "demo.count", "every": "10m", "overlap": "queue", "priority": "high"}
    response = send(alice, "post", "/api/schedules/", body)
    assert response.status_code == 201, response.json()
    assert (response.json()["every"], response.json()["when"]) == (600, "every 10 min")
    assert response.json()["priority"] == "high"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**DAILY, "cron": "0 7 * *"}, "cron"),
        ({**DAILY, "cron": "61 7 * * *"}, "cron"),
        ({**DAILY, "cron": 7}, "cron"),
        ({**DAILY, "timezone": "Europe/Atlantis"}, "timezone"),
        ({**DAILY, "timezone": None}, "timezone"),
        ({"kind": "demo.count", "every": 2}, "every"),
        ({"kind": "demo.count", "every": "2s"}, "every"),
        ({"kind": "demo.count", "every": "soon"}, "every"),
        ({"kind": "demo.count", "every": True}, "every"),
        ({**DAILY, "every": 60}, "cron"),
        ({"kind": "demo.count"}, "cron"),
        ({**DAILY, "overlap": "sometimes"}, "overlap"),
        ({**DAILY, "kind": "demo.serial"}, "kind"),
        ({**DAILY, "kind": "nope"}, "kind"),
        ({**DAILY, "params": {"n": -1}}, "params"),
        ({**DAILY, "params": []}, "params"),
        ({**DAILY, "priority": "urgent"}, "priority"),
        ({**DAILY, "name": "x" * 201}, "name"),
        ({**DAILY, "enabled": "yes"}, "enabled"),
        ({**DAILY, "colour": "blue"}, "colour"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_creates_nothing(alice, body, field):
    response = send(alice, "post", "/api/schedules/", body)
    assert response.status_code == 400, response.content
    assert field in response.json()["fields"], response.json()
    assert not Schedule.objects.exists()


def test_every_bad_field_is_reported_at_once(alice):
    body = {"kind": "nope", "cron": "bad", "overlap": "x", "priority": "urgent"}
    response = send(alice, "post", "/api/schedules/", body)
    assert response.status_code == 400
    assert set(response.json()["fields"]) == {"kind", "cron", "overlap", "priority"}


def test_bad_json_and_forms_are_refused(alice):
    assert send(alice, "post", "/api/schedules/", "{nope").status_code == 400
    assert send(alice, "post", "/api/schedules/", "[]").status_code == 400
    assert alice.post("/api/schedules/", {"kind": "demo.count"}).status_code == 415


def test_users_see_only_their_own_schedules_and_staff_see_all(alice, bob, staff, user, other_user):
    mine, theirs = make(user, name="mine"), make(other_user, name="theirs")
    assert [s["id"] for s in alice.get("/api/schedules/").json()["results"]] == [mine.pk]
    assert {s["id"] for s in staff.get("/api/schedules/").json()["results"]} == {mine.pk, theirs.pk}
    only_bob = staff.get("/api/schedules/?owner=bob").json()["results"]
    assert [s["id"] for s in only_bob] == [theirs.pk]
    assert alice.get("/api/schedules/?owner=bob").json()["results"] == []
    assert alice.get("/api/schedules/?colour=1").status_code == 400


def test_another_users_schedule_is_a_404_for_every_method(alice, other_user):
    theirs = make(other_user)
    url = f"/api/schedules/{theirs.pk}/"
    assert send(alice, "get", url).status_code == 404
    assert send(alice, "patch", url, {"enabled": False}).status_code == 404
    assert send(alice, "delete", url).status_code == 404
    assert send(alice, "post", url + "run-now/").status_code == 404
    assert send(alice, "get", "/api/schedules/999999/").status_code == 404
    assert send(alice, "get", "/api/schedules/abc/").status_code == 400
    theirs.refresh_from_db()
    assert theirs.enabled and Job.objects.count() == 0


def test_anonymous_is_401(client):
    assert client.get("/api/schedules/").status_code == 401
    assert send(client, "post", "/api/schedules/", DAILY).status_code == 401


def test_read_shows_the_recent_runs_and_jobs_carry_their_schedule(alice, user):
    schedule = make(user, every=60)
    run_due_schedules(schedule.next_run_at)
    body = alice.get(f"/api/schedules/{schedule.pk}/").json()
    [run] = body["runs"]
    assert (run["schedule"], run["scheduled_for"]) == (
        schedule.pk,
        schedule.next_run_at.isoformat(),
    )
    assert body["last_job"] == run["id"] and body["last_job_status"] == "queued"
    assert body["run_count"] == 1
    job = alice.get(f"/api/jobs/{run['id']}/").json()
    assert (job["schedule"], job["scheduled_for"]) == (schedule.pk, run["scheduled_for"])


def test_secrets_in_params_are_masked(alice, user):
    schedule = make(user, params={"n": 1, "api_key": "sk-very-secret"})
    body = alice.get(f"/api/schedules/{schedule.pk}/").json()
    assert "sk-very-secret" not in json.dumps(body)


# -- API: change, delete, run now ---------------------------------------------------------


def test_patch_changes_the_recurrence_and_pauses(alice, user):
    schedule = make(user, every=60)
    url = f"/api/schedules/{schedule.pk}/"
    response = send(alice, "patch", url, {"cron": "*/5 * * * *", "name": "five"})
    assert response.status_code == 200, response.json()
    assert (response.json()["cron"], response.json()["every"]) == ("*/5 * * * *", None)
    response = send(alice, "patch", url, {"enabled": False})
    assert (response.json()["enabled"], response.json()["next_run_at"]) == (False, None)
    response = send(alice, "patch", url, {"enabled": True, "every": "30s"})
    assert response.json()["every"] == 30 and response.json()["next_run_at"]
    response = send(alice, "patch", url, {"timezone": "Asia/Tokyo"})
    assert response.json()["timezone"] == "Asia/Tokyo"


def test_patch_refuses_bad_and_unknown_fields_and_changes_nothing(alice, user):
    schedule = make(user, every=60)
    url = f"/api/schedules/{schedule.pk}/"
    for body, field in [
        ({"cron": "nope"}, "cron"),
        ({"every": 1}, "every"),
        ({"timezone": "Nowhere"}, "timezone"),
        ({"kind": "demo.serial"}, "kind"),
        ({"params": {"n": "many"}}, "params"),
        ({"enabled": 1}, "enabled"),
    ]:
        response = send(alice, "patch", url, body)
        assert response.status_code == 400, (body, response.content)
        assert field in response.json()["fields"]
    fresh = Schedule.objects.get(pk=schedule.pk)
    assert (fresh.every_seconds, fresh.cron, fresh.timezone, fresh.params) == (
        60,
        "",
        "UTC",
        {"n": 1},
    )


def test_delete_removes_the_schedule_but_not_its_jobs(alice, user):
    schedule = make(user, every=60)
    run_due_schedules(schedule.next_run_at)
    response = send(alice, "delete", f"/api/schedules/{schedule.pk}/")
    assert response.status_code == 204
    assert not Schedule.objects.exists()
    assert Job.objects.count() == 1


def test_run_now_starts_a_job_and_respects_the_skip_policy(alice, user):
    schedule = make(user, every=60)
    url = f"/api/schedules/{schedule.pk}/run-now/"
    response = send(alice, "post", url)
    assert response.status_code == 201, response.json()
    job = response.json()
    assert job["schedule"] == schedule.pk and job["scheduled_for"]
    assert response["Location"] == f"/api/jobs/{job['id']}/"
    again = send(alice, "post", url)
    assert again.status_code == 409
    assert "still active" in again.json()["error"]
    assert send(alice, "post", url, {"now": True}).status_code == 400
    assert alice.get(url).status_code == 405


def test_staff_without_the_permission_may_see_but_not_change_others_schedules(
    django_user_model, user
):
    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    client = client_for(viewer)
    schedule = make(user)
    url = f"/api/schedules/{schedule.pk}/"
    assert client.get(url).status_code == 200
    assert send(client, "patch", url, {"enabled": False}).status_code == 409
    assert send(client, "post", url + "run-now/").status_code == 409
    assert send(client, "delete", url).status_code == 409
    viewer.user_permissions.add(
        Permission.objects.get(codename="change_schedule", content_type__app_label="jobs")
    )
    client = client_for(django_user_model.objects.get(pk=viewer.pk))
    assert send(client, "patch", url, {"enabled": False}).status_code == 200
    assert send(client, "delete", url).status_code == 409


# -- the Schedules page -----------------------------------------------------------------


def test_the_page_lists_my_schedules_with_next_and_last_run(alice, user, other_user):
    mine = make(user, name="Nightly count")
    make(other_user, name="Bob's thing")
    run_due_schedules(mine.next_run_at)
    job = Job.objects.get()
    page = alice.get("/schedules/").content.decode()
    assert "Nightly count" in page and "Bob&#x27;s thing" not in page and "Bob's thing" not in page
    assert f'href="/jobs/{job.pk}/"' in page
    assert "every 1 min" in page
    assert 'href="/schedules/"' in alice.get("/jobs/").content.decode()  # in the nav


def test_page_buttons_pause_resume_run_now_and_delete(alice, user):
    schedule = make(user)
    base = f"/schedules/{schedule.pk}"
    assert alice.post(f"{base}/pause/").status_code == 302
    assert not Schedule.objects.get().enabled
    assert "paused" in alice.get("/schedules/").content.decode()
    alice.post(f"{base}/resume/")
    assert Schedule.objects.get().enabled
    alice.post(f"{base}/run-now/")
    assert Job.objects.filter(schedule=schedule).count() == 1
    page = alice.post(f"{base}/run-now/", follow=True).content.decode()
    assert "still active" in page  # skip policy, shown as a message
    assert Job.objects.filter(schedule=schedule).count() == 1
    alice.post(f"{base}/delete/")
    assert not Schedule.objects.exists()


def test_page_actions_need_post_csrf_and_ownership(user, other_user, bob):
    schedule = make(user)
    assert bob.post(f"/schedules/{schedule.pk}/pause/").status_code == 404
    assert client_for(user).get(f"/schedules/{schedule.pk}/pause/").status_code == 405
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    assert strict.post(f"/schedules/{schedule.pk}/pause/").status_code == 403
    assert client_for(user).post(f"/schedules/{schedule.pk}/explode/").status_code == 400
    assert Schedule.objects.get().enabled


def test_the_table_refreshes_itself(alice, user):
    make(user, name="Polled")
    response = alice.get("/schedules/", headers={"HX-Request": "true"})
    html = response.content.decode()
    assert "Polled" in html and "<html" not in html and 'hx-trigger="every 5s"' in html


# -- admin --------------------------------------------------------------------------------


def test_admin_lists_schedules_and_its_actions_go_through_the_services(staff, user):
    schedule = make(user, name="Admin me")
    assert "Admin me" in staff.get("/admin/jobs/schedule/").content.decode()
    assert staff.get(f"/admin/jobs/schedule/{schedule.pk}/change/").status_code == 200

    def act(action: str):
        return staff.post(
            "/admin/jobs/schedule/", {"action": action, "_selected_action": [schedule.pk]}
        )

    act("pause_schedules")
    assert not Schedule.objects.get().enabled
    act("resume_schedules")
    assert Schedule.objects.get().enabled
    act("run_schedules_now")
    assert Job.objects.filter(schedule=schedule).count() == 1
    assert staff.get("/admin/jobs/schedule/add/").status_code == 403


# -- ceilings and deactivated owners ------------------------------------------------------


def test_beyond_the_schedule_ceiling_a_create_is_a_409_that_says_so(alice, staff, settings):
    settings.CONVEYOR_MAX_SCHEDULES_PER_USER = 2
    for _ in range(2):
        assert send(alice, "post", "/api/schedules/", DAILY).status_code == 201
    response = send(alice, "post", "/api/schedules/", DAILY)
    assert response.status_code == 409
    assert "CONVEYOR_MAX_SCHEDULES_PER_USER=2" in response.json()["error"]
    assert Schedule.objects.count() == 2
    for _ in range(3):  # staff: no ceiling
        assert send(staff, "post", "/api/schedules/", DAILY).status_code == 201


def test_a_deactivated_owners_schedule_says_why_it_is_paused_and_stays_paused(
    staff, user, settings
):
    settings.CONVEYOR_SCHEDULE_MIN_EVERY_SECONDS = 1
    schedule = make(user, name="Owner gone", every=10)
    run_due_schedules(schedule.next_run_at)  # a run, still active
    run_due_schedules(Schedule.objects.get().next_run_at)  # skipped: counted
    user.is_active = False
    user.save()
    body = send(staff, "get", f"/api/schedules/{schedule.pk}/").json()
    assert (body["enabled"], body["paused_reason"]) == (False, "its owner's account is deactivated")
    assert body["skipped_count"] == 1 and body["last_skipped_at"]
    page = staff.get("/schedules/?all=1").content.decode()
    assert "its owner&#x27;s account is deactivated" in page and "(1 skipped)" in page
    response = send(staff, "patch", f"/api/schedules/{schedule.pk}/", {"enabled": True})
    assert response.status_code == 400 and "deactivated" in response.json()["fields"]["enabled"]
    page = staff.post(f"/schedules/{schedule.pk}/resume/", follow=True).content.decode()
    assert "cannot resume" in page
    assert not Schedule.objects.get().enabled
