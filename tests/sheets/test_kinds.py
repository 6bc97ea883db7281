"""The `sheets.process` job kind end to end: parameters, per-row results written once
with the progress that reports them, row errors, duplicates, failed-rows retry, and
three llm sheets at once on a real cluster against a fake OpenAI-compatible API."""

from __future__ import annotations

import csv
import io
from collections import Counter

import pytest

from jobs.engine.services import job_cancel, job_retry
from jobs.models import Job
from sheets.io import export
from sheets.models import RowResult
from sheets.run import SheetParamsError
from sheets.services import sheet_job_submit
from tests.sheets.factories import make_sheet, run_to_end
from tests.support.processes import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

CATEGORIES = ["Phone", "Laptop", "Tablet"]


def contacts(n: int) -> list[list[str]]:
    rows = [["name", "email"]]
    rows += [[f"  Person {i} ", f"P{i % 7}@Example.com"] for i in range(n)]
    return rows


def results_of(job: Job) -> dict[int, RowResult]:
    return {r.row_number: r for r in RowResult.objects.filter(job=job)}


def test_submit_validates_every_parameter(user, other_user):
    sheet = make_sheet(user, contacts(5))
    cases = [
        ({"processor": "nope"}, "processor"),
        ({"processor": "clean", "columns": ["missing"]}, "columns"),
        ({"processor": "clean", "start_row": 99}, "start_row"),
        ({"processor": "clean", "row_count": -1}, "row_count"),
        ({"processor": "clean", "row_timeout": "soon"}, "row_timeout"),
        ({"processor": "clean", "options": {"case": "sideways"}}, "case"),
        ({"processor": "clean", "options": {"no_such_option": 1}}, "no_such_option"),
    ]
    for params, field in cases:
        with pytest.raises(SheetParamsError) as caught:
            sheet_job_submit(sheet=sheet, owner=user, **params)
        assert field in caught.value.errors, params
    with pytest.raises(SheetParamsError, match="No such sheet"):
        sheet_job_submit(sheet=sheet, owner=other_user, processor="clean")
    assert not Job.objects.exists(), "no half-made job"


def test_clean_job_stores_one_result_per_row_with_matching_counters(user):
    sheet = make_sheet(user, contacts(25))
    job = sheet_job_submit(sheet=sheet, owner=user, processor="clean", start_row=3, row_count=20)[0]
    assert job.total == 20 and job.label == "data.csv · Clean and validate"
    job = run_to_end(job)
    assert job.status == Job.Status.SUCCEEDED
    results = results_of(job)
    assert sorted(results) == list(range(3, 23)), "exactly the chosen row range"
    assert job.processed == 20 and job.failed == 0
    assert results[3].outputs["clean_name"] == "Person 2"
    assert results[3].outputs["clean_email"] == "p2@example.com"


def test_duplicates_point_at_the_first_row_with_the_same_key(user):
    sheet = make_sheet(user, contacts(20))
    job = run_to_end(sheet_job_submit(sheet=sheet, owner=user, processor="clean")[0])
    results = results_of(job)
    # Row n holds P{(n-1) % 7}: rows 1..7 are first occurrences, 8 repeats 1, 15 repeats 8's key.
    assert results[1].outputs.get("duplicate_of") in ("", None)
    assert results[8].outputs["duplicate_of"] == 1
    assert results[15].outputs["duplicate_of"] == 1
    assert results[14].outputs["duplicate_of"] == 7


def test_the_same_sheet_gets_one_active_job(user):
    sheet = make_sheet(user, contacts(5))
    first, created = sheet_job_submit(sheet=sheet, owner=user, processor="clean")
    again, again_created = sheet_job_submit(sheet=sheet, owner=user, processor="clean")
    assert created and again.pk == first.pk and not again_created


def llm_options(fake, **extra) -> dict:
    return {
        "base_url": fake.base_url,
        "api_key": "test",
        "categories": ",".join(CATEGORIES),
        **extra,
    }


def review_rows(n: int, wrong_every: int = 0, marker_every: int = 0) -> list[list[str]]:
    rows = [["id", "review"]]
    for i in range(n):
        text = f"Review {i}: my new {CATEGORIES[i % 3].lower()} works"
        if wrong_every and i % wrong_every == 0:
            text += " WRONG"
        if marker_every and i % marker_every == 1:
            text += " RATE-LIMITED"
        rows.append([str(i), text])
    return rows


def test_row_errors_and_retrying_only_the_failed_rows(user, fake_openai):
    fake_openai.categories = CATEGORIES
    sheet = make_sheet(user, review_rows(30))
    fake_openai.plan("Review 4:", [400])
    fake_openai.plan("Review 9:", [400])
    job = sheet_job_submit(
        sheet=sheet, owner=user, processor="llm", options=llm_options(fake_openai)
    )[0]
    job = run_to_end(job)
    assert job.status == Job.Status.SUCCEEDED and job.message == "Succeeded with 2 row errors"
    assert (job.processed, job.failed) == (30, 2)
    failed = RowResult.objects.filter(job=job, failed=True)
    assert sorted(failed.values_list("row_number", flat=True)) == [5, 10]
    assert all("400" in r.error for r in failed)
    calls_before = len(fake_openai.calls)

    job_retry(job=job, failed_rows=True)
    job = Job.objects.get(pk=job.pk)
    assert (job.processed, job.failed) == (28, 0), "the failed rows count as to do"
    job = run_to_end(job)
    assert job.status == Job.Status.SUCCEEDED and (job.processed, job.failed) == (30, 0)
    assert len(fake_openai.calls) - calls_before == 2, "only the two failed rows were sent again"
    assert results_of(job)[5].outputs["category"] == "Laptop"  # row 5 holds review 4
    assert RowResult.objects.filter(job=job).count() == 30


