"""The Content-Security-Policy holds on every main page: no violation in the console,
the live socket still opens, htmx still posts, and an inline script is refused."""

from __future__ import annotations

import pytest

from jobs.models import Job
from sheets.services import sheet_job_submit
from tests.browser.conftest import wait_until_live
from tests.jobs.factories import submit_demo
from tests.sheets.factories import make_sheet, run_to_end
from tests.support.processes import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CSP_MARK = "Content Security Policy"


def watch_console(page) -> list[str]:
    messages: list[str] = []
    page.on("console", lambda message: messages.append(message.text))
    return messages


def violations(messages: list[str]) -> list[str]:
    return [text for text in messages if CSP_MARK in text]


def visit(page, path: str, live: bool = True) -> None:
    response = page.goto(path)
    policy = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in policy, (path, policy)
    assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    if live:
        wait_until_live(page)


def make_jobs(user):
    sheet = make_sheet(user, [["name", "email"], ["Ann", " ANN@example.com "], ["Bo", "x"]])
    finished = run_to_end(sheet_job_submit(sheet=sheet, owner=user, processor="clean")[0])
    waiting = submit_demo(user, n=3)  # no cluster here: it stays queued
    return sheet, finished, waiting


def test_pages_of_a_user_raise_no_csp_violation(open_page, user):
    sheet, finished, waiting = make_jobs(user)
    page = open_page(user, "/", wait_live=False)
    console = watch_console(page)
    for path in ["/", "/jobs/", f"/jobs/{finished.pk}/", "/sheets/", f"/sheets/{sheet.pk}/"]:
        visit(page, path)
    assert violations(console) == []

    visit(page, f"/jobs/{waiting.pk}/")
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel").click()  # htmx: hx-confirm, hx-post, swap
    page.locator(".status", has_text="Cancelled").first.wait_for()
    assert Job.objects.get(pk=waiting.pk).status == Job.Status.CANCELLED
    assert violations(console) == []

    from playwright.sync_api import Error

    with pytest.raises(Error, match=CSP_MARK):  # the policy is in force
        page.add_script_tag(content="window.injected = true")
    assert page.evaluate("window.injected === undefined")


def test_staff_pages_raise_no_csp_violation(open_page, staff_user):
    sheet, finished, _ = make_jobs(staff_user)
    page = open_page(staff_user, "/metrics/", wait_live=False)
    console = watch_console(page)
    visit(page, "/metrics/")
    # Polled from here: Playwright's in-page polling evaluates strings, which the CSP forbids.
    wait_for(
        lambda: page.evaluate("() => (window.conveyorMetrics || {}).updates >= 1"),
        timeout=15,
        what="the metrics page's first update",
    )
    assert page.locator("#chart-jobs canvas").count() == 1
    for path in ["/admin/", "/admin/jobs/job/", f"/admin/jobs/job/{finished.pk}/change/"]:
        visit(page, path, live=False)
    visit(page, f"/admin/sheets/sheet/{sheet.pk}/change/", live=False)
    assert violations(console) == []


def test_login_page_raises_no_csp_violation(chromium, web):
    context = chromium.new_context(base_url=web.url)
    page = context.new_page()
    console = watch_console(page)
    visit(page, "/login/", live=False)
    page.fill("input[name=username]", "nobody")
    page.fill("input[name=password]", "wrong")
    page.click("button[type=submit]")
    page.wait_for_selector("p.error")
    assert violations(console) == []
    context.close()


def test_deleting_a_schedule_asks_first_under_the_csp(open_page, user):
    from jobs.models import Schedule
    from jobs.schedules.services import schedule_create

    schedule = schedule_create(owner=user, kind="demo.count", name="Nightly", every="1d")
    page = open_page(user, "/schedules/")
    console = watch_console(page)
    questions: list[str] = []

    def answer(dialog, accept: bool) -> None:
        questions.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda dialog: answer(dialog, accept=False))
    page.get_by_role("button", name="Delete").click()
    wait_for(lambda: questions, timeout=5, what="the confirmation dialog")
    assert questions == ["Delete this schedule? Its jobs stay."]
    page.get_by_role("button", name="Run now").first.wait_for()  # still on the page
    assert Schedule.objects.filter(pk=schedule.pk).exists(), "dismissed: the schedule stays"

    page.once("dialog", lambda dialog: answer(dialog, accept=True))
    with page.expect_navigation():
        page.get_by_role("button", name="Delete").click()
    assert not Schedule.objects.filter(pk=schedule.pk).exists()
    assert violations(console) == []
