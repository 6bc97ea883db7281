"""A toast can be closed from the keyboard (issue #12): its × button is reachable with
Tab, named for screen readers, and closes it at once."""

from __future__ import annotations

import pytest

from jobs.engine.services import job_cancel
from tests.jobs.factories import submit_demo

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_toast_closes_with_its_button_from_the_keyboard(open_page, user):
    page = open_page(user, "/sheets/")
    job = submit_demo(user, n=3, label="Short count")
    job_cancel(job=job, by=user)  # queued, no worker: cancelled at once, with a toast
    toast = page.locator("#toasts .toast", has_text="Short count")
    toast.wait_for()
    toast.locator("a").focus()
    page.keyboard.press("Tab")  # from the toast's link to its close button
    focused = page.evaluate("document.activeElement.getAttribute('aria-label')")
    assert focused == "Close this notification"
    page.keyboard.press("Enter")
    toast.wait_for(state="detached", timeout=2_000)
    assert page.locator("#toasts .toast").count() == 0
