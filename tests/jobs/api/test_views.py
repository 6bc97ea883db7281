"""jobs/api/views.py and input.py, the JSON API under /api/: every endpoint for its owner, for another
user (404), for staff (everything), anonymously (401), with CSRF on session writes,
and with bad input of every sort (a clear 4xx, never a 500, never a half-made job)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from jobs.engine.kinds import job_kind
from jobs.kinds import count, validate
from jobs.models import Job, Notification
from tests.jobs.factories import fresh, run_to_end, status_of, submit_demo

pytestmark = pytest.mark.django_db

# A kind that can redo only its failed rows, to exercise retry {"failed_rows": true}.
job_kind(
    "test.api_rows",
    validate_params=validate,
    retry_failed_rows=lambda job: {"cursor": None, "processed": 0, "failed": 0},
)(count)


@pytest.fixture(autouse=True)
def submittable(settings) -> None:
    settings.CONVEYOR_SUBMITTABLE_KINDS = ["demo.count", "test.api_rows"]


def post(client: Client, url: str, body: Any = None, **extra: Any):
    if body is None:
        return client.post(url, **extra)
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(url, data=data, content_type="application/json", **extra)


def ids(response) -> list[int]:
    return [job["id"] for job in response.json()["results"]]


def finish(job: Job, status: str = Job.Status.SUCCEEDED, **fields: Any) -> Job:
    """Arrange a finished job without a worker (tests that need a real run use run_to_end)."""
    Job.objects.filter(pk=job.pk).update(status=status, finished_at=timezone.now(), **fields)
    return fresh(job)


# --- authentication, CSRF, methods, unknown URLs ---------------------------

ENDPOINTS = [
    ("get", "/api/jobs/"),
    ("post", "/api/jobs/"),
    ("get", "/api/jobs/1/"),
    ("delete", "/api/jobs/1/"),
    ("post", "/api/jobs/1/cancel/"),
    ("post", "/api/jobs/1/pause/"),
    ("post", "/api/jobs/1/resume/"),
    ("post", "/api/jobs/1/retry/"),
    ("get", "/api/jobs/running/"),
    ("get", "/api/jobs/recent-completions/"),
    ("get", "/api/jobs/by-session/tab-1/"),
    ("get", "/api/jobs/by-entity/sheet:1/"),
    ("get", "/api/notifications/"),
    ("post", "/api/notifications/mark-read/"),
]


@pytest.mark.parametrize(("method", "url"), ENDPOINTS)
def test_anonymous_requests_get_a_json_401_on_every_endpoint(client, user, method, url):
    submit_demo(user, n=3)
    response = getattr(client, method)(url)
    assert response.status_code == 401
    assert "error" in response.json()
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_an_inactive_user_with_a_session_gets_401(user, alice):
    user.is_active = False
    user.save()
    assert alice.get("/api/jobs/").status_code == 401


def test_session_posts_need_the_csrf_token_like_any_page_form(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    refused = post(client, "/api/jobs/", {"kind": "demo.count"})
    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]
    assert not Job.objects.exists()
    secret = "a" * 32
    client.cookies["csrftoken"] = secret
    accepted = post(client, "/api/jobs/", {"kind": "demo.count"}, HTTP_X_CSRFTOKEN=secret)
    assert accepted.status_code == 201
    # Safe methods need no token.
    assert client.get("/api/jobs/").status_code == 200


def test_a_wrong_method_is_a_json_405_with_allow(alice):
    response = alice.put("/api/jobs/", data="{}", content_type="application/json")
    assert response.status_code == 405
    assert response["Allow"] == "GET, POST"
    assert "PUT" in response.json()["error"]


def test_unknown_urls_are_json_404s_that_suggest_the_trailing_slash(alice):
    response = alice.get("/api/jobs")
    assert response.status_code == 404
    assert "/api/jobs/" in response.json()["error"]
    assert alice.get("/api/no/such/thing/").status_code == 404
    assert post(alice, "/api/nope/", {}).status_code == 404


# --- list ---------------------------------------------------------------------


def test_list_shows_only_my_jobs_and_staff_see_everyone(user, other_user, alice, bob, staff):
    mine = [submit_demo(user, n=1).pk for _ in range(2)]
    theirs = submit_demo(other_user, n=1).pk
    assert sorted(ids(alice.get("/api/jobs/"))) == sorted(mine)
    assert ids(bob.get("/api/jobs/")) == [theirs]
    assert sorted(ids(staff.get("/api/jobs/"))) == sorted([*mine, theirs])
    assert ids(staff.get("/api/jobs/?owner=bob")) == [theirs]
    # A non-staff user cannot widen the scope with ?owner=.
    assert ids(alice.get("/api/jobs/?owner=bob")) == []
    assert sorted(ids(alice.get("/api/jobs/?owner=alice"))) == sorted(mine)


def test_list_items_carry_the_documented_fields(user, alice):
    job = submit_demo(user, n=4, priority="high", entity_key="sheet:9")
    item = alice.get("/api/jobs/").json()["results"][0]
    expected = {
        "id": job.pk,
        "kind": "demo.count",
        "status": "queued",
        "priority": "high",
        "processed": 0,
        "failed": 0,
        "entity_key": "sheet:9",
        "owner": "alice",
        "url": f"/jobs/{job.pk}/",
        "active": True,
    }
    assert {k: item[k] for k in expected} == expected
    for field in ("label", "total", "percent", "message", "error", "session_key", "rate"):
        assert field in item
    for field in ("eta_seconds", "attempts", "created_at", "started_at", "finished_at"):
        assert field in item
    assert item["created_at"].endswith("+00:00")


def test_list_filters_by_status_kind_text_and_dates(user, alice):
    old = submit_demo(user, n=1)
    Job.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))
    done = finish(submit_demo(user, n=1), message="imported the customer sheet")
    failed = finish(submit_demo(user, n=1), Job.Status.FAILED, error="boom")
    serial = submit_demo(user, kind="demo.serial", n=1)

    assert ids(alice.get("/api/jobs/?status=succeeded,failed")) == [failed.pk, done.pk]
    assert ids(alice.get("/api/jobs/?status=failed&status=succeeded")) == [failed.pk, done.pk]
    assert ids(alice.get("/api/jobs/?kind=demo.serial")) == [serial.pk]
    assert ids(alice.get("/api/jobs/?q=CUSTOMER")) == [done.pk]
    assert ids(alice.get("/api/jobs/?q=boom")) == [failed.pk]
    cutoff = (timezone.now() - timedelta(days=5)).date().isoformat()
    assert ids(alice.get(f"/api/jobs/?created_before={cutoff}")) == [old.pk]
    assert old.pk not in ids(alice.get(f"/api/jobs/?created_after={cutoff}"))
    assert len(ids(alice.get(f"/api/jobs/?created_after={cutoff}T00:00:00Z"))) == 3


def test_list_is_paginated_with_a_capped_page_size(user, alice, settings):
    settings.CONVEYOR_API_MAX_PAGE_SIZE = 3
    jobs = [submit_demo(user, n=1).pk for _ in range(5)]
    first = alice.get("/api/jobs/?page_size=2").json()
    assert (first["count"], first["page"], first["pages"], first["page_size"]) == (5, 1, 3, 2)
    assert [j["id"] for j in first["results"]] == jobs[::-1][:2]
    last = alice.get("/api/jobs/?page_size=2&page=3").json()
    assert [j["id"] for j in last["results"]] == [jobs[0]]
    capped = alice.get("/api/jobs/?page_size=1000").json()
    assert capped["page_size"] == 3 and len(capped["results"]) == 3


def test_an_empty_list_has_one_empty_page(alice):
    body = alice.get("/api/jobs/").json()
    assert body == {"results": [], "count": 0, "page": 1, "pages": 1, "page_size": 25}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("page=0", "page"),
        ("page=-1", "page"),
        ("page=abc", "page"),
        ("page=2", "page"),
        ("page=" + "9" * 5000, "page"),
        ("page=99999999999999999999999", "page"),
        ("page_size=0", "page_size"),
        ("page_size=1.5", "page_size"),
        ("status=done", "status"),
        ("created_after=yesterday", "created_after"),
        ("created_after=2026-13-01", "created_after"),
        ("created_before=2026-01-01T25:00", "created_before"),
        ("created_before=9999-12-31T23:59:59-05:00", "created_before"),
        ("q=" + "x" * 201, "q"),
        ("q=%00", "q"),
        ("stauts=queued", "stauts"),
    ],
)
def test_bad_list_parameters_are_400s_naming_the_parameter(user, alice, query, field):
    submit_demo(user, n=1)
    response = alice.get(f"/api/jobs/?{query}")
    assert response.status_code == 400, response.content
    assert field in response.json()["fields"]


# --- create ---------------------------------------------------------------------


def test_create_submits_a_queued_job_of_mine(user, alice):
    body = {
        "kind": "demo.count",
        "params": {"n": 5},
        "priority": "low",
        "entity_key": "doc:1",
        "session_key": "tab-1",
        "label": "Count five",
        "time_limit": 60,
    }
    response = post(alice, "/api/jobs/", body)
    assert response.status_code == 201, response.content
    data = response.json()
    job = Job.objects.get(pk=data["id"])
    assert response["Location"] == f"/api/jobs/{job.pk}/"
    assert (job.owner, job.kind, job.params, job.priority) == (user, "demo.count", {"n": 5}, -10)
    assert (job.entity_key, job.session_key, job.label, job.time_limit) == (
        "doc:1",
        "tab-1",
        "Count five",
        60.0,
    )
    assert data["status"] == "queued" and data["priority"] == "low"
    assert data["deduplicated"] is False and data["params"] == {"n": 5}


def test_create_accepts_integer_priorities_from_staff_and_omitted_fields(staff):
    data = post(staff, "/api/jobs/", {"kind": "demo.count", "priority": 7}).json()
    assert data["priority"] == 7 and data["params"] == {}


def test_create_with_an_active_key_returns_that_job_with_200(user, alice):
    first = post(alice, "/api/jobs/", {"kind": "demo.count", "entity_key": "doc:1"})
    again = post(alice, "/api/jobs/", {"kind": "demo.count", "entity_key": "doc:1"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["deduplicated"] is True
    assert again.json()["id"] == first.json()["id"]
    assert Job.objects.count() == 1


BAD_BODIES = [
    ("not json", "not valid JSON", None),
    (b"\xff\xfe\x00garbage", "not valid JSON", None),
    ("[1, 2]", "JSON object", None),
    ('"demo.count"', "JSON object", None),
    ("", "JSON object", None),
    ("[" * 100_000 + "]" * 100_000, "not valid JSON", None),
    ('{"kind": "demo.count", "params": {"n": NaN}}', "not valid JSON", None),
    ({}, "kind", "kind"),
    ({"kind": 5}, "kind", "kind"),
    ({"kind": "no.such.kind"}, "unknown kind", "kind"),
    ({"kind": "demo.serial"}, "cannot be submitted", "kind"),
    ({"kind": "demo.count", "priority": "urgent"}, "priority", "priority"),
    ({"kind": "demo.count", "priority": True}, "priority", "priority"),
    ({"kind": "demo.count", "priority": 1.5}, "priority", "priority"),
    ({"kind": "demo.count", "priority": 2**40}, "priority", "priority"),
    ({"kind": "demo.count", "params": {"n": -1}}, "n must be", "params"),
    ({"kind": "demo.count", "params": {"n": "many"}}, "n must be", "params"),
    ({"kind": "demo.count", "params": [1]}, "JSON object", "params"),
    ({"kind": "demo.count", "params": "n=3"}, "JSON object", "params"),
    ({"kind": "demo.count", "colour": "red"}, "Unknown field", "colour"),
    ({"kind": "demo.count", "label": "x" * 201}, "200", "label"),
    ({"kind": "demo.count", "label": ["x"]}, "string", "label"),
    ({"kind": "demo.count", "entity_key": "k" * 201}, "200", "entity_key"),
    ({"kind": "demo.count", "session_key": 42}, "string", "session_key"),
    ({"kind": "demo.count", "label": "nul\x00byte"}, "NUL", "body"),
    ({"kind": "demo.count", "params": {"k\x00": 1}}, "NUL", "body"),
    ('{"kind": "demo.count", "label": "\\ud800"}', "Unicode", "body"),
    ({"kind": "demo.count", "params": {"big": 10**30}}, "too large", None),
    ({"kind": "demo.count", "time_limit": 0}, "time_limit", "time_limit"),
    ({"kind": "demo.count", "time_limit": -5}, "time_limit", "time_limit"),
    ({"kind": "demo.count", "time_limit": "1h"}, "time_limit", "time_limit"),
    ({"kind": "demo.count", "time_limit": 10**400}, "too large", None),
    ({"kind": "demo.count", "time_limit": 1e300}, "time_limit", "time_limit"),
]


@pytest.mark.parametrize(("body", "message", "field"), BAD_BODIES)
def test_bad_submissions_are_400s_and_create_nothing(alice, body, message, field):
    response = post(alice, "/api/jobs/", body)
    assert response.status_code == 400, response.content
    data = response.json()
    assert message in data["error"]
    if field:
        assert field in data["fields"]
    assert not Job.objects.exists()


def test_every_bad_field_of_a_submission_is_reported_at_once(alice):
    body = {"kind": "demo.count", "priority": "urgent", "label": 3, "params": {"n": -1}}
    data = post(alice, "/api/jobs/", body).json()
    assert set(data["fields"]) == {"priority", "label", "params"}
    assert data["error"].startswith("Invalid job: ")


def test_json_is_read_whatever_the_content_type_but_forms_are_refused(alice):
    # `curl -d '{...}'` labels JSON as a form; it is still JSON.
    body = json.dumps({"kind": "demo.count"})
    curl = alice.post("/api/jobs/", body, content_type="application/x-www-form-urlencoded")
    assert curl.status_code == 201
    form = alice.post("/api/jobs/", {"kind": "demo.count"})  # multipart form
    assert form.status_code == 415 and "JSON" in form.json()["error"]
    assert Job.objects.count() == 1


def test_a_body_over_the_cap_is_413(alice, settings):
    settings.CONVEYOR_API_MAX_BODY_BYTES = 1000
    body = {"kind": "demo.count", "label": "x", "params": {"pad": "y" * 2000}}
    response = post(alice, "/api/jobs/", body)
    assert response.status_code == 413 and "too large" in response.json()["error"]
    assert not Job.objects.exists()


def test_a_body_beyond_djangos_own_limit_is_413_too(alice, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    response = post(alice, "/api/jobs/", {"kind": "demo.count", "label": "x" * 150})
    assert response.status_code == 413


# --- one job ------------------------------------------------------------------


def test_read_one_job_with_params_and_its_event_timeline(user, alice):
    job = submit_demo(user, n=3)
    job_id = job.pk
    data = alice.get(f"/api/jobs/{job_id}/").json()
    assert data["id"] == job_id and data["params"] == {"n": 3}
    assert [e["message"] for e in data["events"]] == ["Queued"]
    assert data["events"][0]["status"] == "queued"


def test_another_users_job_is_404_but_staff_see_it(user, bob, staff):
    job = submit_demo(user, n=3)
    missing = bob.get(f"/api/jobs/{job.pk}/")
    assert missing.status_code == 404 and "not found" in missing.json()["error"]
    # Exactly what a job that does not exist looks like.
    assert bob.get("/api/jobs/999999/").json() == {"error": "Job 999999 not found."}
    assert staff.get(f"/api/jobs/{job.pk}/").json()["owner"] == "alice"


@pytest.mark.parametrize(
    ("job_id", "status"), [("abc", 400), ("0", 400), ("-3", 400), ("9" * 30, 404)]
)
def test_job_ids_that_are_not_ids_are_400_and_absent_ones_404(alice, job_id, status):
    assert alice.get(f"/api/jobs/{job_id}/").status_code == status
    assert post(alice, f"/api/jobs/{job_id}/cancel/").status_code == status


# --- actions ------------------------------------------------------------------


def test_pause_resume_and_cancel_a_queued_job(user, alice):
    job = submit_demo(user, n=3)
    paused = post(alice, f"/api/jobs/{job.pk}/pause/")
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    assert post(alice, f"/api/jobs/{job.pk}/resume/").json()["status"] == "queued"
    cancelled = post(alice, f"/api/jobs/{job.pk}/cancel/", {})
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["finished_at"]
    assert "Cancelled by alice" in [e.message for e in job.events.all()]


def test_actions_that_do_not_apply_are_409_with_the_reason(user, alice):
    job = submit_demo(user, n=3)
    resumed = post(alice, f"/api/jobs/{job.pk}/resume/")
    assert resumed.status_code == 409 and "only paused jobs" in resumed.json()["error"]
    assert post(alice, f"/api/jobs/{job.pk}/retry/").status_code == 409
    assert alice.delete(f"/api/jobs/{job.pk}/").status_code == 409
    post(alice, f"/api/jobs/{job.pk}/cancel/")
    again = post(alice, f"/api/jobs/{job.pk}/cancel/")
    assert again.status_code == 409 and "nothing to cancel" in again.json()["error"]
    assert post(alice, f"/api/jobs/{job.pk}/pause/").status_code == 409


@pytest.mark.parametrize("action", ["cancel", "pause", "resume", "retry"])
def test_other_users_cannot_act_on_my_job(user, bob, action):
    job = submit_demo(user, n=3)
    response = post(bob, f"/api/jobs/{job.pk}/{action}/")
    assert response.status_code == 404
    assert status_of(job) == "queued" and fresh(job).requested == ""
    assert bob.delete(f"/api/jobs/{job.pk}/").status_code == 404


def test_staff_can_act_on_anyones_job(user, staff):
    job = submit_demo(user, n=3)
    assert post(staff, f"/api/jobs/{job.pk}/cancel/").json()["status"] == "cancelled"
    assert staff.delete(f"/api/jobs/{job.pk}/").status_code == 204


@pytest.mark.parametrize(
    "body",
    ["not json", "[]", {"failed_rows": "yes"}, {"failed_rows": 1}, {"rows": True}],
)
def test_bad_action_bodies_are_400(user, alice, body):
    job = finish(submit_demo(user, n=3), Job.Status.FAILED)
    assert post(alice, f"/api/jobs/{job.pk}/retry/", body).status_code == 400
    assert post(alice, f"/api/jobs/{job.pk}/cancel/", {"force": "yes"}).status_code == 400
    assert status_of(job) == "failed"


@pytest.mark.django_db(transaction=True)
def test_retry_runs_a_finished_job_again(user, alice):
    job = run_to_end(submit_demo(user, n=3))
    response = post(alice, f"/api/jobs/{job.pk}/retry/")
    assert response.status_code == 200 and response.json()["status"] == "queued"
    assert run_to_end(fresh(job)).status == "succeeded"


@pytest.mark.django_db(transaction=True)
def test_retry_only_the_failed_rows(user, alice):
    rows = run_to_end(submit_demo(user, kind="test.api_rows", n=4, fail_units=[2]))
    assert rows.failed == 1
    response = post(alice, f"/api/jobs/{rows.pk}/retry/", {"failed_rows": True})
    assert response.status_code == 200
    assert "Retry (failed rows) by alice" in [e.message for e in rows.events.all()]
    plain = run_to_end(submit_demo(user, n=4, fail_units=[2]))
    refused = post(alice, f"/api/jobs/{plain.pk}/retry/", {"failed_rows": True})
    assert refused.status_code == 409 and "failed rows" in refused.json()["error"]


def test_delete_removes_a_finished_job(user, alice):
    job = finish(submit_demo(user, n=3))
    response = alice.delete(f"/api/jobs/{job.pk}/")
    assert response.status_code == 204
    assert not Job.objects.filter(pk=job.pk).exists()
    assert alice.delete(f"/api/jobs/{job.pk}/").status_code == 404


# --- running and recent completions ------------------------------------------


def test_running_lists_running_jobs_in_scope(user, other_user, alice, staff):
    running = submit_demo(user, n=3)
    Job.objects.filter(pk=running.pk).update(status=Job.Status.RUNNING)
    submit_demo(user, n=3)  # queued: not running
    theirs = submit_demo(other_user, n=3)
    Job.objects.filter(pk=theirs.pk).update(status=Job.Status.RUNNING)
    body = alice.get("/api/jobs/running/").json()
    assert ids(alice.get("/api/jobs/running/")) == [running.pk] and body["count"] == 1
    assert sorted(ids(staff.get("/api/jobs/running/"))) == sorted([running.pk, theirs.pk])
    assert ids(staff.get("/api/jobs/running/?owner=bob")) == [theirs.pk]
    assert alice.get("/api/jobs/running/?page=1").status_code == 400


def test_recent_completions_since_a_time(user, other_user, alice):
    before = timezone.now() - timedelta(seconds=1)
    old = finish(submit_demo(user, n=1))
    Job.objects.filter(pk=old.pk).update(finished_at=timezone.now() - timedelta(hours=2))
    done = finish(submit_demo(user, n=1))
    finish(submit_demo(other_user, n=1))
    submit_demo(user, n=1)  # still queued
    default = alice.get("/api/jobs/recent-completions/").json()
    assert [j["id"] for j in default["results"]] == [done.pk]
    assert default["more"] is False and default["now"]
    since = before.isoformat().replace("+00:00", "Z")
    assert ids(alice.get(f"/api/jobs/recent-completions/?since={since}")) == [done.pk]
    three_hours = (timezone.now() - timedelta(hours=3)).isoformat().replace("+00:00", "Z")
    assert ids(alice.get(f"/api/jobs/recent-completions/?since={three_hours}")) == [
        old.pk,
        done.pk,
    ]
    later = alice.get(f"/api/jobs/recent-completions/?since={default['now'].replace('+', '%2B')}")
    assert later.json()["results"] == []


def test_recent_completions_are_capped_and_say_there_is_more(user, alice, settings):
    settings.CONVEYOR_API_MAX_PAGE_SIZE = 2
    for _ in range(3):
        finish(submit_demo(user, n=1))
    body = alice.get("/api/jobs/recent-completions/").json()
    assert len(body["results"]) == 2 and body["more"] is True


@pytest.mark.parametrize("since", ["soon", "2026-02-30", "12:00", "%00"])
def test_recent_completions_refuse_bad_dates(alice, since):
    response = alice.get(f"/api/jobs/recent-completions/?since={since}")
    assert response.status_code == 400 and "since" in response.json()["fields"]


# --- by session / entity key -------------------------------------------------


@pytest.mark.parametrize("field", ["session_key", "entity_key"])
def test_by_key_prefers_the_active_job_then_the_latest(user, alice, field):
    segment = field.replace("_key", "")
    url = f"/api/jobs/by-{segment}/sheet:1/"
    assert alice.get(url).status_code == 404
    older = finish(submit_demo(user, n=1, **{field: "sheet:1"}))
    assert alice.get(url).json()["id"] == older.pk
    active = submit_demo(user, n=1, **{field: "sheet:1"})
    newest_done = finish(submit_demo(user, kind="demo.serial", n=1, **{field: "sheet:1"}))
    assert alice.get(url).json()["id"] == active.pk
    assert alice.get(f"{url}?kind=demo.serial").json()["id"] == newest_done.pk


def test_by_key_keys_may_contain_slashes(user, alice):
    job = submit_demo(user, n=1, entity_key="sheets/42/tab 1")
    assert alice.get("/api/jobs/by-entity/sheets/42/tab%201/").json()["id"] == job.pk


def test_by_key_only_finds_my_jobs_and_staff_name_the_owner(user, bob, staff):
    job = submit_demo(user, n=1, session_key="tab-7")
    assert bob.get("/api/jobs/by-session/tab-7/").status_code == 404
    assert bob.get("/api/jobs/by-session/tab-7/?owner=alice").status_code == 404
    assert staff.get("/api/jobs/by-session/tab-7/").status_code == 404
    assert staff.get("/api/jobs/by-session/tab-7/?owner=alice").json()["id"] == job.pk


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/api/jobs/by-session/%00/", 400),
        ("/api/jobs/by-entity/" + "k" * 201 + "/", 400),
        ("/api/jobs/by-entity/x/?colour=red", 400),
    ],
)
def test_by_key_refuses_bad_keys(alice, url, status):
    assert alice.get(url).status_code == status


# --- notifications ------------------------------------------------------------


def note(user, message: str, read: bool = False) -> Notification:
    return Notification.objects.create(
        user=user, message=message, read_at=timezone.now() if read else None
    )


def test_notifications_list_mine_and_filter_unread(user, other_user, alice):
    seen = note(user, "old news", read=True)
    fresh_note = note(user, "job done")
    note(other_user, "not yours")
    everything = alice.get("/api/notifications/").json()
    assert [n["id"] for n in everything["results"]] == [fresh_note.pk, seen.pk]
    assert everything["unread_count"] == 1
    unread = alice.get("/api/notifications/?unread=1").json()
    assert [n["message"] for n in unread["results"]] == ["job done"]
    assert unread["results"][0]["read"] is False
    assert alice.get("/api/notifications/?unread=maybe").status_code == 400


@pytest.mark.django_db(transaction=True)
def test_a_finished_job_notifies_through_the_api(user, alice):
    job = run_to_end(submit_demo(user, n=2))
    item = alice.get("/api/notifications/?unread=true").json()["results"][0]
    assert item["job_id"] == job.pk and item["level"] == "success"
    assert item["url"] == f"/jobs/{job.pk}/"


def test_mark_read_by_ids_ignores_other_users_notifications(user, other_user, alice):
    first, second = note(user, "one"), note(user, "two")
    theirs = note(other_user, "theirs")
    response = post(alice, "/api/notifications/mark-read/", {"ids": [first.pk, theirs.pk]})
    assert response.json() == {"marked": 1, "unread_count": 1}
    assert Notification.objects.get(pk=theirs.pk).read_at is None
    assert Notification.objects.get(pk=second.pk).read_at is None
    everything = post(alice, "/api/notifications/mark-read/", {"all": True})
    assert everything.json() == {"marked": 1, "unread_count": 0}


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"ids": "1,2"},
        {"ids": [1, "2"]},
        {"ids": [True]},
        {"ids": [0]},
        {"ids": [1.5]},
        {"ids": list(range(1, 1002))},
        {"all": "yes"},
        {"all": True, "ids": [1]},
        {"ids": [1], "everything": True},
        "nope",
        "[1]",
    ],
)
def test_mark_read_refuses_bad_bodies(user, alice, body):
    kept = note(user, "unread")
    assert post(alice, "/api/notifications/mark-read/", body).status_code == 400
    assert Notification.objects.get(pk=kept.pk).read_at is None


def test_mark_read_with_ids_beyond_any_row_marks_nothing(user, alice):
    note(user, "unread")
    response = post(alice, "/api/notifications/mark-read/", {"ids": [2**63 - 1]})
    assert response.json() == {"marked": 0, "unread_count": 1}
    too_big = post(alice, "/api/notifications/mark-read/", {"ids": [2**64]})
    assert too_big.status_code == 400


@pytest.mark.parametrize("query", ["page=0", "page=2", "page_size=x", "colour=red"])
def test_notification_pages_refuse_bad_numbers(alice, query):
    assert alice.get(f"/api/notifications/?{query}").status_code == 400


# --- garbage ----------------------------------------------------------------

GARBAGE_BODIES = [
    b"\x00\x01\x02",
    b"{",
    b'{"kind": {"kind": {"kind": []}}}',
    b'{"ids": [[[[]]]], "all": null, "failed_rows": {}}',
    b"null",
    b"1e999999",
    b'{"' + b"k" * 10_000 + b'": 1}',
    '{"kind": "demo.count", "label": "\U0001f4a5\u202e"}'.encode(),
]
GARBAGE_QUERIES = ["?page=%FF", "?status=,,,", "?since=%00", "?unread=%F0%9F", "?q=%25_%5C"]


@pytest.mark.parametrize(("method", "url"), ENDPOINTS)
def test_garbage_never_causes_a_server_error(user, other_user, alice, method, url):
    job = submit_demo(user, n=1, session_key="tab-1", entity_key="sheet:1")
    note(user, "unread")
    url = url.replace("/1/", f"/{job.pk}/")
    for body in GARBAGE_BODIES:
        response = alice.generic(method.upper(), url, data=body, content_type="application/json")
        assert response.status_code < 500, (body, response.content)
        assert response["Content-Type"] == "application/json" or response.status_code == 204
    for garbage in GARBAGE_QUERIES:
        response = getattr(alice, method)(url + garbage)
        assert response.status_code < 500, (garbage, response.content)
