"""The main pages fit a phone (390 px) and a desktop (1400 px): nothing scrolls the page
sideways, wide results tables scroll inside their own box, and the navigation's links
do not overlap (issue #12)."""

from __future__ import annotations

import pytest

from jobs.models import Job
from sheets.services import sheet_job_submit
from tests.sheets.factories import make_sheet, run_to_end

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTHS = [390, 1400]
OVERFLOW = "document.documentElement.scrollWidth - window.innerWidth"
# Pairs of navigation links whose boxes intersect.
NAV_OVERLAPS = """() => {
  const boxes = Array.from(document.querySelectorAll('.topbar a, .topbar button'))
    .map((el) => el.getBoundingClientRect()).filter((r) => r.width > 0);
  let overlaps = 0;
  boxes.forEach((a, i) => boxes.slice(i + 1).forEach((b) => {
    if (a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1) overlaps += 1;
  }));
  return overlaps;
}"""


@pytest.fixture
def finished_sheet(user):
    """A sheet whose job left a results table wider than any phone."""
    header = ["name", "email", "phone", "website", "company", "notes"]
    long = "a rather long note that no phone would ever fit on one line " * 2
    rows = [
        [f"Name {i}", f"n{i}@example.com", "+1 555 0100", "example.com", "Acme", long]
        for i in range(12)
    ]
    sheet = make_sheet(user, [header, *rows], name="wide-contacts-with-a-long-name.csv")
    job = run_to_end(sheet_job_submit(sheet=sheet, owner=user, processor="clean")[0])
    assert job.status == Job.Status.SUCCEEDED
    return sheet, job


def test_main_pages_fit_a_phone_and_a_desktop(open_page, user, staff_user, finished_sheet):
    sheet, job = finished_sheet
    user_pages = ["/", "/jobs/", f"/jobs/{job.pk}/", "/sheets/", sheet.get_absolute_url()]
    user_pages.append("/jobs/notifications/")
    # A second job: the sheet page then lists its job history; and the newer pages.
    run_to_end(sheet_job_submit(sheet=sheet, owner=user, processor="copy")[0])
    user_pages += ["/schedules/", f"/sheets/{sheet.pk}/delete/", "/no-such-page/"]
    problems = []
    for who, paths in ((user, user_pages), (staff_user, ["/metrics/", f"/jobs/{job.pk}/"])):
        page = open_page(who, "/")
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 900})
            for path in paths:
                page.goto(path)
                page.wait_for_load_state("load")
                overflow = page.evaluate(OVERFLOW)
                if overflow > 0:
                    problems.append(f"{path} at {width} px: {overflow} px too wide")
                overlaps = page.evaluate(NAV_OVERLAPS)
                if overlaps:
                    problems.append(f"{path} at {width} px: {overlaps} overlapping nav links")
    assert not problems, "\n".join(problems)


def test_a_wide_results_table_scrolls_in_its_own_box(open_page, user, finished_sheet):
    sheet, _ = finished_sheet
    page = open_page(user, sheet.get_absolute_url())
    page.set_viewport_size({"width": 390, "height": 900})
    box = page.locator("#results .table-scroll")
    box.wait_for()
    assert box.evaluate("(el) => el.scrollWidth > el.clientWidth"), "the table is wider"
    assert box.evaluate("(el) => getComputedStyle(el).overflowX") in ("auto", "scroll")
    assert page.evaluate(OVERFLOW) <= 0
    # The outputs are the first columns: visible without scrolling the box.
    first_output = page.locator("#results th.output").first
    assert first_output.bounding_box()["x"] < 390