@pytest.mark.cluster
def test_three_llm_sheets_at_once_record_every_row_once_and_export_it(
    fake_openai,
    cluster_factory,
    user,  # the fake first: the workers allow it
):
    fake_openai.categories = CATEGORIES
    fake_openai.latency = 0.01
    fake_openai.error_fraction = 0.02
    fake_openai.retry_after = "0.1"
    for i in range(1, 2000, 97):
        fake_openai.plan(f"Review {i}:", [429, 429])
    cluster_factory(
        workers=2, CONVEYOR_HTTP_RETRY_BASE_SECONDS="0.05", CONVEYOR_HTTP_RETRY_MAX_SECONDS="0.2"
    )
    sheets = [
        make_sheet(user, review_rows(2000, wrong_every=250), f"reviews-{n}.csv") for n in range(3)
    ]
    jobs = [
        sheet_job_submit(
            sheet=s, owner=user, processor="llm", options=llm_options(fake_openai, concurrency=8)
        )[0]
        for s in sheets
    ]
    for job in jobs:
        wait_for(
            lambda j=job: Job.objects.get(pk=j.pk).is_terminal, timeout=180, what=f"job {job.pk}"
        )
    statuses = Counter(fake_openai_call.status for fake_openai_call in fake_openai.calls)
    assert statuses[429] >= 40 and statuses[500] > 0, statuses

    for job, sheet in zip(jobs, sheets, strict=True):
        job = Job.objects.get(pk=job.pk)
        assert job.status == Job.Status.SUCCEEDED, job.error
        assert (job.processed, job.failed) == (2000, 8), "the WRONG answers are the only errors"
        numbers = list(RowResult.objects.filter(job=job).values_list("row_number", flat=True))
        assert sorted(numbers) == list(range(1, 2001)), "every row exactly once"
        exported = list(
            csv.reader(io.StringIO("".join(export.csv_chunks(job, sheet)).lstrip("\ufeff")))
        )
        assert exported[0] == ["id", "review", "category", "tokens", "error"]
        assert len(exported) == 2001
        for row in exported[1:]:
            index = int(row[0])
            if index % 250 == 0:
                assert row[2] == "" and "Banana" in row[4]
            else:
                assert row[2] == CATEGORIES[index % 3] and row[4] == ""


@pytest.mark.cluster
def test_cancel_stops_in_flight_requests_and_keeps_what_was_committed(fake_openai, cluster, user):
    fake_openai.categories = CATEGORIES
    fake_openai.latency = 4.0  # answers still in flight when the cancel lands, even under load
    sheet = make_sheet(user, review_rows(400))
    job = sheet_job_submit(
        sheet=sheet, owner=user, processor="llm", options=llm_options(fake_openai, concurrency=4)
    )[0]
    wait_for(lambda: Job.objects.get(pk=job.pk).processed >= 8, timeout=60, what="some rows done")
    wait_for(
        lambda: fake_openai.in_flight >= 2 and Job.objects.get(pk=job.pk).lease_owner,
        timeout=10,
        what="a batch in flight on a worker",
    )
    job_cancel(job=job)
    wait_for(
        lambda: Job.objects.get(pk=job.pk).status == Job.Status.CANCELLED, timeout=5, what="cancel"
    )
    job = Job.objects.get(pk=job.pk)
    assert RowResult.objects.filter(job=job).count() == job.processed < 400
    wait_for(
        lambda: fake_openai.dropped > 0, timeout=10, what="the fake API to see requests aborted"
    )


def test_copy_processor_passes_the_chosen_columns_through(user):
    sheet = make_sheet(user, [["a", "b", "c"], ["1", "=2", "3"], ["4", "5", "6"]])
    job = run_to_end(
        sheet_job_submit(sheet=sheet, owner=user, processor="copy", columns=["b", "c"])[0]
    )
    assert job.params["output_columns"] == ["copy_b", "copy_c"]
    assert results_of(job)[1].outputs == {"copy_b": "=2", "copy_c": "3"}


def test_outputs_are_written_back_to_the_google_sheet(user, google_sheets, client):
    from sheets.io.importing import sheet_from_google

    sheet_id = "1BxiMVs0XRA5nFMdKvBdBZjgmUUqptlbs74OgvE2upms"
    rows = [["name", "email"], ["  Ada ", "ADA@example.com"], ["Bob", "bob@x"]]
    google_sheets.add_spreadsheet(sheet_id, "People", {"People": rows})
    sheet = sheet_from_google(url_or_id=sheet_id, owner=user)
    job = run_to_end(
        sheet_job_submit(sheet=sheet, owner=user, processor="clean", columns=["email"])[0]
    )
    client.force_login(user)
    response = client.post(f"/sheets/jobs/{job.pk}/write-back/")
    writer = Job.objects.get(kind="sheets.write_back")
    assert response["Location"] == f"/jobs/{writer.pk}/"
    writer = run_to_end(writer)
    assert writer.status == Job.Status.SUCCEEDED, writer.error
    values = google_sheets.values(sheet_id, "People")
    assert values[0][:3] == ["name", "email", "clean_email"]
    assert values[1][2] == "ada@example.com"
