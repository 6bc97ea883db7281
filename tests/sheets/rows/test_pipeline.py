"""Each row's paid request succeeds once (SPEC "Quality bars"): an llm job on a real
cluster, with 2 s slices, pause and resume, 429s, 500s and slow answers in flight at
every slice end, gets exactly one successful upstream answer per row, and keeps it."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from jobs.engine.services import job_pause, job_resume
from jobs.models import Job
from sheets.models import RowResult
from sheets.services import sheet_job_submit
from tests.sheets.factories import make_sheet
from tests.sheets.test_kinds import CATEGORIES, llm_options, review_rows
from tests.support.processes import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.django_db(transaction=True)]

ROWS = 300
SLOW_SECONDS = 1.5


def review_index(call) -> int:
    return int(re.search(r"Review (\d+):", call.user_message)[1])


def latency(call) -> float:
    """Every 11th row answers slowly: such answers are in flight at slice ends."""
    return SLOW_SECONDS if review_index(call) % 11 == 5 else 0.02


def status_of(job: Job) -> str:
    return Job.objects.values_list("status", flat=True).get(pk=job.pk)


def test_every_successful_answer_is_kept_across_slices_pause_and_retries(
    cluster_factory, user, fake_openai
):
    fake_openai.categories = CATEGORIES
    fake_openai.latency = latency
    fake_openai.rate_limit_every = 13
    fake_openai.retry_after = "0.2"
    fake_openai.error_fraction = 0.03
    cluster_factory(
        workers=2, CONVEYOR_HTTP_RETRY_BASE_SECONDS="0.05", CONVEYOR_HTTP_RETRY_MAX_SECONDS="0.5"
    )
    sheet = make_sheet(user, review_rows(ROWS))
    job, _ = sheet_job_submit(
        sheet=sheet, owner=user, processor="llm", options=llm_options(fake_openai, concurrency=8)
    )
    processed = lambda: Job.objects.values_list("processed", flat=True).get(pk=job.pk)  # noqa: E731
    wait_for(lambda: processed() >= ROWS // 3, timeout=60, what="a third of the rows")
    job_pause(job=job)
    wait_for(lambda: status_of(job) == Job.Status.PAUSED, timeout=15, what="the job to pause")
    job_resume(job=job)
    wait_for(lambda: status_of(job) == Job.Status.SUCCEEDED, timeout=120, what="completion")

    job = Job.objects.get(pk=job.pk)
    assert (job.processed, job.failed) == (ROWS, 0), job.error
    results = RowResult.objects.filter(job=job)
    assert sorted(results.values_list("row_number", flat=True)) == list(range(1, ROWS + 1))
    for result in results:
        assert result.outputs["category"] == CATEGORIES[(result.row_number - 1) % 3]
    statuses = Counter(call.status for call in fake_openai.calls)
    assert statuses[429] >= ROWS // 13 and statuses[500] > 0, statuses
    answered = Counter(review_index(c) for c in fake_openai.calls if c.status == 200)
    asked_twice = sorted(i for i, n in answered.items() if n > 1)
    assert not asked_twice, f"rows whose successful answer was asked for again: {asked_twice}"
    assert statuses[200] == ROWS, statuses
    assert fake_openai.dropped == 0, "no request was abandoned"
