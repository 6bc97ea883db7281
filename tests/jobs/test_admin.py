"""jobs/admin.py (and sheets/admin.py), the Django admin for jobs, sheets, row results
and notifications: who gets in, what the lists show and find, and bulk actions that
change exactly the eligible jobs."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs.engine.redact import MASK
from jobs.engine.services import job_submit
from jobs.models import Job, JobEvent, Notification
from sheets.models import RowResult
from sheets.services import sheet_job_submit
from tests.jobs.factories import fresh, status_of, submit_demo
from tests.sheets.factories import make_sheet, run_to_end

pytestmark = pytest.mark.django_db

S = Job.Status
JOBS = "/admin/jobs/job/"


@pytest.fixture
def admin_client(staff_user) -> Client:
    client = Client()
    client.force_login(staff_user)
    return client


def set_state(job: Job, status: str, **fields) -> Job:
    """Put a job in a state directly (test setup; the code under test uses services)."""
    now = timezone.now()
    if status in Job.TERMINAL:
        fields.setdefault("finished_at", now)
    if status != S.QUEUED:
        fields.setdefault("started_at", now)
    Job.objects.filter(pk=job.pk).update(status=status, **fields)
    return fresh(job)


def running_on_a_worker(job: Job) -> Job:
    return set_state(
        job,
        S.RUNNING,
        lease_owner="elsewhere:4242",
        lease_expires_at=timezone.now() + timedelta(minutes=5),
    )


def listed(client: Client, query: str = "", url: str = JOBS) -> set[int]:
    response = client.get(url + query)
    assert response.status_code == 200
    return {obj.pk for obj in response.context["cl"].result_list}


def act(client: Client, action: str, jobs: list[Job], url: str = JOBS, **extra) -> str:
    """Run a bulk action on `jobs`; return the message it reported."""
    data = {"action": action, "_selected_action": [job.pk for job in jobs], **extra}
    response = client.post(url, data, follow=True)
    assert response.status_code == 200
    reported = [str(m) for m in response.context["messages"]]
    assert len(reported) == 1, reported
    return reported[0]


def sheet_job_with_failed_rows(owner, failed_rows: list[int]) -> Job:
    """A finished clean job on a 5-row sheet whose given rows are marked failed."""
    sheet = make_sheet(
        owner, [["name", "email"]] + [[f"n{i}", f"n{i}@example.com"] for i in range(5)]
    )
    job = run_to_end(sheet_job_submit(sheet=sheet, owner=owner, processor="clean")[0])
    assert job.status == S.SUCCEEDED
    RowResult.objects.filter(job=job, row_number__in=failed_rows).update(
        failed=True, error="upstream said no"
    )
    Job.objects.filter(pk=job.pk).update(failed=len(failed_rows))
    return fresh(job)


# -- access ---------------------------------------------------------------------------


def test_non_staff_and_anonymous_users_get_no_admin_access(client, user):
    job = submit_demo(user, n=3)
    for path in (JOBS, f"{JOBS}{job.pk}/change/", "/admin/sheets/rowresult/", "/admin/"):
        response = client.get(path)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    client.force_login(user)
    for path in (JOBS, f"{JOBS}{job.pk}/change/", "/admin/jobs/notification/"):
        response = client.get(path)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    response = client.post(JOBS, {"action": "cancel_jobs", "_selected_action": [job.pk]})
    assert response.status_code == 302
    assert status_of(job) == S.QUEUED, "a non-staff user's action changed nothing"


def test_staff_without_job_permissions_are_refused_and_viewers_get_no_actions(
    django_user_model, user
):
    job = submit_demo(user, n=3)
    staff = django_user_model.objects.create_user("clerk", password="x", is_staff=True)
    client = Client()
    client.force_login(staff)
    assert client.get(JOBS).status_code == 403

    staff.user_permissions.add(Permission.objects.get(codename="view_job"))
    client.force_login(django_user_model.objects.get(pk=staff.pk))
    response = client.get(JOBS)
    assert response.status_code == 200
    assert 'name="action"' not in response.content.decode(), "viewers see no bulk actions"
    client.post(JOBS, {"action": "cancel_jobs", "_selected_action": [job.pk]})
    assert status_of(job) == S.QUEUED
    page = client.get(f"{JOBS}{job.pk}/change/")
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()


def test_jobs_cannot_be_added_or_edited_by_hand(admin_client, user):
    job = submit_demo(user, n=3)
    assert admin_client.get(f"{JOBS}add/").status_code == 403
    page = admin_client.get(f"{JOBS}{job.pk}/change/").content.decode()
    assert 'name="_save"' not in page and "deletelink" not in page
    response = admin_client.post(f"{JOBS}{job.pk}/change/", {"status": "succeeded"})
    assert response.status_code == 403 and status_of(job) == S.QUEUED


def test_django_q_admin_stays_available(admin_client):
    for path in ("schedule", "success", "failure", "ormq"):
        assert admin_client.get(f"/admin/django_q/{path}/").status_code == 200


# -- the list -------------------------------------------------------------------------


def test_list_shows_status_progress_owner_without_a_query_per_job(admin_client, user):
    job = submit_demo(user, n=10, priority="high")
    set_state(job, S.RUNNING, processed=4, total=10, failed=1)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            page = admin_client.get(JOBS)
        assert page.status_code == 200
        return len(captured)

    few = queries()
    for _ in range(15):
        submit_demo(user, n=2)
    assert queries() == few

    page = admin_client.get(JOBS).content.decode()
    assert 'class="job-status" data-status="running"' in page
    assert "4 / 10 (40%), 1 failed" in page
    assert ">high<" in page and user.username in page and "demo.count" in page
    assert 'href="/metrics/"' in page and 'href="/admin/jobs/failedjob/"' in page


def test_list_filters_return_the_right_jobs(admin_client, user, other_user):
    mine = submit_demo(user, n=1)
    failed = set_state(submit_demo(user, n=1), S.FAILED, error="broken")
    theirs = submit_demo(other_user, kind="demo.serial", n=1, priority="low")
    urgent = submit_demo(other_user, n=1, priority="high")
    old = submit_demo(user, n=1)
    Job.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))

    assert listed(admin_client, "?status__exact=failed") == {failed.pk}
    assert listed(admin_client, "?kind=demo.serial") == {theirs.pk}
    assert listed(admin_client, f"?owner__id__exact={other_user.pk}") == {theirs.pk, urgent.pk}
    assert listed(admin_client, "?priority=high") == {urgent.pk}
    assert listed(admin_client, "?priority=low") == {theirs.pk}
    assert listed(admin_client, "?priority=normal") == {mine.pk, failed.pk, old.pk}
    since = timezone.now() - timedelta(days=7)
    recent = listed(admin_client, "?" + urlencode({"created_at__gte": since}))
    assert recent == {mine.pk, failed.pk, theirs.pk, urgent.pk}
    assert listed(admin_client, "?" + urlencode({"created_at__lt": since})) == {old.pk}
    assert listed(admin_client, f"?status__exact=queued&owner__id__exact={user.pk}") == {
        mine.pk,
        old.pk,
    }


def test_search_finds_jobs_by_id_keys_owner_and_error(admin_client, user, other_user):
    keyed = submit_demo(user, n=1, entity_key="sheet:77", session_key="tab-abc")
    failed = set_state(submit_demo(other_user, n=1), S.FAILED, error="Upstream timeout at row 9")
    plain = submit_demo(user, n=1)

    assert listed(admin_client, f"?q={plain.pk}") == {plain.pk}
    assert listed(admin_client, f"?q=%23{failed.pk}") == {failed.pk}
    assert listed(admin_client, "?q=sheet:77") == {keyed.pk}
    assert listed(admin_client, "?q=tab-abc") == {keyed.pk}
    assert listed(admin_client, f"?q={other_user.username}") == {failed.pk}
    assert listed(admin_client, "?q=upstream+timeout") == {failed.pk}
    assert listed(admin_client, "?q=nothing-like-this") == set()


def test_failed_jobs_list_shows_only_failures_with_their_error(admin_client, user):
    failed = set_state(submit_demo(user, n=1), S.FAILED, error="disk full\nmore detail")
    set_state(submit_demo(user, n=1), S.SUCCEEDED)
    submit_demo(user, n=1)
    assert listed(admin_client, url="/admin/jobs/failedjob/") == {failed.pk}
    page = admin_client.get("/admin/jobs/failedjob/").content.decode()
    assert "disk full" in page and "more detail" not in page


# -- the detail page --------------------------------------------------------------------


def test_detail_shows_params_result_error_timeline_and_links_with_secrets_masked(
    admin_client, user
):
    sheet = make_sheet(user, [["name", "email"], ["a", "a@example.com"], ["b", "b@example.com"]])
    job = run_to_end(sheet_job_submit(sheet=sheet, owner=user, processor="clean")[0])
    Job.objects.filter(pk=job.pk).update(
        status=S.FAILED,
        error="Processor crashed",
        traceback='Traceback (most recent call last):\n  File "x.py", line 1\nValueError: <bad>',
        params={**job.params, "options": {"api_key": "sk-very-secret", "max_tokens": 99}},
    )
    page = admin_client.get(f"{JOBS}{job.pk}/change/").content.decode()

    assert "sk-very-secret" not in page and MASK in page
    assert "&quot;max_tokens&quot;: 99" in page, "params are shown as readable JSON"
    assert "&quot;processed&quot;: 2" in page, "the result too"
    assert "Processor crashed" in page and "ValueError: &lt;bad&gt;" in page
    assert "Queued" in page and "Succeeded" in page, "the timeline is inline"
    assert f'href="/jobs/{job.pk}/"' in page, "link to the live page"
    assert f'href="/admin/sheets/sheet/{sheet.pk}/change/"' in page
    assert f'href="/sheets/{sheet.pk}/?job={job.pk}"' in page
    assert f'href="/admin/sheets/rowresult/?job={job.pk}"' in page


def test_timeline_shows_the_newest_events_only(admin_client, user, monkeypatch):
    monkeypatch.setattr("jobs.admin.TIMELINE_LIMIT", 5)
    job = submit_demo(user, n=1)
    JobEvent.objects.bulk_create(
        JobEvent(job=job, kind=JobEvent.Kind.LOG, message=f"step {i:02d}") for i in range(20)
    )
    page = admin_client.get(f"{JOBS}{job.pk}/change/").content.decode()
    assert "step 19" in page and "step 15" in page and "step 14" not in page


# -- bulk actions -----------------------------------------------------------------------


def test_cancel_changes_active_jobs_and_skips_finished_ones(admin_client, user):
    queued = submit_demo(user, n=5)
    running = running_on_a_worker(submit_demo(user, n=5))
    done = set_state(submit_demo(user, n=5), S.SUCCEEDED)

    message = act(admin_client, "cancel_jobs", [queued, running, done])

    assert message == (
        f"1 job cancelled, 1 job asked to stop at the next checkpoint; 1 skipped: "
        f"Job #{done.pk} is succeeded; there is nothing to cancel."
    )
    assert status_of(queued) == S.CANCELLED
    assert fresh(running).requested == Job.Request.CANCEL and status_of(running) == S.RUNNING
    assert status_of(done) == S.SUCCEEDED
    assert fresh(queued).events.filter(message="Cancelled by operator").exists()


def test_pause_and_resume_change_exactly_the_eligible_jobs(admin_client, user):
    queued = submit_demo(user, n=5)
    running = running_on_a_worker(submit_demo(user, n=5))
    failed = set_state(submit_demo(user, n=5), S.FAILED)

    message = act(admin_client, "pause_jobs", [queued, running, failed])
    assert message.startswith(
        "1 job paused, 1 job asked to pause at the next checkpoint; 1 skipped: "
    )
    assert f"Job #{failed.pk} is failed; only active jobs can be paused." in message
    assert status_of(queued) == S.PAUSED and fresh(running).requested == Job.Request.PAUSE

    message = act(admin_client, "resume_jobs", [queued, running, failed])
    assert message == (
        f"2 jobs resumed; 1 skipped: Job #{failed.pk} is failed; only paused jobs can be resumed."
    )
    assert status_of(queued) == S.QUEUED and fresh(running).requested == ""
    assert status_of(failed) == S.FAILED


def test_retry_queues_finished_jobs_again_and_skips_active_ones(admin_client, user):
    failed = set_state(submit_demo(user, n=5), S.FAILED, error="boom")
    cancelled = set_state(submit_demo(user, n=5), S.CANCELLED)
    active = submit_demo(user, n=5)

    message = act(admin_client, "retry_jobs", [failed, cancelled, active])

    assert message == (
        f"2 jobs queued again; 1 skipped: Job #{active.pk} is queued; "
        f"only finished jobs can be retried."
    )
    assert status_of(failed) == S.QUEUED and fresh(failed).error == ""
    assert status_of(cancelled) == S.QUEUED


def test_retry_failed_rows_only_for_jobs_with_failed_rows_of_a_kind_that_can(admin_client, user):
    with_failures = sheet_job_with_failed_rows(user, [2, 4])
    without = sheet_job_with_failed_rows(user, [])
    demo = set_state(submit_demo(user, n=3), S.FAILED, failed=1)

    message = act(admin_client, "retry_failed_rows", [with_failures, without, demo])

    assert message.startswith(
        "1 job queued to retry failed rows (and any rows never processed); 2 skipped: "
    )
    assert f"Job #{without.pk} has no failed rows to retry." in message
    assert "Jobs of kind demo.count cannot retry only failed rows." in message
    job = fresh(with_failures)
    assert job.status == S.QUEUED and job.cursor["mode"] == "missing"
    assert job.processed == 3 and job.failed == 0
    assert status_of(without) == S.SUCCEEDED and status_of(demo) == S.FAILED


def test_delete_asks_first_then_deletes_finished_jobs_with_their_data(admin_client, user):
    finished = sheet_job_with_failed_rows(user, [1])
    assert RowResult.objects.filter(job=finished).count() == 5
    Notification.objects.create(user=user, job=finished, message="done")
    active = submit_demo(user, n=5)

    confirm = admin_client.post(
        JOBS, {"action": "delete_jobs", "_selected_action": [finished.pk, active.pk]}
    )
    assert confirm.status_code == 200
    page = confirm.content.decode()
    assert "Delete 1 finished job" in page and "still active and will be skipped" in page
    assert Job.objects.filter(pk=finished.pk).exists(), "nothing deleted before confirming"

    message = act(admin_client, "delete_jobs", [finished, active], post="yes")

    assert message == (
        f"1 job deleted; 1 skipped: Job #{active.pk} is queued; cancel it before deleting."
    )
    assert not Job.objects.filter(pk=finished.pk).exists()
    assert not RowResult.objects.filter(job_id=finished.pk).exists()
    assert not JobEvent.objects.filter(job_id=finished.pk).exists()
    assert not Notification.objects.filter(job_id=finished.pk).exists()
    assert status_of(active) == S.QUEUED


def test_django_delete_selected_is_replaced(admin_client, user):
    job = submit_demo(user, n=1)
    response = admin_client.post(
        JOBS, {"action": "delete_selected", "_selected_action": [job.pk], "post": "yes"}
    )
    assert response.status_code in (200, 302)
    assert Job.objects.filter(pk=job.pk).exists(), "an active job is never deleted by the ORM"
    assert admin_client.get(f"{JOBS}{job.pk}/delete/").status_code == 403


def test_actions_on_the_failed_jobs_list(admin_client, user):
    failed = set_state(submit_demo(user, n=5), S.FAILED, error="boom")
    message = act(admin_client, "retry_jobs", [failed], url="/admin/jobs/failedjob/")
    assert message == "1 job queued again"
    assert status_of(failed) == S.QUEUED


def test_a_job_of_an_unregistered_kind_is_skipped_not_a_crash(admin_client, user):
    ghost = job_submit(kind="demo.count", owner=user)[0]
    Job.objects.filter(pk=ghost.pk).update(kind="gone.kind", status=S.FAILED)
    message = act(admin_client, "retry_jobs", [ghost])
    assert message.startswith("0 jobs queued again; 1 skipped: ")
    assert "Unknown job kind 'gone.kind'" in message


# -- sheets, row results, notifications -------------------------------------------------


def test_row_results_list_by_job_and_errors_and_search_error_text(admin_client, user):
    job = sheet_job_with_failed_rows(user, [2, 4])
    other = sheet_job_with_failed_rows(user, [1])
    results = "/admin/sheets/rowresult/"

    def rows(query: str) -> set[tuple[int, int]]:
        response = admin_client.get(results + query)
        assert response.status_code == 200
        return {(r.job_id, r.row_number) for r in response.context["cl"].result_list}

    assert rows(f"?job={job.pk}") == {(job.pk, n) for n in range(1, 6)}
    assert rows(f"?job={job.pk}&failed__exact=1") == {(job.pk, 2), (job.pk, 4)}
    assert rows("?failed__exact=1") == {(job.pk, 2), (job.pk, 4), (other.pk, 1)}
    assert rows(f"?job={other.pk}&q=upstream") == {(other.pk, 1)}
    assert admin_client.get(f"{results}add/").status_code == 403

    result = RowResult.objects.get(job=job, row_number=2)
    detail = admin_client.get(f"{results}{result.pk}/change/").content.decode()
    assert "upstream said no" in detail and "n1@example.com" in detail, "error and input row"


def test_sheets_admin_lists_sheets_with_links_to_jobs_and_results(admin_client, user):
    job = sheet_job_with_failed_rows(user, [])
    sheet_id = job.params["sheet_id"]
    page = admin_client.get("/admin/sheets/sheet/").content.decode()
    assert "data.csv" in page
    detail = admin_client.get(f"/admin/sheets/sheet/{sheet_id}/change/").content.decode()
    assert f"/admin/jobs/job/?entity_key=sheet:{sheet_id}" in detail
    assert listed(admin_client, f"?entity_key=sheet:{sheet_id}") == {job.pk}
    assert admin_client.get("/admin/sheets/sheet/add/").status_code == 403


def test_notifications_admin_filters_unread_and_marks_read(admin_client, user):
    job = submit_demo(user, n=1)
    unread = Notification.objects.create(user=user, job=job, message="Job finished")
    Notification.objects.create(user=user, message="old news", read_at=timezone.now())
    url = "/admin/jobs/notification/"
    assert listed(admin_client, "?read=no", url=url) == {unread.pk}
    message = act(admin_client, "mark_read", [unread], url=url)
    assert message == "1 notification marked read."
    assert Notification.objects.get(pk=unread.pk).read_at is not None
