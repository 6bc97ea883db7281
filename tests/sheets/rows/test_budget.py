"""Budgets (sheets/rows/budget.py): an llm job with `budget_tokens` or `budget_usd`
pauses at its ceiling, saying so on the job, in the API and in a notification, having
sent no row after it (it overshoots by at most one request per row in flight); a resume
raises or lifts the budget (API, the form in the job's live panel on its page and its
sheet's, `conveyor resume ID --set NAME=VALUE`); the operator's monthly ceiling per user
holds across jobs."""

from __future__ import annotations

import json

import pytest

from jobs.models import Job, Notification
from jobs.web.live import job_page_fragment
from sheets.models import RowResult
from sheets.services import sheet_job_submit
from tests.jobs.cli.test_verbs import conveyor
from tests.sheets.factories import make_sheet, run_to_end
from tests.sheets.test_kinds import CATEGORIES, llm_options, review_rows

pytestmark = pytest.mark.django_db(transaction=True)

ROWS = 40
IN_FLIGHT = 2


@pytest.fixture
def fake(fake_openai):
    fake_openai.categories = CATEGORIES
    return fake_openai


def submit(user, fake, rows: int = ROWS, **options) -> Job:
    sheet = make_sheet(user, review_rows(rows))
    wanted = llm_options(fake, concurrency=IN_FLIGHT, **options)
    return sheet_job_submit(sheet=sheet, owner=user, processor="llm", options=wanted)[0]


def tokens(job: Job) -> int:
    return job.spent.get("prompt_tokens", 0) + job.spent.get("completion_tokens", 0)


def said(job: Job) -> list[str]:
    return list(job.events.filter(kind="state").order_by("pk").values_list("message", flat=True))


def post_json(client, url: str, body: dict):
    return client.post(url, data=json.dumps(body), content_type="application/json")


def test_a_token_budget_pauses_the_job_at_its_ceiling_and_says_so(user, fake, client):
    job = run_to_end(submit(user, fake, budget_tokens=300))
    assert job.status == Job.Status.PAUSED
    assert job.message.startswith("Budget reached: ")
    assert "of the job's budget_tokens of 300 tokens" in job.message
    per_request = tokens(job) / len(fake.calls)
    assert 300 <= tokens(job) < 300 + IN_FLIGHT * per_request * 1.5, "one request per row in flight"
    assert 0 < job.processed < ROWS
    assert len(fake.calls) == job.processed, "no row was sent after the ceiling"
    assert RowResult.objects.filter(job=job).count() == job.processed
    note = Notification.objects.get(user=user, job=job)
    assert "paused: Budget reached" in note.message
    client.force_login(user)
    seen = client.get(f"/api/jobs/{job.pk}/").json()
    assert seen["status"] == "paused" and seen["message"].startswith("Budget reached")


def test_resuming_raises_then_lifts_the_budget_and_every_row_is_answered_once(user, fake, client):
    job = run_to_end(submit(user, fake, budget_tokens=300))
    client.force_login(user)
    raised = post_json(client, f"/api/jobs/{job.pk}/resume/", {"budget_tokens": 600})
    assert raised.status_code == 200, raised.content
    assert raised.json()["params"]["options"]["budget_tokens"] == 600
    job = run_to_end(Job.objects.get(pk=job.pk))
    assert job.status == Job.Status.PAUSED and "600 tokens" in job.message
    assert f"Resumed by {user.username}: budget_tokens set to 600" in said(job)

    lifted = post_json(client, f"/api/jobs/{job.pk}/resume/", {"budget_tokens": None})
    assert lifted.status_code == 200, lifted.content
    job = run_to_end(Job.objects.get(pk=job.pk))
    assert job.status == Job.Status.SUCCEEDED and job.processed == ROWS
    assert len(fake.calls) == ROWS, "each row was sent once across the pauses"
    assert f"Resumed by {user.username}: budget_tokens lifted" in said(job)


def test_resuming_from_the_sheet_page_form_raises_the_budget(user, fake, client):
    job = run_to_end(submit(user, fake, budget_tokens=300))
    client.force_login(user)
    page = client.get(f"/sheets/{job.params['sheet_id']}/")
    assert b"Budget reached" in page.content
    assert f'action="/jobs/{job.pk}/resume/"'.encode() in page.content
    assert b'name="budget_tokens"' in page.content
    answer = client.post(f"/jobs/{job.pk}/resume/", {"budget_tokens": "", "budget_usd": ""})
    assert answer.status_code == 302
    job = run_to_end(Job.objects.get(pk=job.pk))
    assert job.status == Job.Status.SUCCEEDED and job.processed == ROWS


def test_the_cli_resumes_with_a_raised_then_a_lifted_budget(user, fake):
    job = run_to_end(submit(user, fake, budget_tokens=300))
    raised = conveyor("resume", str(job.pk), "--set", "budget_tokens=600", "--user", "alice")
    assert raised.code == 0, raised.err
    assert raised.out == (f"Job #{job.pk} is queued. Resumed by alice: budget_tokens set to 600.\n")
    job = run_to_end(Job.objects.get(pk=job.pk))
    assert job.status == Job.Status.PAUSED and "600 tokens" in job.message

    lifted = conveyor("resume", str(job.pk), "--set", "budget_tokens=", "--user", "alice", "--json")
    assert lifted.code == 0, lifted.err
    assert lifted.json()["status"] == "queued"
    job = run_to_end(Job.objects.get(pk=job.pk))
    assert job.status == Job.Status.SUCCEEDED and job.processed == ROWS
    assert len(fake.calls) == ROWS, "each row was sent once across the pauses"
    assert f"Resumed by {user.username}: budget_tokens lifted" in said(job)


