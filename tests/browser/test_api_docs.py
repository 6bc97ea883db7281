"""The API docs page (/api/docs/, issue #27) in a real browser: Swagger UI, served from
our static files, shows every operation of the document without one CSP violation, and
"Try it out" calls the API with the page's session (a GET, and a POST that needs the
CSRF token)."""

from __future__ import annotations

import pytest

from jobs.models import Notification
from tests.browser.test_csp import visit, watch
from tests.jobs.factories import submit_demo

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_docs_page_shows_every_operation_and_tries_them_as_the_user(open_page, user):
    job = submit_demo(user, n=2)
    Notification.objects.create(user=user, job=job, message="done")
    page = open_page(user, "/", wait_live=False)
    csp = watch(page)
    page.click("nav >> text=API")
    page.wait_for_url("**/api/docs/")
    visit(page, "/api/docs/")
    page.wait_for_selector(".opblock-summary")
    assert page.locator(".opblock").count() > 40
    assert "Conveyor API" in page.locator(".info .title").inner_text()

    jobs = page.locator("#operations-jobs-get_jobs")
    jobs.locator(".opblock-summary").click()
    jobs.locator("button.try-out__btn").click()
    jobs.locator("button.execute").click()
    answer = jobs.locator(".live-responses-table tbody .response-col_status").first
    assert answer.inner_text().strip() == "200"
    assert (
        f'"id": {job.pk}'
        in jobs.locator(".live-responses-table tbody .microlight").first.inner_text()
    )

    marking = page.locator("#operations-notifications-post_notifications_mark_read")
    marking.locator(".opblock-summary").click()
    marking.locator("button.try-out__btn").click()
    marking.locator("textarea.body-param__text").fill('{"all": true}')
    marking.locator("button.execute").click()
    status = marking.locator(".live-responses-table tbody .response-col_status").first
    assert status.inner_text().strip() == "200"  # the CSRF token went with it
    assert not Notification.objects.filter(user=user, read_at__isnull=True).exists()
    assert csp.found == []
