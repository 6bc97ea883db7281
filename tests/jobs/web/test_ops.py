"""The staff ops pages (jobs/web/ops_views.py): kinds of work with pause, resume, cap and
force stop; waiting work with why and when, and run now / retry now; the paused-kind
banner on every page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from jobs.engine import controls, dispatch
from jobs.engine.services import job_submit
from jobs.models import Job, KindControl
from tests.jobs.factories import fresh, messages, submit_demo

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_cached_controls():
    controls.forget()
    yield
    controls.forget()


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def said(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_only_staff_see_the_ops_pages(user):
    for url in ("/ops/", "/ops/waiting/"):
        response = client_for(user).get(url)
        assert response.status_code == 302 and "/login/" in response["Location"]
    response = client_for(user).post("/ops/kinds/llm/pause/")
    assert response.status_code == 302 and not KindControl.objects.exists()


def test_pause_shows_everywhere_and_resume_lifts_it(staff_user, user):
    ops = client_for(staff_user)
    response = ops.post("/ops/kinds/llm/pause/", {"reason": "provider degraded"}, follow=True)
    assert said(response) == ["llm paused on every cluster."]
    row = response.context["kinds"]
    assert next(kind for kind in row if kind["name"] == "llm")["paused"] is True
    page = response.content.decode()
    assert "llm paused by operator since" in page and "provider degraded" in page

    controls.forget()
    jobs_page = client_for(user).get("/jobs/").content.decode()
    assert "llm paused by operator since" in jobs_page and "its jobs wait" in jobs_page

    response = ops.post("/ops/kinds/llm/resume/", follow=True)
    assert said(response) == ["llm resumed."]
    controls.forget()
    assert "llm paused" not in client_for(user).get("/jobs/").content.decode()


def test_caps_are_set_and_refused_on_the_page(staff_user):
    ops = client_for(staff_user)
    response = ops.post("/ops/kinds/demo.count/cap/", {"cap": "3"}, follow=True)
    assert said(response) == ["demo.count: cap set to 3."]
    response = ops.post("/ops/kinds/demo.count/cap/", {"cap": "0"}, follow=True)
    assert said(response) == ["cap: a whole number from 1 to 10000, or empty"]
    assert KindControl.objects.get(name="demo.count").cap == 3
    response = ops.post("/ops/kinds/nope/pause/", follow=True)
    assert said(response)[0].startswith("name: unknown kind, queue or processor 'nope'")
    assert ops.post("/ops/kinds/llm/explode/").status_code == 400


def test_force_stop_from_the_ops_page_says_who_and_why(staff_user, user):
    job = submit_demo(user, n=50)
    dispatch.claim_dispatched(job.pk, "worker-1")
    ops = client_for(staff_user)
    assert f"running-{job.pk}" in ops.get("/ops/").content.decode()
    response = ops.post(
        f"/ops/jobs/{job.pk}/force-stop/", {"reason": "stuck on a call"}, follow=True
    )
    assert said(response) == [f"Job #{job.pk} force-stopped."]
    assert fresh(job).requested == Job.Request.FORCE
    assert "Force stop requested by operator: stuck on a call" in messages(job)


def test_waiting_work_says_why_and_when_and_runs_now(staff_user, user):
    later = timezone.now() + timedelta(hours=2)
    scheduled, _ = job_submit(kind="demo.count", params={"n": 1}, owner=user, run_after=later)
    upstream = submit_demo(user, n=1)
    downstream, _ = job_submit(kind="demo.count", params={"n": 1}, owner=user, after=[upstream.pk])
    plain = submit_demo(user, n=1)
    ops = client_for(staff_user)

    response = ops.get("/ops/waiting/")
    rows = {job.pk: job for job in response.context["page"]}
    assert set(rows) == {scheduled.pk, downstream.pk}
    assert (rows[scheduled.pk].waiting_text, rows[scheduled.pk].run_now) == (
        "scheduled for later",
        True,
    )
    assert rows[downstream.pk].waiting_text == "waits for the jobs it runs after"

    controls.pause("demo.count", staff_user, "maintenance")
    controls.forget()
    rows = {job.pk: job for job in ops.get("/ops/waiting/").context["page"]}
    assert plain.pk in rows and rows[plain.pk].waiting_reason == "kind_paused"
    controls.resume("demo.count", staff_user)

    response = ops.post(f"/ops/waiting/{scheduled.pk}/run-now/", follow=True)
    assert said(response) == [f"Job #{scheduled.pk} due now."]
    assert fresh(scheduled).run_after is None