@pytest.mark.parametrize(
    ("given", "error"),
    [
        ("budget_tokens=-5", "--set budget_tokens: Must be at least 1."),
        ("budget_tokens=lots", "--set budget_tokens: Enter a whole number."),
        ("budget_usd=5", "--set budget_usd: "),
        ("colour=red", "--set colour: unknown field; a resume of job #{pk} (sheets.process) "
         "may change budget_tokens, budget_usd."),
        ("budget_tokens", "--set takes NAME=VALUE, not 'budget_tokens'."),
    ],
)  # fmt: skip
def test_the_cli_refuses_a_bad_budget_with_one_line_and_the_job_stays_paused(
    user, fake, settings, given, error
):
    settings.CONVEYOR_LLM_MODEL = "test-model"
    job = run_to_end(submit(user, fake, budget_tokens=300))
    refused = conveyor("resume", str(job.pk), "--set", given, "--user", "alice")
    assert refused.code == 2
    assert refused.err.startswith(error.format(pk=job.pk)), refused.err
    assert "\n" not in refused.err.strip()
    if given == "budget_usd=5":
        assert "no price for test-model" in refused.err
    assert Job.objects.get(pk=job.pk).status == Job.Status.PAUSED


def test_the_job_page_and_its_pushed_panel_show_why_it_paused_and_the_budget_form(
    user, fake, client
):
    job = run_to_end(submit(user, fake, budget_tokens=300))
    client.force_login(user)
    for html in (client.get(f"/jobs/{job.pk}/").content.decode(), job_page_fragment(job)):
        banner = html[html.index("paused-banner") :]
        assert '<p class="paused-why">Paused: Budget reached: ' in banner
        assert f'action="/jobs/{job.pk}/resume/"' in banner
        assert 'name="budget_tokens" min="1" step="1" value="300"' in banner
    answer = client.post(f"/jobs/{job.pk}/resume/", {"budget_tokens": "", "budget_usd": ""})
    assert answer.status_code == 302
    assert "paused-banner" not in client.get(f"/jobs/{job.pk}/").content.decode()


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"budget_tokens": -5}, "budget_tokens", "Must be at least 1."),
        ({"budget_tokens": "lots"}, "budget_tokens", "Enter a whole number."),
        ({"budget_usd": 5}, "budget_usd", "no price for test-model"),
        ({"budget_usd": 5, "colour": "red"}, "colour", "unknown field"),
    ],
)
def test_a_resume_with_a_bad_budget_is_refused_and_the_job_stays_paused(
    user, fake, client, settings, body, field, message
):
    settings.CONVEYOR_LLM_MODEL = "test-model"
    job = run_to_end(submit(user, fake, budget_tokens=300))
    client.force_login(user)
    answer = post_json(client, f"/api/jobs/{job.pk}/resume/", body)
    assert answer.status_code == 400
    assert message in answer.json()["fields"][field]
    assert Job.objects.get(pk=job.pk).status == Job.Status.PAUSED


def test_a_usd_budget_needs_a_price_at_submit(user, fake, settings):
    settings.CONVEYOR_LLM_PRICES = {}
    sheet = make_sheet(user, review_rows(3))
    with pytest.raises(Exception, match="no price for") as caught:
        sheet_job_submit(
            sheet=sheet, owner=user, processor="llm", options=llm_options(fake, budget_usd=1)
        )
    assert "budget_usd" in str(caught.value)


def test_a_usd_budget_counts_at_the_operators_price(user, fake, settings):
    settings.CONVEYOR_LLM_PRICES = {"test-model": {"input": 1000.0, "output": 1000.0}}
    job = run_to_end(submit(user, fake, model="test-model", budget_usd=0.25))
    assert job.status == Job.Status.PAUSED
    assert "of the job's budget_usd of $0.25" in job.message
    assert 0.25 <= job.spent["cost_usd"] < 0.25 + IN_FLIGHT * 0.06


def test_the_monthly_ceiling_counts_every_job_of_the_user(user, other_user, fake, settings):
    settings.CONVEYOR_MONTHLY_BUDGET_TOKENS = 500
    first = run_to_end(submit(user, fake, rows=10))
    assert first.status == Job.Status.SUCCEEDED
    spent_first = tokens(first)
    second = run_to_end(submit(user, fake))
    assert second.status == Job.Status.PAUSED
    assert "of your monthly budget of 500 tokens" in second.message
    assert "next month" in second.message
    assert spent_first + tokens(second) >= 500
    others = run_to_end(submit(other_user, fake, rows=10))
    assert others.status == Job.Status.SUCCEEDED, "another user's month is their own"


def test_the_users_pages_show_the_month_against_the_ceiling(user, fake, settings, client):
    settings.CONVEYOR_MONTHLY_BUDGET_TOKENS = 100_000
    job = run_to_end(submit(user, fake, rows=5))
    client.force_login(user)
    expected = f"This month: {tokens(job):,} tokens of your 100,000 tokens monthly budget."
    for url in ("/sheets/", f"/sheets/{job.params['sheet_id']}/"):
        assert expected in client.get(url).content.decode(), url
