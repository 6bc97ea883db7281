"""Every page figure true (issue #22, item 12): a job just started is not "still
running"; the sheet page's row counter, the job's progress and the results table agree
on a row range; the rate and ETA count rows worked in this job, reused answers apart;
a batch's "retry failed rows" says why a job that failed as a whole did not change."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from jobs.engine.runner import run_one_slice
from jobs.engine.services import Submission, batch_submit
from jobs.models import Job
from sheets.services import sheet_job_submit
from tests.jobs.factories import run_to_end as run_demo_to_end
from tests.sheets.factories import make_sheet, run_to_end
from tests.sheets.test_kinds import CATEGORIES, llm_options, review_rows

pytestmark = pytest.mark.django_db(transaction=True)


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def figure(page: str, label: str) -> str:
    """The text of a stat of the live panel: `<span>Rate</span><strong>12.3/s</strong>`."""
    found = re.search(rf'<span class="muted">{label}</span><strong[^>]*>([^<]*)</strong>', page)
    assert found, f"no {label} on the page"
    return found.group(1)


def test_a_job_just_started_and_watched_is_not_still_running_until_one_comes_back(user):
    alice = logged_in(user)
    sheet = make_sheet(user, [["a"], *[[str(i)] for i in range(10)]])
    started = alice.post(f"/sheets/{sheet.pk}/start/", {"processor": "clean", "mode": "watch"})
    assert started.status_code == 302 and started["Location"] == f"/sheets/{sheet.pk}/"
    job = Job.objects.get()
    Job.objects.filter(pk=job.pk).update(status=Job.Status.RUNNING, processed=1)

    watching = alice.get(started["Location"]).content.decode()
    assert 'id="current-job-live"' in watching and "10%" in watching
    assert "Still running" not in watching
    assert '<div id="sheet-job" class="watching">' in watching  # live updates: hidden too

    Job.objects.filter(pk=job.pk).update(processed=3)
    back = alice.get(f"/sheets/{sheet.pk}/").content.decode()
    assert "Still running, 30%" in back and 'class="watching"' not in back


def test_the_old_pages_re_read_before_the_redirect_does_not_take_the_watch_mark(user):
    # The page the start was posted from sees the new job's first push (a live panel it
    # has no place for) and re-reads itself with htmx, racing the redirect's page load.
    alice = logged_in(user)
    sheet = make_sheet(user, [["a"], *[[str(i)] for i in range(10)]])
    started = alice.post(f"/sheets/{sheet.pk}/start/", {"processor": "clean", "mode": "watch"})
    Job.objects.filter(owner=user).update(status=Job.Status.RUNNING, processed=1)

    alice.get(started["Location"], headers={"HX-Request": "true"})
    watching = alice.get(started["Location"]).content.decode()
    assert "Still running" not in watching
    assert '<div id="sheet-job" class="watching">' in watching


@pytest.mark.parametrize(
    ("start_row", "counter"),
    [(1, "Row {last} of 400"), (101, "Row {last} of rows 101–500")],
)
def test_the_row_counter_the_progress_and_the_table_agree_on_a_row_range(
    user, fake_openai, start_row, counter
):
    fake_openai.categories = CATEGORIES
    fake_openai.latency = 0.03  # 400 rows take 6 s or more; the slice ends after 2 s
    sheet = make_sheet(user, review_rows(1000))
    job = sheet_job_submit(
        sheet=sheet,
        owner=user,
        processor="llm",
        options=llm_options(fake_openai, concurrency=2),
        start_row=start_row,
        row_count=400,
    )[0]
    run_one_slice(job.pk)  # one slice: the job is still running, part done
    job = Job.objects.get(pk=job.pk)
    assert job.status == Job.Status.RUNNING and 50 < job.processed < 400

    page = logged_in(user).get(f"/sheets/{sheet.pk}/").content.decode()
    done = job.processed
    # The counter, then the pace while the job runs ("· 2 requests in flight, ...").
    assert f'<span class="message">{counter.format(last=start_row - 1 + done)} · ' in page
    assert figure(page, "Processed") == f"{done} / 400"
    assert f"All rows ({done})</a>" in page
    assert f"· {done} rows</span>" in page, "the results table's own count"


def test_rate_and_eta_count_the_rows_worked_not_the_answers_reused(user, fake_openai):
    fake_openai.categories = CATEGORIES
    fake_openai.latency = 0.05  # one row at a time: at most 20 rows a second arrive
    sheet = make_sheet(user, review_rows(400))
    options = llm_options(fake_openai, concurrency=1)
    first = sheet_job_submit(
        sheet=sheet, owner=user, processor="llm", options=options, row_count=30
    )
    assert run_to_end(first[0]).status == Job.Status.SUCCEEDED

    job = sheet_job_submit(sheet=sheet, owner=user, processor="llm", options=options)[0]
    run_one_slice(job.pk)  # 30 answers reused at once, then rows at 20/s at most, for 2 s
    job = Job.objects.get(pk=job.pk)
    assert job.status == Job.Status.RUNNING and job.processed > 30

    page = logged_in(user).get(f"/jobs/{job.pk}/").content.decode()
    rate = float(figure(page, "Rate").removesuffix("/s"))
    assert 0 < rate <= 20, "no faster than rows can arrive"
    eta = figure(page, "ETA")
    minutes = re.fullmatch(r"(?:(\d+) min )?(\d+(?:\.\d)?) s", eta)
    assert minutes, eta
    seconds = int(minutes.group(1) or 0) * 60 + float(minutes.group(2))
    assert seconds >= (400 - job.processed) * 0.05 - 1, "no sooner than the rows can be done"
    api = logged_in(user).get(f"/api/jobs/{job.pk}/").json()
    assert 0 < api["rate"] <= 20


def test_a_batch_retry_of_failed_rows_says_why_a_job_failed_as_a_whole_did_not_change(user):
    batch, [whole, fine] = batch_submit(
        owner=user,
        submissions=[
            Submission(kind="demo.count", params={"n": 5, "fail_at": 3}, owner=user),
            Submission(kind="demo.count", params={"n": 2}, owner=user),
        ],
    )
    assert run_demo_to_end(whole).status == Job.Status.FAILED
    assert run_demo_to_end(fine).status == Job.Status.SUCCEEDED

    body = logged_in(user).post(f"/api/batches/{batch.pk}/retry-failed/").json()
    assert body["changed"] == 0
    assert body["skipped"] == [
        f"Job #{whole.pk} failed as a whole, not row by row: it has no failed rows to "
        "retry. Retry resumes it from its last checkpoint.",
        f"Job #{fine.pk} has no failed rows to retry.",
    ]
