"""Watching jobs live in a real browser: the progress bar, leaving and coming back,
toasts on other pages, cancelling, bulk actions, and a web server restart."""

from __future__ import annotations

import pytest

from jobs.models import Job, Notification
from sheets.services import sheet_job_submit
from tests.browser.conftest import wait_for_js, wait_until_live
from tests.daphne import Daphne
from tests.jobs.factories import submit_demo
from tests.sheets.factories import make_sheet

pytestmark = [pytest.mark.browser, pytest.mark.cluster, pytest.mark.django_db(transaction=True)]

S = Job.Status
LIVE = "[data-job].live-job"

# Records every value the progress bar shows, however it gets replaced.
RECORD_BAR = """() => {
  window.barValues = [];
  const read = () => {
    const bar = document.querySelector('.live-job progress');
    if (!bar) return;
    const value = Number(bar.getAttribute('value'));
    if (window.barValues[window.barValues.length - 1] !== value) window.barValues.push(value);
  };
  read();
  new MutationObserver(read).observe(document.body, {subtree: true, childList: true, attributes: true});
}"""


def slow_count(user, n: int = 200, delay: float = 0.03, **params) -> Job:
    return submit_demo(user, n=n, delay=delay, label="Slow count", **params)


def wait_for_progress(page) -> None:
    """The live bar shows some progress."""
    wait_for_js(
        page,
        "Number(document.querySelector('.live-job progress').getAttribute('value')) > 0",
    )


def test_the_bar_moves_to_100_percent_without_a_reload(cluster, open_page, user):
    job = slow_count(user, n=120, delay=0.03)
    page = open_page(user, f"/jobs/{job.pk}/")
    page.evaluate("window.sameDocument = true")
    page.evaluate(RECORD_BAR)

    wait_for_js(page, "window.barValues.includes(100)")
    page.locator(f"{LIVE} .status", has_text="Succeeded").wait_for()

    values = page.evaluate("window.barValues")
    assert values == sorted(values), f"the bar went backwards: {values}"
    assert any(0 < v < 100 for v in values), f"no intermediate progress shown: {values}"
    assert page.locator(f"{LIVE} .processed").inner_text() == "120 / 120"
    assert page.evaluate("window.sameDocument") is True, "the page was reloaded"
    assert page.locator(f"#job-{job.pk}-timeline li", has_text="Succeeded").count() >= 1


def test_leaving_and_coming_back_resumes_the_live_view(cluster, open_page, user):
    job = slow_count(user, n=250, delay=0.03)
    page = open_page(user, f"/jobs/{job.pk}/")
    wait_for_progress(page)

    page.get_by_role("link", name="All jobs").first.click()
    row = page.locator(f"#job-row-{job.pk}")
    row.wait_for()
    wait_until_live(page)
    page.go_back()
    wait_until_live(page)
    if Job.objects.get(pk=job.pk).status == S.RUNNING:
        page.evaluate(RECORD_BAR)
        wait_for_js(page, "window.barValues.includes(100)")
    page.locator(f"{LIVE} .status", has_text="Succeeded").wait_for()
    assert Job.objects.get(pk=job.pk).status == S.SUCCEEDED


def test_the_sheet_page_finds_its_running_job_live_and_after_a_reload(
    fake_openai,
    cluster,
    open_page,
    user,  # the fake first: the workers allow it
):
    fake_openai.latency = 0.08
    sheet = make_sheet(user, [["name"]] + [[f"Apple {i}"] for i in range(1, 46)])
    page = open_page(user, sheet.get_absolute_url())
    assert page.locator("#current-job-live").count() == 0

    # Started elsewhere (another tab, the API, the command line): the open page shows it.
    job = sheet_job_submit(
        sheet=sheet,
        owner=user,
        processor="llm",
        options={"base_url": fake_openai.base_url, "prompt": "Hi {name}", "concurrency": 1},
        columns=["name"],
    )[0]
    page.locator("#current-job-live .status", has_text="Running").wait_for()

    page.reload()
    wait_until_live(page)
    if Job.objects.get(pk=job.pk).status == S.RUNNING:
        page.locator("#running-notice", has_text="Still running").wait_for()
    page.locator("#current-job-live .status", has_text="Succeeded").wait_for(timeout=30_000)
    page.locator("#results tr[data-row='45']").wait_for()
    assert (
        page.locator("#results tr[data-row='45'] td.output").first.inner_text()
        == "echo: Hi Apple 45"
    )


