"""Before spending money on an `llm` job: the rendered prompt of a row, a trial on five
rows (a real job: answers and tokens), an estimate of the whole run calibrated by that
trial, and the tokens and cost a job actually spent (sheets/rows/estimate.py, the views)."""

from __future__ import annotations

import json
import re

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from config.settings import env_prices
from jobs.models import Job
from jobs.serializers import job_as_dict
from sheets.models import RowResult
from sheets.services import sheet_job_submit
from tests.sheets.factories import make_sheet, run_to_end
from tests.support.processes import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

PRICES = {"test-model": {"input": 2.0, "output": 8.0}}  # USD per million tokens
SECRET = "sk-preview-secret-4242"
PROMPT = "Which category fits {name}? Notes: {notes}"


def produce(count: int) -> list[list[str]]:
    """Rows whose notes vary in length, so that prompt sizes differ from row to row."""
    words = ["crisp", "sweet", "green", "round", "fresh", "local", "ripe", "crunchy"]
    body = [
        [f"Apple {i}", " ".join(words[: 1 + i % len(words)]) + f" item {i}"]
        for i in range(1, count + 1)
    ]
    return [["name", "notes"], *body]


@pytest.fixture
def llm(settings, fake_openai):
    settings.CONVEYOR_LLM_BASE_URL = ""
    settings.CONVEYOR_LLM_API_KEY = ""
    settings.CONVEYOR_LLM_MODEL = "test-model"
    settings.CONVEYOR_LLM_PRICES = {}
    fake_openai.categories = ["Fruit", "Vegetable"]
    return fake_openai


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def form(fake, **fields) -> dict[str, str]:
    """The sheet page's start form with the llm processor chosen, as the browser posts it."""
    return {
        "processor": "llm",
        "opt_prompt": PROMPT,
        "opt_categories": "Fruit, Vegetable",
        "opt_base_url": fake.base_url,
        "opt_model": "test-model",
        "opt_api_key": SECRET,
        "start_row": "1",
        "priority": "normal",
        **fields,
    }


def preview(client, sheet, fake, **fields):
    return client.post(f"/sheets/{sheet.pk}/llm-preview/", form(fake, **fields))


def figure(page: str, name: str) -> int:
    found = re.search(rf'class="estimate-{name}">([\d,]+)<', page)
    assert found, f"no {name} in the estimate"
    return int(found[1].replace(",", ""))


def test_preview_shows_the_exact_messages_for_a_row_and_never_the_key(llm, user):
    sheet = make_sheet(user, produce(12))
    alice = client_for(user)
    page = preview(alice, sheet, llm).content.decode()
    assert "Prompt for row 1" in page
    assert "Reply with exactly one of these categories and nothing else: Fruit, Vegetable." in page
    assert "Which category fits Apple 1? Notes: crisp sweet item 1" in page
    other = preview(alice, sheet, llm, preview_row="3").content.decode()
    assert "Prompt for row 3" in other and "Notes: crisp sweet green round item 3" in other
    assert "Apple 1?" not in other
    for response in (page, other):
        assert SECRET not in response
    assert RowResult.objects.count() == 0 and not llm.calls, "a preview sends nothing"


def test_a_rough_estimate_without_a_trial_says_so_and_shows_no_cost_without_a_price(llm, user):
    sheet = make_sheet(user, produce(12))
    page = preview(client_for(user), sheet, llm).content.decode()
    assert "Estimate for rows 1–12 (12 rows, model test-model)" in page
    assert "A rough estimate: prompt tokens are characters ÷ 4" in page
    assert "No price is set for test-model" in page
    assert figure(page, "requests") == 12
    assert figure(page, "completion-tokens") == 12 * 3  # "Vegetable" is 9 chars: 3 tokens
    assert figure(page, "total-tokens") == figure(page, "prompt-tokens") + 36


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"opt_prompt": "", "opt_categories": ""}, "Write a prompt, or give categories"),
        ({"opt_prompt": "About {colour}"}, "The prompt uses {colour}, which is not a column"),
        ({"opt_prompt": "Broken {name"}, "Unmatched { or } in the prompt"),
        ({"opt_base_url": "http://169.254.169.254/v1"}, "only sends rows to the LLM endpoints"),
        ({"opt_temperature": "9"}, "Must be at most 2."),
        ({"preview_row": "99"}, "Preview row must be between 1 and 12."),
        ({"preview_row": "two"}, "Preview row must be between 1 and 12."),
        ({"start_row": "40"}, "Start row must be between 1 and 12."),
        ({"processor": "clean"}, "The prompt preview is for the LLM processor."),
    ],
)
def test_bad_input_gets_the_forms_message_and_a_400(llm, user, fields, message):
    sheet = make_sheet(user, produce(12))
    response = preview(client_for(user), sheet, llm, **fields)
    assert response.status_code == 400
    page = response.content.decode()
    assert message in page and 'id="preview-errors"' in page
    assert SECRET not in page


def test_a_trial_with_bad_options_is_refused_like_a_start(llm, user):
    sheet = make_sheet(user, produce(12))
    response = client_for(user).post(f"/sheets/{sheet.pk}/trial/", form(llm, opt_prompt="{x}"))
    assert response.status_code == 400
    assert "The prompt uses {x}, which is not a column" in response.content.decode()
    assert not Job.objects.exists()


def test_nobody_previews_or_tries_someone_elses_sheet(llm, user, other_user):
    sheet = make_sheet(user, produce(12))
    bob = client_for(other_user)
    assert preview(bob, sheet, llm).status_code == 404
    assert bob.post(f"/sheets/{sheet.pk}/trial/", form(llm)).status_code == 404
    assert not Job.objects.exists() and not llm.calls


