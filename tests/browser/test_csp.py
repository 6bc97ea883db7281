"""The Content-Security-Policy holds on every page a user and a staff user reach: the
header has no 'unsafe-inline' anywhere (scripts and styles only from our own files), and
no page raises a `securitypolicyviolation` or logs a CSP error in Chromium — live pages
while a job runs and after it ended, the admin's own pages, the login page. htmx still
posts, a plain form still asks first, and an inline script is refused."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, RequestFactory
from django.urls import reverse

from jobs.engine.services import Submission, batch_submit, job_cancel
from jobs.models import Job
from sheets.models import Sheet
from sheets.services import sheet_job_submit
from tests.browser.conftest import wait_until_live
from tests.browser.test_page_states import slow_sheet_job
from tests.jobs.factories import submit_demo
from tests.sheets.factories import make_sheet, run_to_end
from tests.support.processes import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CSP_MARK = "Content Security Policy"
# Runs before each document's own scripts (Playwright injects it outside the CSP).
# Counts the live pushes too.
REPORT_VIOLATIONS = """document.addEventListener("securitypolicyviolation", (e) =>
  window.cspViolation(`${location.pathname}: ${e.violatedDirective} ${e.blockedURI} ${e.sample}`));
window.pushes = 0;
document.addEventListener("htmx:wsAfterMessage", () => { window.pushes += 1; });"""


class CspWatch:
    """Every CSP violation a page raises from now on, as an event or a console error."""

    def __init__(self, page) -> None:
        self.found: list[str] = []
        page.expose_function("cspViolation", self._event)
        page.add_init_script(REPORT_VIOLATIONS)
        page.on("console", self._console)

    def _event(self, text: str) -> None:
        self.found.append(text)

    def _console(self, message) -> None:
        if CSP_MARK in message.text:
            self.found.append(message.text)


def watch(page) -> CspWatch:
    return CspWatch(page)


def visit(page, path: str, live: bool = True) -> None:
    """Open the page, check its policy, and let its live socket and re-reads settle."""
    response = page.goto(path)
    assert response.status == 200, (path, response.status)
    policy = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in policy and "style-src 'self'" in policy, (path, policy)
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, (path, policy)
    if live:
        wait_until_live(page)
    page.wait_for_load_state("networkidle")


def make_jobs(user):
    sheet = make_sheet(user, [["name", "email"], ["Ann", " ANN@example.com "], ["Bo", "x"]])
    finished = run_to_end(sheet_job_submit(sheet=sheet, owner=user, processor="clean")[0])
    waiting = submit_demo(user, n=3)  # no cluster here: it stays queued
    submissions = [Submission(kind="demo.count", params={"n": 2}) for _ in range(2)]
    batch, _ = batch_submit(owner=user, submissions=submissions, label="two demos")
    return sheet, finished, waiting, batch


def importing_sheet(user, settings) -> Sheet:
    """A sheet whose import job is queued (no cluster here): its page is the importing one."""
    settings.CONVEYOR_INLINE_IMPORT_BYTES = 100
    client = Client()
    client.force_login(user)
    rows = "name\n" + "".join(f"person {i}\n" for i in range(50))
    upload = SimpleUploadedFile("later.csv", rows.encode(), "text/csv")
    assert client.post("/sheets/upload/", {"file": upload}).status_code == 302
    return Sheet.objects.get(owner=user, name="later.csv")


def test_pages_of_a_user_raise_no_csp_violation(open_page, user, settings):
    sheet, finished, waiting, batch = make_jobs(user)
    later = importing_sheet(user, settings)
    fresh = make_sheet(user, [["name"], ["Plum"]], name="fresh.csv")
    page = open_page(user, "/", wait_live=False)
    csp = watch(page)
    for path in [
        "/",
        "/jobs/",
        "/jobs/?status=queued",
        f"/jobs/{finished.pk}/",
        f"/jobs/batches/{batch.pk}/",
        "/schedules/",
        "/jobs/notifications/",
        "/jobs/webhooks/",
        "/sheets/",
        f"/sheets/{sheet.pk}/",
        f"/sheets/{sheet.pk}/?job={finished.pk}",
        f"/sheets/{sheet.pk}/delete/",
        f"/sheets/{later.pk}/",
        f"/sheets/{fresh.pk}/",
    ]:
        visit(page, path)
    assert csp.found == []

    # htmx at work under the policy: options swapped in, results filtered, a job cancelled
    # (hx-confirm, hx-post, a morphed panel, a toast).
    visit(page, f"/sheets/{fresh.pk}/")
    page.locator("select[name=processor]").select_option("llm")
    page.locator("#processor-options #preview-prompt").wait_for()
    visit(page, f"/sheets/{sheet.pk}/")
    page.locator("#results a", has_text="Failed rows").click()
    page.wait_for_selector("#results[data-errors='1']")
    visit(page, f"/jobs/{waiting.pk}/")
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel").click()
    page.locator(".status", has_text="Cancelled").first.wait_for()
    page.locator("#toasts .toast").first.wait_for()
    assert Job.objects.get(pk=waiting.pk).status == Job.Status.CANCELLED
    assert csp.found == []

    from playwright.sync_api import Error

    with pytest.raises(Error, match=CSP_MARK):  # the policy is in force
        page.add_script_tag(content="window.injected = true")
    assert page.evaluate("window.injected === undefined")
    page.evaluate("() => document.body.insertAdjacentHTML('beforeend', '<p style=\"color: red\">')")
    wait_for(lambda: len(csp.found) >= 2, timeout=5, what="the watch to see both refusals")
    assert any("style-src" in found for found in csp.found), csp.found


def admin_pages(sheet, finished, batch, schedule, staff_user) -> list[str]:
    """Every admin list and add form, and the change page of each kind of thing made here."""
    request = RequestFactory().get("/admin/")
    request.user = staff_user
    pages = ["/admin/"]
    for model, model_admin in admin.site._registry.items():
        name = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        pages.append(reverse(f"{name}_changelist"))
        if model_admin.has_add_permission(request):
            pages.append(reverse(f"{name}_add"))
    pages += [
        reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
        for obj in (sheet, finished, batch, schedule, staff_user)
    ]
    return [*pages, reverse("admin:auth_user_password_change", args=[staff_user.pk])]


def test_staff_pages_raise_no_csp_violation(open_page, staff_user):
    from jobs.schedules.services import schedule_create

    sheet, finished, _, batch = make_jobs(staff_user)
    schedule = schedule_create(owner=staff_user, kind="demo.count", name="Nightly", every="1d")
    page = open_page(staff_user, "/", wait_live=False)
    csp = watch(page)
    visit(page, "/metrics/")
    # Polled from here: Playwright's in-page polling evaluates strings, which the CSP forbids.
    wait_for(
        lambda: page.evaluate("() => (window.conveyorMetrics || {}).updates >= 1"),
        timeout=15,
        what="the metrics page's first update",
    )
    assert page.locator("#chart-jobs canvas").count() == 1
    visit(page, "/jobs/?all=1")
    visit(page, "/schedules/?all=1")
    visit(page, "/ops/")
    visit(page, "/ops/waiting/")
    for path in admin_pages(sheet, finished, batch, schedule, staff_user):
        visit(page, path, live=False)
    visit(page, reverse("admin:jobs_job_change", args=[finished.pk]), live=False)
    badge = page.locator(".job-status").first
    assert badge.evaluate("(el) => getComputedStyle(el).color") == "rgb(255, 255, 255)"
    assert csp.found == []


@pytest.mark.cluster
def test_live_pages_raise_no_csp_violation_while_a_job_runs_and_after(
    fake_openai, cluster, open_page, user
):
    sheet = make_sheet(user, [["name"]] + [[f"Apple {i}"] for i in range(1, 401)])
    page = open_page(user, sheet.get_absolute_url())
    csp = watch(page)
    sheet, job = slow_sheet_job(user, fake_openai, sheet=sheet)
    counting = submit_demo(user, n=3000, delay=0.02, label="Slow count")
    for path in [sheet.get_absolute_url(), f"/jobs/{counting.pk}/", "/jobs/", "/sheets/", "/"]:
        visit(page, path)
        wait_for(  # pushes arrive: rows and panels morph, parts re-read themselves
            lambda: page.evaluate("() => window.pushes >= 5"),
            timeout=20,
            what=f"live pushes on {path}",
        )
    visit(page, sheet.get_absolute_url())
    page.locator("#current-job-live .status", has_text="Running").wait_for()
    page.locator("#results tr[data-row]").first.wait_for()
    job_cancel(job=job, by=user)
    job_cancel(job=counting, by=user)
    page.locator("#current-job-live .status", has_text="Cancelled").wait_for()
    visit(page, sheet.get_absolute_url())
    visit(page, f"/jobs/{counting.pk}/")
    page.locator(f"#job-{counting.pk}-live .status", has_text="Cancelled").wait_for()
    assert csp.found == []


def test_login_page_raises_no_csp_violation(chromium, web):
    context = chromium.new_context(base_url=web.url)
    page = context.new_page()
    csp = watch(page)
    visit(page, "/login/", live=False)
    page.fill("input[name=username]", "nobody")
    page.fill("input[name=password]", "wrong")
    page.click("button[type=submit]")
    page.wait_for_selector("p.error")
    assert csp.found == []
    context.close()


def test_deleting_a_schedule_asks_first_under_the_csp(open_page, user):
    from jobs.models import Schedule
    from jobs.schedules.services import schedule_create

    schedule = schedule_create(owner=user, kind="demo.count", name="Nightly", every="1d")
    page = open_page(user, "/schedules/")
    csp = watch(page)
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
    assert csp.found == []