def test_a_toast_on_another_page_when_a_job_finishes(cluster, open_page, user):
    page = open_page(user, "/sheets/")
    job = slow_count(user, n=10, delay=0.05)

    toast = page.locator("#toasts .toast", has_text="Slow count finished")
    toast.wait_for()
    assert toast.locator("a").get_attribute("href") == f"/jobs/{job.pk}/"
    assert Notification.objects.filter(user=user, read_at__isnull=True).count() == 1
    wait_for_js(
        page,
        "document.querySelector('#nav-unread-badge') && "
        "document.querySelector('#nav-unread-badge').textContent.trim() === '1'",
    )

    failing = slow_count(user, n=10, delay=0.01, fail_at=3)
    page.locator("#toasts .toast.error", has_text="failed").wait_for()
    assert Job.objects.get(pk=failing.pk).status == S.FAILED


def test_cancel_from_the_page_stops_the_job(cluster, open_page, user):
    job = slow_count(user, n=2000, delay=0.02)
    page = open_page(user, f"/jobs/{job.pk}/")
    wait_for_progress(page)

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator(f"{LIVE} button", has_text="Cancel").click()

    page.locator(f"{LIVE} .status", has_text="Cancelled").wait_for(timeout=5_000)
    job.refresh_from_db()
    assert job.status == S.CANCELLED and job.processed < 2000
    assert page.locator(f"{LIVE} button", has_text="Retry").count() == 1


def test_bulk_cancel_of_rows_ticked_while_the_table_updates(cluster, open_page, user):
    jobs = [slow_count(user, n=3000, delay=0.02) for _ in range(2)]
    page = open_page(user, "/jobs/")
    for job in jobs:
        page.locator(f"#job-row-{job.pk} input[name=ids]").check()
    # A job submitted elsewhere makes the table re-read itself, and live pushes
    # replace the ticked rows: the ticks survive both.
    newcomer = slow_count(user, n=10)
    page.locator(f"#job-row-{newcomer.pk}").wait_for()
    for job in jobs:
        shown = page.locator(f"#job-row-{job.pk} .progress-cell .muted").inner_text()
        wait_for_js(
            page,
            f"document.querySelector('#job-row-{job.pk} .progress-cell .muted').textContent"
            f" !== {shown!r}",
        )
    page.locator("#bulk-form button[value=cancel]").click()

    page.locator(".messages", has_text="2 jobs cancelled").wait_for()
    # A running job stops at its next checkpoint: its row turns Cancelled live.
    for job in jobs:
        page.locator(f"#job-row-{job.pk}[data-status=cancelled]").wait_for(timeout=5_000)
        assert Job.objects.get(pk=job.pk).status == S.CANCELLED
    assert Job.objects.get(pk=newcomer.pk).status != S.CANCELLED


def test_the_page_recovers_when_the_web_server_restarts(cluster, open_page, web, user):
    job = slow_count(user, n=400, delay=0.03)
    page = open_page(user, f"/jobs/{job.pk}/")
    wait_for_progress(page)

    web.stop()  # may itself take seconds: the page may be "reconnecting" already
    page.wait_for_selector("body:not([data-live='open'])", state="attached")
    restarted = Daphne()
    restarted.port = web.port
    restarted.start()
    try:
        page.wait_for_selector("body[data-live='open']", state="attached", timeout=30_000)
        page.locator(f"{LIVE} .status", has_text="Succeeded").wait_for(timeout=30_000)
        assert page.locator(f"{LIVE} .processed").inner_text() == "400 / 400"
    finally:
        restarted.stop()