def test_tokens_of_an_answer_outside_the_categories_are_still_counted(llm, user, settings):
    settings.CONVEYOR_LLM_PRICES = PRICES
    sheet = make_sheet(user, [["name", "notes"], ["Pear", "sweet"], ["WRONG", "odd"]])
    options = {"base_url": llm.base_url, "categories": "Fruit, Vegetable"}
    job = run_to_end(sheet_job_submit(sheet=sheet, owner=user, processor="llm", options=options)[0])
    assert (job.processed, job.failed) == (2, 1)
    reported = [call for call in llm.calls if call.status == 200]
    prompt = sum(sum(len(m["content"].split()) for m in c.body["messages"]) for c in reported)
    assert job.spent["requests"] == 2 and job.spent["prompt_tokens"] == prompt
    assert job.spent["completion_tokens"] == 2  # "Fruit", "Banana"
    assert job.spent["cost_usd"] == pytest.approx((prompt * 2 + 2 * 8) / 1e6)
    failed = RowResult.objects.get(job=job, failed=True)
    assert failed.usage["completion_tokens"] == 1 and "Banana" in failed.error


@pytest.mark.cluster
def test_a_trial_shows_five_answers_and_tokens_then_calibrates_the_estimate_of_the_run(
    llm, cluster_factory, user, settings
):
    settings.CONVEYOR_LLM_PRICES = PRICES
    cluster_factory(workers=1, CONVEYOR_LLM_PRICES=json.dumps(PRICES))
    sheet = make_sheet(user, produce(40))
    alice = client_for(user)

    response = alice.post(f"/sheets/{sheet.pk}/trial/", form(llm))
    trial = Job.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/sheets/{sheet.pk}/"
    assert trial.params["trial"] is True and trial.total == 5
    wait_for(lambda: Job.objects.get(pk=trial.pk).is_terminal, timeout=20, what="the trial")
    trial = Job.objects.get(pk=trial.pk)
    assert trial.status == Job.Status.SUCCEEDED and len(llm.calls) == 5
    assert SECRET not in json.dumps(trial.params)

    page = alice.get(f"/sheets/{sheet.pk}/").content.decode()
    assert 'id="trial-notice"' in page and "trial on 5 rows" in page
    answers = RowResult.objects.filter(job=trial).order_by("row_number")
    assert [r.row_number for r in answers] == [1, 2, 3, 4, 5]
    for result in answers:
        assert result.outputs["category"] == "Fruit" and result.outputs["tokens"] > 0
        assert f'data-row="{result.row_number}"' in page
    spent = trial.spent
    assert spent["requests"] == 5
    assert spent["prompt_tokens"] + spent["completion_tokens"] == sum(
        r.outputs["tokens"] for r in answers
    )
    assert f'class="spent-prompt-tokens">{spent["prompt_tokens"]:,}<' in page
    assert 'class="spent-cost-usd">$0.0' in page

    estimate = preview(alice, sheet, llm).content.decode()
    assert "Calibrated from the tokens the API reported for 5 rows" in estimate
    assert "5 rows answered before with these options are reused at no cost" in estimate
    assert figure(estimate, "requests") == 35
    assert re.search(r'class="estimate-cost">\$0\.\d{4}<', estimate)
    expected = figure(estimate, "total-tokens")

    alice.post(f"/sheets/{sheet.pk}/start/", form(llm, mode="watch"))
    full = Job.objects.exclude(pk=trial.pk).get()
    wait_for(lambda: Job.objects.get(pk=full.pk).is_terminal, timeout=20, what="the full run")
    full = Job.objects.get(pk=full.pk)
    assert full.status == Job.Status.SUCCEEDED and full.processed == 40
    assert len(llm.calls) == 5 + 35, "the trial's rows were not paid for twice"
    assert full.result["reused"] == 5 and full.spent["requests"] == 35
    spent_tokens = full.spent["prompt_tokens"] + full.spent["completion_tokens"]
    assert abs(expected - spent_tokens) <= 0.2 * spent_tokens, (expected, spent_tokens)

    shown = alice.get(f"/api/jobs/{full.pk}/").json()
    assert shown["spent"]["prompt_tokens"] == full.spent["prompt_tokens"]
    assert shown["spent"]["cost_usd"] == pytest.approx(
        (full.spent["prompt_tokens"] * 2 + full.spent["completion_tokens"] * 8) / 1e6
    )
    assert job_as_dict(full)["spent"] == shown["spent"]
    job_page = alice.get(f"/jobs/{full.pk}/").content.decode()
    assert 'class="spent-completion-tokens">35<' in job_page and "Cost" in job_page


@pytest.mark.parametrize(
    "value",
    ['{"m": 3}', '{"m": {"input": 1}}', '{"m": {"input": -1, "output": 2}}', "not json", "[]"],
)
def test_a_malformed_price_setting_stops_start_up_with_a_message(monkeypatch, value):
    monkeypatch.setenv("CONVEYOR_LLM_PRICES", value)
    with pytest.raises(ImproperlyConfigured, match="CONVEYOR_LLM_PRICES must be JSON like"):
        env_prices("CONVEYOR_LLM_PRICES")
    monkeypatch.setenv("CONVEYOR_LLM_PRICES", '{"m": {"input": 0.15, "output": 1}}')
    assert env_prices("CONVEYOR_LLM_PRICES") == {"m": {"input": 0.15, "output": 1.0}}
