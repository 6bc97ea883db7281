"""axe-core finds no serious or critical accessibility violation on the main pages
(issue #12). axe is vendored in static/vendor/axe/ and injected by the test only, from
our own origin (the Content-Security-Policy allows no inline script)."""

from __future__ import annotations

import pytest

from jobs.models import Job
from sheets.services import sheet_job_submit
from tests.browser.conftest import TIMEOUT_MS
from tests.sheets.factories import make_sheet, run_to_end

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AXE = "/static/vendor/axe/axe.min.js"
RUN_AXE = """async () => {
  const result = await axe.run(document, { resultTypes: ['violations'] });
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => v.id + ' (' + v.impact + '): ' + v.help + ' -- ' +
      v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(' | '));
}"""


def violations(page, path: str) -> list[str]:
    page.goto(path)
    page.wait_for_load_state("load")
    page.add_script_tag(url=AXE)
    return [f"{path}: {v}" for v in page.evaluate(RUN_AXE)]


@pytest.fixture
def finished_sheet(user):
    sheet = make_sheet(user, [["name", "email"], ["Ada", "ada@example.com"], ["Bob", "nope"]])
    job = run_to_end(sheet_job_submit(sheet=sheet, owner=user, processor="clean")[0])
    assert job.status == Job.Status.SUCCEEDED
    return sheet, job


def test_main_pages_have_no_serious_accessibility_violation(
    chromium, web, open_page, user, staff_user, finished_sheet
):
    sheet, job = finished_sheet
    found: list[str] = []
    page = open_page(user, "/")
    for path in ["/", "/jobs/", f"/jobs/{job.pk}/", "/sheets/", sheet.get_absolute_url()]:
        found += violations(page, path)
    found += violations(page, "/jobs/notifications/")
    found += violations(page, "/jobs/webhooks/")
    # A second job (the sheet page lists its job history) and the newer pages.
    run_to_end(sheet_job_submit(sheet=sheet, owner=user, processor="copy")[0])
    for path in [sheet.get_absolute_url(), "/schedules/", f"/sheets/{sheet.pk}/delete/"]:
        found += violations(page, path)
    found += violations(page, "/no-such-page/")
    staff = open_page(staff_user, "/")
    found += violations(staff, "/metrics/")
    found += violations(staff, "/ops/")  # kinds of work (its running-jobs table)
    found += violations(staff, "/ops/waiting/")
    anonymous = chromium.new_context(base_url=web.url)
    anonymous.set_default_timeout(TIMEOUT_MS)
    try:
        found += violations(anonymous.new_page(), "/login/")
    finally:
        anonymous.close()
    assert not found, "\n".join(found)
