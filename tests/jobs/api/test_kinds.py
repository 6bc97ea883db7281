"""`/api/kinds/` (jobs/api/kinds.py): operators pause, resume and cap kinds of work;
everyone signed in may read them; job JSON says why a job waits and when it will run."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.engine import controls
from jobs.engine.services import job_submit
from jobs.models import KindControl
from tests.jobs.factories import submit_demo

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_cached_controls():
    controls.forget()
    yield
    controls.forget()


def test_staff_pause_a_processor_and_everyone_reads_why(staff, alice):
    response = staff.post(
        "/api/kinds/llm/pause/", {"reason": "provider degraded"}, content_type="application/json"
    )
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["paused"] is True and data["paused_by"] == "operator"
    assert data["notice"].startswith("llm paused by operator since ")
    listed = {row["name"]: row for row in alice.get("/api/kinds/").json()["results"]}
    assert listed["llm"]["reason"] == "provider degraded"
    assert listed["sheets.process"]["paused"] is False

    assert staff.post("/api/kinds/llm/resume/").json()["paused"] is False


def test_staff_set_and_clear_a_cap(staff):
    response = staff.patch("/api/kinds/demo.count/", {"cap": 2}, content_type="application/json")
    assert response.status_code == 200 and response.json()["cap"] == 2
    assert controls.caps()["demo.count"] == 2
    response = staff.patch("/api/kinds/demo.count/", {"cap": None}, content_type="application/json")
    assert response.json()["cap"] is None


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("post", "/api/kinds/llm/pause/", {}),
        ("post", "/api/kinds/llm/resume/", {}),
        ("patch", "/api/kinds/llm/", {"cap": 1}),
    ],
)
def test_non_staff_may_not_change_kinds(alice, method, url, body):
    response = getattr(alice, method)(url, body, content_type="application/json")
    assert response.status_code == 403
    assert response.json()["error"] == "Only staff may pause, resume or cap kinds of work."
    assert not KindControl.objects.exists()


@pytest.mark.parametrize(
    ("method", "url", "body", "status", "field"),
    [
        ("patch", "/api/kinds/llm/", {"cap": 0}, 400, "cap"),
        ("patch", "/api/kinds/llm/", {"cap": "many"}, 400, "cap"),
        ("patch", "/api/kinds/llm/", {"cap": 10**6}, 400, "cap"),
        ("patch", "/api/kinds/llm/", {}, 400, "cap"),
        ("patch", "/api/kinds/llm/", {"cap": 1, "paused": True}, 400, "paused"),
        ("post", "/api/kinds/llm/pause/", {"reason": 5}, 400, "reason"),
        ("post", "/api/kinds/llm/pause/", {"reason": "x" * 501}, 400, "reason"),
        ("post", "/api/kinds/nope/pause/", {}, 404, None),
        ("patch", "/api/kinds/nope/", {"cap": 1}, 404, None),
    ],
)
def test_bad_input_is_a_clear_4xx(staff, method, url, body, status, field):
    response = getattr(staff, method)(url, body, content_type="application/json")
    assert response.status_code == status, response.content
    data = response.json()
    assert data["error"]
    if field:
        assert field in data["fields"]
    assert not KindControl.objects.exists()


def test_job_json_says_why_a_job_waits_and_when_it_runs(alice, user, staff_user):
    later = timezone.now() + timedelta(hours=1)
    scheduled, _ = job_submit(kind="demo.count", params={"n": 1}, owner=user, run_after=later)
    queued = submit_demo(user, n=1)
    data = alice.get(f"/api/jobs/{scheduled.pk}/").json()
    assert (data["waiting_reason"], data["next_run_at"]) == ("scheduled", later.isoformat())
    assert alice.get(f"/api/jobs/{queued.pk}/").json()["waiting_reason"] == ""

    controls.pause("demo.count", staff_user, "maintenance")
    controls.forget()
    data = alice.get(f"/api/jobs/{queued.pk}/").json()
    assert (data["waiting_reason"], data["next_run_at"]) == ("kind_paused", None)
