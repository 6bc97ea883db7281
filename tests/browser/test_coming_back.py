"""Walk away, come back (SPEC, journey 2): a job that ended while no page of its user was
open greets the next page they open, once ("… finished while you were away", with a
link); a job that ended in front of them does not."""

from __future__ import annotations

import pytest

from jobs.models import Job
from tests.browser.conftest import wait_until_live
from tests.jobs.factories import submit_demo, wait_status

pytestmark = [pytest.mark.browser, pytest.mark.cluster, pytest.mark.django_db(transaction=True)]

AWAY = "finished while you were away"


def test_a_job_that_ended_while_no_page_was_open_is_listed_by_the_next_page_once(
    cluster_factory, open_page, user
):
    page = open_page(user, "/sheets/")
    page.locator("#try-sample").click()
    page.wait_for_url("**/sheets/*/?processor=clean")
    page.locator("#start-background").click()
    page.wait_for_url("**/sheets/")
    job = Job.objects.get(owner=user)
    page.close()  # no page of the user is open from now on

    cluster_factory()  # the job runs, and ends, only now
    job = wait_status(job, Job.Status.SUCCEEDED, timeout=60)

    page = open_page(user, "/")
    line = page.locator("#away-notices li", has_text=AWAY)
    assert line.count() == 1
    link = line.locator("a")
    assert link.inner_text() == f"{job.title} {AWAY}"
    assert link.get_attribute("href") == f"/jobs/{job.pk}/"
    assert page.locator("#toasts .toast").count() == 0, "not told twice"

    page.reload()
    wait_until_live(page)
    assert page.locator("#away-notices").count() == 0
    assert page.get_by_text("while you were away").count() == 0
    page.get_by_role("link", name="Notifications").click()
    page.locator(".notification.unread", has_text=f"{job.title} finished").wait_for()


def test_a_job_that_ended_on_an_open_page_is_not_news_on_the_next(cluster, open_page, user):
    """Its toast was shown where the user was (another page than the job's own)."""
    page = open_page(user, "/sheets/")
    job = submit_demo(user, n=5, label="Seen ending")
    page.locator("#toasts .toast", has_text="Seen ending finished").wait_for()

    page.goto("/")
    wait_until_live(page)
    assert page.get_by_text("while you were away").count() == 0
    assert Job.objects.get(pk=job.pk).status == Job.Status.SUCCEEDED
