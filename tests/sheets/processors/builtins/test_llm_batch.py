"""`llm` with mode=batch: rows through the fake's Batch API
(sheets/processors/builtins/llm/batch.py, sheets/rows/batch_mode.py)."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client

from jobs.engine.runner import run_one_slice
from jobs.engine.services import job_cancel, job_retry
from jobs.models import Job
from sheets.processors import get_processor
from sheets.services import sheet_job_submit
from sheets.web.forms import SheetParamsError
from tests.jobs.factories import fresh, run_to_end, status_of
from tests.sheets.factories import make_sheet
from tests.support.processes import wait_for

pytestmark = pytest.mark.django_db(transaction=True)
HEADER = ["name", "notes"]


@pytest.fixture(autouse=True)
def batch_settings(settings):
    settings.CONVEYOR_LLM_BASE_URL = ""
    settings.CONVEYOR_LLM_API_KEY = ""
    settings.CONVEYOR_LLM_MODEL = "test-model"
    settings.CONVEYOR_LLM_BATCH_ROWS = 4
    settings.CONVEYOR_LLM_BATCH_POLL_SECONDS = 0.05
    settings.CONVEYOR_LLM_PRICES = {"test-model": {"input": 1.0, "output": 2.0}}
    settings.REDIS_URL = ""
    return settings


def produce(count: int, fail: set[int] = frozenset()) -> list[list[str]]:
    kinds = ["green vegetable", "crisp fruit"]
    body = [
        [f"item {i}", "FAIL_IN_BATCH" if i in fail else kinds[i % 2]] for i in range(1, count + 1)
    ]
    return [HEADER, *body]


def submit(owner, fake_openai, sheet_rows, **options):
    sheet = make_sheet(owner, sheet_rows)
    chosen = {
        "base_url": fake_openai.base_url,
        "categories": "Fruit,Vegetable",
        "mode": "batch",
        **options,
    }
    job, _ = sheet_job_submit(sheet=sheet, owner=owner, processor="llm", options=chosen)
    return job


def slice_of(job: Job) -> Job:
    Job.objects.filter(pk=job.pk).update(run_after=None)
    run_one_slice(job.pk)
    return fresh(job)


def test_a_batch_job_answers_every_row_without_one_chat_request(
    user, fake_openai, fake_openai_batch
):
    fake_openai.categories = ["Fruit", "Vegetable"]
    job = run_to_end(submit(user, fake_openai, produce(10)))
    assert job.status == "succeeded", job.error
    assert fake_openai.calls == [], "no chat-completions request"
    assert len(fake_openai_batch.created) == 3  # 10 rows, 4 a batch
    results = {r.row_number: r for r in job.row_results.all()}
    assert sorted(results) == list(range(1, 11))
    assert {n: r.outputs["category"] for n, r in results.items()} == {
        n: "Fruit" if n % 2 else "Vegetable" for n in range(1, 11)
    }
    line = fake_openai_batch.created[0].lines[0]
    assert line["url"] == "/v1/chat/completions" and line["custom_id"] == "row-1"
    assert line["body"]["model"] == "test-model"
    spent = job.spent
    assert spent["requests"] == 10
    live_price = spent["prompt_tokens"] * 1.0 + spent["completion_tokens"] * 2.0
    assert spent["cost_usd"] == pytest.approx(live_price / 1_000_000 / 2)  # half price


def test_typed_fields_in_batch_mode_are_checked_as_live_without_a_repair(
    user, fake_openai, fake_openai_batch
):
    fake_openai.structured = lambda call: {
        "city": "Paris",
        "headcount": "about fifty" if "vague" in call.user_message else "1,200",
    }
    sheet_rows = [["name", "notes"], ["Acme", "exact"], ["Bolt", "vague"]]
    job = run_to_end(
        submit(user, fake_openai, sheet_rows, categories="", fields="city, headcount:int")
    )
    assert (job.status, job.processed, job.failed) == ("succeeded", 2, 1)
    [batch] = fake_openai_batch.created
    assert batch.lines[0]["body"]["response_format"]["type"] == "json_schema"
    acme, bolt = job.row_results.order_by("row_number")
    assert {k: acme.outputs[k] for k in ("city", "headcount")} == {
        "city": "Paris",
        "headcount": 1200,
    }
    assert bolt.error.startswith("headcount: ") and "about fifty" in bolt.error
    assert len(batch.lines) == 2 and fake_openai.calls == [], "no repair request"


def test_rows_answered_before_are_not_sent_and_error_lines_are_row_errors(
    user, fake_openai, fake_openai_batch
):
    fake_openai.categories = ["Fruit", "Vegetable"]
    first = run_to_end(submit(user, fake_openai, produce(6)))
    assert first.status == "succeeded"
    sent_before = sum(len(b.lines) for b in fake_openai_batch.created)
    again = run_to_end(submit(user, fake_openai, produce(8, fail={7})))
    assert again.status == "succeeded" and again.failed == 1
    new_lines = [line for b in fake_openai_batch.created for line in b.lines][sent_before:]
    assert [line["custom_id"] for line in new_lines] == ["row-7", "row-8"]
    failed = again.row_results.get(row_number=7)
    assert failed.error == ("HTTP 400 from the API (in the batch): Invalid request in the batch.")
    assert again.row_results.filter(reused=True).count() == 6


def test_retrying_failed_rows_sends_only_them_in_a_new_batch(user, fake_openai, fake_openai_batch):
    fake_openai.categories = ["Fruit", "Vegetable"]
    job = run_to_end(submit(user, fake_openai, produce(6, fail={2, 5}), reuse="no"))
    assert job.status == "succeeded" and job.failed == 2
    before = len(fake_openai_batch.created)
    job = run_to_end(job_retry(job=job, failed_rows=True))
    [retry] = fake_openai_batch.created[before:]
    assert [line["custom_id"] for line in retry.lines] == ["row-2", "row-5"]
    assert job.status == "succeeded" and job.processed == 6 and job.failed == 2


def test_a_batch_the_provider_fails_fails_its_rows_saying_why(user, fake_openai, fake_openai_batch):
    fake_openai_batch.refuse = "The model test-model is not available for batch."
    job = run_to_end(submit(user, fake_openai, produce(3)))
    assert (job.status, job.processed, job.failed) == ("succeeded", 3, 3)
    errors = set(job.row_results.values_list("error", flat=True))
    assert errors == {"the batch failed: The model test-model is not available for batch."}


def test_the_job_shows_the_batch_while_it_waits_without_holding_a_worker(
    user, fake_openai, fake_openai_batch, settings
):
    settings.CONVEYOR_LLM_BATCH_ROWS = 100
    fake_openai_batch.hold = True
    job = slice_of(submit(user, fake_openai, produce(5)))
    assert job.status == "retrying" and job.lease_owner == ""
    assert job.message == "OpenAI batch: validating, 0 of 5 answered"
    job = slice_of(job)
    assert job.message == "OpenAI batch: in progress, 2 of 5 answered"
    assert job.attempts == 0
    client = Client()
    client.force_login(user)
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert "OpenAI batch: in progress, 2 of 5 answered" in page
    fake_openai_batch.hold = False
    job = run_to_end(job)
    assert job.status == "succeeded" and job.processed == 5
    assert len(fake_openai_batch.created) == 1


def test_cancelling_the_job_cancels_its_batch(user, fake_openai, fake_openai_batch):
    fake_openai_batch.hold = True
    job = slice_of(submit(user, fake_openai, produce(3)))
    [batch] = fake_openai_batch.created
    job_cancel(job=job)
    assert fresh(job).status == "cancelled"
    assert fake_openai_batch.cancelled == [batch.id]


def test_a_budget_sends_no_further_batch_and_pauses_the_job(
    user, fake_openai, fake_openai_batch, settings
):
    settings.CONVEYOR_LLM_BATCH_OPEN = 1
    job = run_to_end(submit(user, fake_openai, produce(10), budget_tokens=10))
    assert job.status == "paused" and job.message.startswith("Budget reached: ")
    assert len(fake_openai_batch.created) == 1 and job.processed == 4


def test_the_form_says_what_batch_mode_does(fake_openai):
    notice = get_processor("llm").notice({"base_url": fake_openai.base_url, "mode": "batch"})
    assert "Batch mode: through its Batch API, at half the price, answered within 24" in notice


def test_an_endpoint_without_a_batch_api_is_refused_at_submit(user, fake_openai):
    with pytest.raises(SheetParamsError) as caught:
        submit(user, fake_openai, produce(2))
    assert "has no Batch API" in str(caught.value)
    client = Client()
    client.force_login(user)
    params = {
        "sheet_id": make_sheet(user, produce(2)).pk,
        "processor": "llm",
        "options": {"base_url": fake_openai.base_url, "prompt": "{name}", "mode": "batch"},
    }
    body = json.dumps({"kind": "sheets.process", "params": params})
    answer = client.post("/api/jobs/", body, content_type="application/json")
    assert answer.status_code == 400
    assert f"{fake_openai.base_url} has no Batch API" in json.dumps(answer.json())
    assert not Job.objects.exists() and fake_openai.calls == []


@pytest.mark.cluster
def test_a_cluster_killed_while_creating_a_batch_makes_no_second_one(
    cluster_factory, user, fake_openai, fake_openai_batch
):
    fake_openai.categories = ["Fruit", "Vegetable"]
    fake_openai_batch.late_creates = {2: 30.0}  # the second batch is made, its id never told
    engine = {"CONVEYOR_LLM_BATCH_ROWS": "4", "CONVEYOR_LLM_BATCH_POLL_SECONDS": "0.2"}
    first = cluster_factory(workers=1, **engine)
    job = submit(user, fake_openai, produce(10))
    wait_for(lambda: len(fake_openai_batch.created) >= 2, timeout=60, what="a second batch")
    first.kill()  # kill -9, the worker waiting for the create's answer
    cluster_factory(workers=1, **engine)
    wait_for(lambda: status_of(job) == "succeeded", timeout=90, what="the job to finish")
    chunks = [b.metadata["conveyor_rows"] for b in fake_openai_batch.created]
    assert sorted(chunks) == ["1-4", "5-8", "9-10"], "exactly one batch per chunk"
    job = fresh(job)
    assert job.processed == 10 and job.failed == 0
    assert sorted(job.row_results.values_list("row_number", flat=True)) == list(range(1, 11))
    assert fake_openai.calls == []


def test_the_estimate_of_a_batch_run_is_at_the_batch_price(user, fake_openai, fake_openai_batch):
    sheet = make_sheet(user, produce(6))
    client = Client()
    client.force_login(user)

    def cost(mode: str) -> float:
        form = {
            "processor": "llm",
            "opt_categories": "Fruit, Vegetable",
            "opt_base_url": fake_openai.base_url,
            "opt_model": "test-model",
            "opt_mode": mode,
            "start_row": "1",
            "priority": "normal",
        }
        page = client.post(f"/sheets/{sheet.pk}/llm-preview/", form).content.decode()
        return float(re.search(r'class="estimate-cost">\$([\d.]+)<', page)[1])

    assert cost("batch") == pytest.approx(cost("live") / 2, abs=0.0001)
