"""What pages say about a job stays true (issue #12): the home page's button opens the
upload form, a sheet page's heading and notice follow its job live, the sheets list's
latest job updates live, a job watched to its end is not "completed while you were
away", the workers chart spans its window, a page says when no worker is left to run
its job, and a lost socket says it is reconnecting."""

from __future__ import annotations

import pytest

from jobs.models import Job, Notification
from sheets.services import sheet_job_submit
from tests.browser.conftest import wait_for_js
from tests.jobs.factories import submit_demo
from tests.sheets.factories import make_sheet
from tests.support.processes import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

S = Job.Status


def slow_sheet_job(user, fake_openai, rows: int = 40, latency: float = 0.05, sheet=None):
    fake_openai.latency = latency
    sheet = sheet or make_sheet(user, [["name"]] + [[f"Apple {i}"] for i in range(1, rows + 1)])
    job, _ = sheet_job_submit(
        sheet=sheet,
        owner=user,
        processor="llm",
        options={"base_url": fake_openai.base_url, "prompt": "Hi {name}", "concurrency": 1},
        columns=["name"],
    )
    return sheet, job


def test_the_home_page_button_opens_the_upload_form(open_page, user):
    page = open_page(user, "/")
    with page.expect_navigation() as navigation:
        page.get_by_role("link", name="New sheet job").click()
    assert navigation.value.status == 200
    assert page.locator("#upload input[name=file]").is_visible()


@pytest.mark.cluster
def test_a_sheet_pages_heading_and_notice_follow_its_cancelled_job(
    fake_openai, cluster, open_page, user
):
    sheet, job = slow_sheet_job(user, fake_openai, rows=400)
    page = open_page(user, sheet.get_absolute_url())
    page.locator("#current-job-live #running-notice", has_text="Still running").wait_for()
    assert page.locator("#current-job-live h2").inner_text() == "Current job"

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#current-job-live button", has_text="Cancel").click()

    page.locator("#current-job-live .status", has_text="Cancelled").wait_for()
    page.locator("#current-job-live h2", has_text="Last job").wait_for()
    assert page.locator("#running-notice").count() == 0
    assert page.get_by_text("Still running").count() == 0
    assert page.get_by_role("heading", name="Current job").count() == 0


@pytest.mark.cluster
def test_the_sheets_list_shows_the_latest_job_live(fake_openai, cluster, open_page, user):
    sheet = make_sheet(user, [["name"], ["Apple"], ["Pear"]], name="fruit.csv")
    page = open_page(user, "/sheets/")
    row = page.locator("table.sheets tr", has_text="fruit.csv")
    assert row.locator(".status").count() == 0
    page.evaluate("window.sameDocument = true")

    sheet_job_submit(
        sheet=sheet,
        owner=user,
        processor="llm",
        options={"base_url": fake_openai.base_url, "prompt": "Hi {name}"},
        columns=["name"],
    )
    row.locator(".status", has_text="Succeeded").wait_for()
    assert page.evaluate("window.sameDocument") is True, "the page was reloaded"


@pytest.mark.cluster
def test_a_job_watched_to_its_end_is_not_completed_while_away(
    fake_openai, cluster, open_page, user
):
    sheet = make_sheet(user, [["name"]] + [[f"Apple {i}"] for i in range(1, 21)])
    page = open_page(user, sheet.get_absolute_url())  # open and live before the job starts
    sheet, job = slow_sheet_job(user, fake_openai, latency=0.02, sheet=sheet)
    page.locator("#current-job-live .status", has_text="Succeeded").wait_for(timeout=30_000)
    page.locator("#toasts .toast").first.wait_for()
    wait_for(
        lambda: not Notification.objects.filter(job=job, read_at__isnull=True).exists(),
        timeout=10,
        what="the notification of the watched job to be read",
    )

    page.reload()
    page.locator("#current-job-live .status", has_text="Succeeded").wait_for()
    assert page.get_by_text("while you were away").count() == 0


def test_the_workers_chart_spans_the_last_hour(open_page, staff_user):
    page = open_page(staff_user, "/metrics/?every=1")
    wait_for_js(page, "window.conveyorMetrics && window.conveyorMetrics.updates >= 1")
    wait_for_js(page, "window.conveyorMetrics.charts.workers")
    span = page.evaluate(
        "(() => { const x = window.conveyorMetrics.charts.workers.scales.x;"
        " return [x.min, x.max]; })()"
    )
    times = page.evaluate("window.conveyorMetrics.data.times")
    assert times[0] - 60 <= span[0] and span[1] <= times[-1] + 120, (span, times[0], times[-1])


def test_a_lost_socket_shows_reconnecting_after_two_seconds(open_page, web, user):
    page = open_page(user, "/jobs/")
    assert page.locator("#live-lost").is_hidden()
    web.stop()  # may itself take seconds: the page may be past "closed" already
    page.locator("#live-lost", has_text="Reconnecting").wait_for(state="visible", timeout=10_000)
    assert page.evaluate("document.body.dataset.live") == "reconnecting"


@pytest.mark.cluster
def test_a_banner_appears_when_the_workers_stop_under_a_running_job(cluster, open_page, user):
    job = submit_demo(user, n=5000, delay=0.02, label="Slow count")
    page = open_page(user, f"/jobs/{job.pk}/")
    page.locator(f"#job-{job.pk}-live .status", has_text="Running").wait_for()
    assert page.locator("#workers-down").is_hidden()

    cluster.kill()
    banner = page.locator("#workers-down", has_text="No worker is running")
    banner.wait_for(state="visible", timeout=30_000)
    assert Job.objects.get(pk=job.pk).status == S.RUNNING, "the job is stuck, not finished"
