"""A button whose action the job no longer allows (it moved on while the page could not
hear about it) says why at the top of the page, instead of doing nothing; so does a click
the server cannot be reached for."""

from __future__ import annotations

import re

import pytest

from jobs.engine.services import job_cancel
from tests.jobs.factories import submit_demo

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ALERT = "#request-error"


def deaf_page(open_page, user, path: str):
    """The page at `path` with a live socket that never hears anything (a proxy that
    drops websockets): what changes meanwhile does not reach it."""
    page = open_page(user, "/jobs/")
    page.route_web_socket(re.compile(r".*/ws/.*"), lambda socket: None)
    page.goto(path)
    return page


def test_an_action_the_job_no_longer_allows_says_why(open_page, user):
    job = submit_demo(user, n=3, label="Moved on")  # queued: no cluster runs it
    page = deaf_page(open_page, user, f"/jobs/{job.pk}/")
    job_cancel(job=job, by=user)  # elsewhere (another tab, the CLI): cancelled at once
    assert page.locator(ALERT).is_hidden()
    page.get_by_role("button", name="Pause").click()
    alert = page.locator(ALERT)
    alert.wait_for()
    assert re.search(r"cancelled", alert.inner_text(), re.IGNORECASE), alert.inner_text()
    assert page.locator(".live-job .status", has_text="Queued").count() == 1, "nothing swapped"


def test_a_click_the_server_cannot_be_reached_for_says_so(open_page, user, web):
    job = submit_demo(user, n=3, label="Unreachable")
    page = deaf_page(open_page, user, f"/jobs/{job.pk}/")
    web.stop()  # the web server is gone (kill, restart, network)
    page.get_by_role("button", name="Pause").click()
    page.locator(ALERT).wait_for()
    assert "could not be reached" in page.locator(ALERT).inner_text()
