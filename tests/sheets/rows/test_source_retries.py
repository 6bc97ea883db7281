"""Honest retries (issue #22, item 1): "Retry failed rows" on a sheet job cancelled
midway also processes the rows it never reached, says so on the page, in the API and on
the command line, and a sheet job is never Succeeded while rows of its range have no
result (checked where the kind ends)."""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import call_command
from django.test import Client

from jobs.engine.services import job_cancel, job_retry
from jobs.models import Job
from sheets.models import RowResult
from sheets.services import sheet_job_submit
from tests.sheets.factories import make_sheet, run_to_end
from tests.sheets.test_kinds import CATEGORIES, llm_options, review_rows
from tests.support.processes import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

ROWS = 300


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def row_numbers(job: Job) -> list[int]:
    return sorted(RowResult.objects.filter(job=job).values_list("row_number", flat=True))


def cancelled_midway(jobs: list[Job]) -> list[Job]:
    """Cancel the running jobs once each has processed about a third of its rows."""
    for job in jobs:
        wait_for(
            lambda j=job: Job.objects.get(pk=j.pk).processed >= ROWS // 3,
            timeout=60,
            what=f"job #{job.pk} a third done",
        )
    for job in jobs:
        job_cancel(job=job)
    for job in jobs:
        wait_for(
            lambda j=job: Job.objects.get(pk=j.pk).status == Job.Status.CANCELLED,
            timeout=20,
            what=f"job #{job.pk} cancelled",
        )
    jobs = [Job.objects.get(pk=job.pk) for job in jobs]
    for job in jobs:
        assert job.failed > 0 and job.processed < ROWS, "cancelled midway, with failed rows"
    return jobs


def plan_of(job: Job) -> str:
    never = ROWS - job.processed
    return f"Redo {job.failed} failed rows and process the {never} rows never processed"


@pytest.mark.cluster
def test_retry_failed_rows_after_a_cancel_processes_the_rest_and_says_so_everywhere(
    fake_openai,
    cluster_factory,
    user,  # the fake first: the workers allow it
):
    fake_openai.categories = CATEGORIES
    fake_openai.latency = 0.05  # ~40 rows/s a job: the cancel lands well before the end
    cluster_factory(workers=3)
    jobs = [
        sheet_job_submit(
            sheet=make_sheet(user, review_rows(ROWS, wrong_every=3), f"reviews-{n}.csv"),
            owner=user,
            processor="llm",
            options=llm_options(fake_openai, concurrency=2),
        )[0]
        for n in range(3)
    ]
    on_page, by_api, by_cli = cancelled_midway(jobs)
    alice = logged_in(user)

    # The page: the button says it does the rest too; the panel it answers says what.
    page = alice.get(f"/jobs/{on_page.pk}/").content.decode()
    never = ROWS - on_page.processed
    assert f"Retry failed rows and the {never} never processed</button>" in page
    answer = alice.post(f"/jobs/{on_page.pk}/retry-failed/", HTTP_HX_REQUEST="true")
    assert answer.status_code == 200
    assert plan_of(on_page) in answer.content.decode()

    # The API: the job it answers is queued with the same plan as its message.
    body = alice.post(
        f"/api/jobs/{by_api.pk}/retry/", {"failed_rows": True}, content_type="application/json"
    ).json()
    assert (body["status"], body["message"]) == ("queued", plan_of(by_api))

    # The command line prints it.
    out = io.StringIO()
    call_command(
        "conveyor", "retry", str(by_cli.pk), "--failed-rows", "--user", "alice", stdout=out
    )
    assert out.getvalue().strip() == f"Job #{by_cli.pk} is queued. {plan_of(by_cli)}."

    for job in jobs:
        wait_for(
            lambda j=job: Job.objects.get(pk=j.pk).is_terminal, timeout=90, what=f"job {job.pk}"
        )
        job = Job.objects.get(pk=job.pk)
        assert job.status == Job.Status.SUCCEEDED, job.error
        assert row_numbers(job) == list(range(1, ROWS + 1)), "every row of the range has a result"
        assert (job.processed, job.failed) == (ROWS, ROWS // 3), "only the WRONG rows failed"
        timeline = list(job.events.values_list("message", flat=True))
        assert any(re.match(r"Retry \(redo \d+ failed rows and process the", m) for m in timeline)


def test_a_sheet_job_is_never_succeeded_over_rows_without_a_result(user, fake_openai):
    """A cursor left by a failed-rows retry of an earlier version (it redid only the
    failed rows): the job ends Failed, saying how many rows were never processed, and a
    retry then processes exactly those."""
    fake_openai.categories = CATEGORIES
    sheet = make_sheet(user, review_rows(30, wrong_every=4))
    job = sheet_job_submit(
        sheet=sheet, owner=user, processor="llm", options=llm_options(fake_openai)
    )[0]
    job = run_to_end(job)
    assert (job.status, job.processed, job.failed) == (Job.Status.SUCCEEDED, 30, 8)
    # As the earlier version left a job cancelled at row 12 and retried for failed rows:
    RowResult.objects.filter(job=job, row_number__gt=12).delete()
    Job.objects.filter(pk=job.pk).update(
        status=Job.Status.CANCELLED, cursor={"next": 1, "mode": "failed"}, processed=9, failed=0
    )
    job_retry(job=Job.objects.get(pk=job.pk))

    job = run_to_end(job)
    assert job.status == Job.Status.FAILED
    assert job.error == (
        "18 of the job's 30 rows were never processed (row 13 the first), so it cannot "
        "count as succeeded. Retry it to process them."
    )
    assert (job.processed, job.failed) == (12, 3), "the counters say what is stored"

    job_retry(job=job)
    job = run_to_end(Job.objects.get(pk=job.pk))
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert row_numbers(job) == list(range(1, 31)) and job.processed == 30
