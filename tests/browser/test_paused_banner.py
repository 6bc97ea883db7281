"""A job that pauses itself (an llm job at its budget) under an open page: the job's
page and its sheet's page show the paused state, why, and the form to resume with a
new budget, without a reload; the form pushed live resumes the job (its CSRF token
comes from the page, as the relay renders one copy for everyone)."""

from __future__ import annotations

import threading

import pytest

from jobs.models import Job
from sheets.services import sheet_job_submit
from tests.browser.test_accessibility import AXE, RUN_AXE
from tests.sheets.factories import make_sheet
from tests.sheets.test_kinds import CATEGORIES, llm_options, review_rows
from tests.support.processes import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.cluster, pytest.mark.django_db(transaction=True)]

S = Job.Status
ROWS = 40
BANNER = ".live-job .paused-banner"


@pytest.fixture
def gate(fake_openai):
    """The fake LLM holds every answer until the test opens the gate: the job is seen
    running before it can reach its budget."""
    opened = threading.Event()
    fake_openai.categories = CATEGORIES
    fake_openai.latency = lambda call: 0.0 if opened.wait(timeout=60) else 0.0
    yield opened
    opened.set()


def budget_job(user, fake_openai) -> Job:
    sheet = make_sheet(user, review_rows(ROWS))
    options = llm_options(fake_openai, concurrency=2, budget_tokens=300)
    job, _ = sheet_job_submit(sheet=sheet, owner=user, processor="llm", options=options)
    wait_for(lambda: fake_openai.in_flight > 0, timeout=30, what="the job's first request")
    return job


def watch_it_pause(page, gate, job: Job) -> None:
    page.evaluate("window.sameDocument = true")
    page.locator(".live-job .status", has_text="Running").wait_for()
    assert page.locator(BANNER).count() == 0
    gate.set()
    page.locator(".live-job .status", has_text="Paused").wait_for()
    page.locator(BANNER, has_text="Budget reached").wait_for()
    assert page.evaluate("window.sameDocument") is True, "the page was reloaded"
    assert Job.objects.get(pk=job.pk).status == S.PAUSED


def test_the_job_page_shows_the_budget_pause_live_and_resumes_with_a_new_budget(
    fake_openai, gate, cluster, open_page, user
):
    job = budget_job(user, fake_openai)
    page = open_page(user, f"/jobs/{job.pk}/")
    watch_it_pause(page, gate, job)
    banner = page.locator(BANNER)
    assert "of the job's budget_tokens of 300 tokens" in banner.inner_text()
    assert banner.locator("input[name=budget_tokens]").input_value() == "300"
    page.add_script_tag(url=AXE)
    assert page.evaluate(RUN_AXE) == [], "the pushed banner and its form are accessible"

    banner.locator("input[name=budget_tokens]").fill("")  # lift it
    banner.get_by_role("button", name="Resume with this budget").click()
    page.locator(".messages", has_text=f"Job #{job.pk} resumed.").wait_for()
    wait_for(lambda: Job.objects.get(pk=job.pk).status == S.SUCCEEDED, timeout=60, what="the end")
    page.locator(".live-job .status", has_text="Succeeded").wait_for()
    assert page.locator(BANNER).count() == 0
    assert Job.objects.get(pk=job.pk).processed == ROWS


def test_the_sheet_page_shows_the_budget_pause_live_and_its_form_resumes(
    fake_openai, gate, cluster, open_page, user
):
    job = budget_job(user, fake_openai)
    page = open_page(user, f"/sheets/{job.params['sheet_id']}/")
    watch_it_pause(page, gate, job)

    page.locator(BANNER).locator("input[name=budget_tokens]").fill("100000")
    page.locator(BANNER).get_by_role("button", name="Resume with this budget").click()
    page.locator(".messages", has_text=f"Job #{job.pk} resumed.").wait_for()
    wait_for(lambda: Job.objects.get(pk=job.pk).status == S.SUCCEEDED, timeout=60, what="the end")
    assert Job.objects.get(pk=job.pk).params["options"]["budget_tokens"] == 100_000
