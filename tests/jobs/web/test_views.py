"""jobs/web/views.py, the job pages: detail, controls, dashboard filters and bulk
actions, notifications, escaping and permissions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from jobs.engine.services import job_pause
from jobs.models import Job, Notification
from jobs.web.live import job_page_fragment
from tests.jobs.factories import fresh, status_of, submit_demo
from tests.sheets.factories import run_to_end

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def alice(client, user) -> Client:
    client.force_login(user)
    return client


def test_a_job_page_shows_the_live_panel_and_timeline(alice, user):
    job = submit_demo(user, n=3)
    html = alice.get(f"/jobs/{job.pk}/").content.decode()
    assert f'id="job-{job.pk}-live"' in html and f'id="job-{job.pk}-timeline"' in html
    assert f'ws-connect="/ws/live/?job={job.pk}"' in html
    assert "Queued" in html and "Pause" in html and "Cancel" in html


def test_a_paused_job_says_who_paused_it_in_its_panel_and_its_pushed_panel(alice, user):
    job = job_pause(job=submit_demo(user, n=3), by=user)
    html = alice.get(f"/jobs/{job.pk}/").content.decode()
    assert '<p class="paused-why">Paused by alice</p>' in html
    assert '<p class="paused-why">Paused by alice</p>' in job_page_fragment(fresh(job))
    assert "resume-form" not in html, "a demo job's resume changes nothing: no form"
    alice.post(f"/jobs/{job.pk}/resume/")
    assert "paused-banner" not in alice.get(f"/jobs/{job.pk}/").content.decode()


def test_other_users_jobs_are_not_found_but_staff_see_them(client, user, other_user, staff_user):
    job = submit_demo(user, n=3)
    client.force_login(other_user)
    assert client.get(f"/jobs/{job.pk}/").status_code == 404
    assert client.post(f"/jobs/{job.pk}/cancel/").status_code == 404
    assert status_of(job) == Job.Status.QUEUED
    client.force_login(staff_user)
    assert client.get(f"/jobs/{job.pk}/").status_code == 200


def test_controls_change_the_job_and_answer_htmx_with_the_panel(alice, user):
    job = submit_demo(user, n=3)
    response = alice.post(f"/jobs/{job.pk}/pause/", **HX)
    assert response.status_code == 200
    assert (
        'data-status="paused"' in response.content.decode()
        and "Resume" in response.content.decode()
    )
    assert status_of(job) == Job.Status.PAUSED
    response = alice.post(f"/jobs/{job.pk}/resume/")
    assert response.status_code == 302 and status_of(job) == Job.Status.QUEUED


def test_actions_that_do_not_apply_are_409_with_the_reason(alice, user):
    job = run_to_end(submit_demo(user, n=1))
    response = alice.post(f"/jobs/{job.pk}/pause/", **HX)
    assert response.status_code == 409
    assert "only active jobs can be paused" in response.content.decode()
    assert alice.post(f"/jobs/{job.pk}/explode/").status_code == 400
    assert alice.get(f"/jobs/{job.pk}/cancel/").status_code == 405


def test_posts_need_the_csrf_token(user):
    job = submit_demo(user, n=1)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post(f"/jobs/{job.pk}/cancel/").status_code == 403
    assert status_of(job) == Job.Status.QUEUED
    page = client.get(f"/jobs/{job.pk}/")
    token = page.context["csrf_token"]
    response = client.post(f"/jobs/{job.pk}/cancel/", HTTP_X_CSRFTOKEN=str(token), **HX)
    assert response.status_code == 200 and status_of(job) == Job.Status.CANCELLED


def test_delete_from_the_page(alice, user):
    job = run_to_end(submit_demo(user, n=1))
    response = alice.post(f"/jobs/{job.pk}/delete/", **HX)
    assert response.status_code == 200 and response["HX-Redirect"] == "/jobs/"
    assert not Job.objects.filter(pk=job.pk).exists()


def test_dashboard_filters_by_status_kind_date_and_text(alice, user, other_user):
    queued = submit_demo(user, n=1)
    done = run_to_end(submit_demo(user, n=1))
    serial = submit_demo(user, kind="demo.serial", n=1)
    old = submit_demo(user, n=1)
    Job.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(days=10), label="quarterly report"
    )
    submit_demo(other_user, n=1)

    def ids(query: str) -> set[int]:
        page = alice.get(f"/jobs/?{query}").context["page"]
        return {job.pk for job in page.object_list}

    assert ids("") == {queued.pk, done.pk, serial.pk, old.pk}, "only my jobs"
    assert ids("status=completed") == {done.pk}
    assert ids("status=queued") == {queued.pk, serial.pk, old.pk}
    assert ids("kind=demo.serial") == {serial.pk}
    yesterday = (timezone.now() - timedelta(days=1)).date().isoformat()
    assert ids(f"from={yesterday}") == {queued.pk, done.pk, serial.pk}
    assert ids(f"to={yesterday}") == {old.pk}
    assert ids("q=quarterly") == {old.pk}
    assert ids(f"q=%23{done.pk}") == {done.pk}
    assert ids("from=not-a-date&status=bogus") == {queued.pk, done.pk, serial.pk, old.pk}


def test_dashboard_table_fragment_for_htmx_and_pagination(alice, user):
    for _ in range(30):
        submit_demo(user, n=1)
    fragment = alice.get("/jobs/?page=2", **HX).content.decode()
    assert fragment.lstrip().startswith('<div id="job-table"')
    assert fragment.count('class="job-row"') == 5 and "Page 2 of 2" in fragment


def test_staff_can_switch_to_all_users(client, user, other_user, staff_user):
    mine = submit_demo(user, n=1)
    theirs = submit_demo(other_user, n=1)
    client.force_login(staff_user)
    page = client.get("/jobs/?all=1")
    assert {j.pk for j in page.context["page"].object_list} == {mine.pk, theirs.pk}
    assert 'ws-connect="/ws/live/?rows=all"' in page.content.decode()
    client.force_login(user)
    assert {j.pk for j in client.get("/jobs/?all=1").context["page"].object_list} == {mine.pk}


def test_bulk_actions_change_eligible_jobs_and_report_skips(alice, user, other_user):
    queued = [submit_demo(user, n=1) for _ in range(2)]
    finished = run_to_end(submit_demo(user, n=1))
    theirs = submit_demo(other_user, n=1)
    ids = [j.pk for j in [*queued, finished, theirs]]
    response = alice.post("/jobs/bulk/", {"action": "cancel", "ids": ids}, follow=True)
    texts = [str(m) for m in response.context["messages"]]
    assert "2 jobs cancelled." in texts
    assert any(t.startswith("1 skipped:") and "nothing to cancel" in t for t in texts)
    assert {status_of(j) for j in queued} == {Job.Status.CANCELLED}
    assert status_of(theirs) == Job.Status.QUEUED, "other users' jobs are untouched"
    response = alice.post("/jobs/bulk/", {"action": "launch", "ids": ids}, follow=True)
    assert "Choose an action" in str(list(response.context["messages"])[0])


def test_notifications_page_and_the_away_notice(alice, user):
    job = run_to_end(submit_demo(user, n=1))
    html = alice.get("/jobs/notifications/").content.decode()
    assert "finished" in html and "unread" in html
    first = alice.get(f"/jobs/{job.pk}/").content.decode()
    assert "Completed while you were away." in first
    assert Notification.objects.get().read_at is not None
    assert "while you were away" not in alice.get(f"/jobs/{job.pk}/").content.decode()
    run_to_end(submit_demo(user, n=1))
    alice.post("/jobs/notifications/")
    assert not Notification.objects.filter(read_at__isnull=True).exists()


def test_user_text_is_escaped_and_secrets_masked(alice, user):
    job = submit_demo(user, n=1)
    Job.objects.filter(pk=job.pk).update(
        label="<script>alert(1)</script>", params={"n": 1, "options": {"api_key": "sk-very-secret"}}
    )
    html = alice.get(f"/jobs/{job.pk}/").content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "sk-very-secret" not in html and "••••" in html


def test_nav_badge_counts_my_running_jobs(alice, user):
    job = submit_demo(user, n=1)
    Job.objects.filter(pk=job.pk).update(status=Job.Status.RUNNING)
    html = alice.get("/").content.decode()
    assert 'id="nav-running-badge" class="badge"' in html and ">1</span>" in html
