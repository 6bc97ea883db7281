"""web -> llm on the page text, as one chain on a sheet (the README's example): the
site's text reaches the prompt, and a second run costs no page and no answer."""

from __future__ import annotations

import json

from django.test import Client

from jobs.models import Job
from sheets.models import RowResult
from sheets.services import sheet_chain_submit
from tests.fakes.website import MAIN_TEXT
from tests.sheets.factories import make_sheet, run_to_end
from tests.sheets.processors.builtins.test_web import forget_hosts


def describe(call) -> str:
    """The fake model: reads the page text in the prompt."""
    widgets = "widgets" in call.user_message
    return json.dumps(
        {
            "activity": "makes widgets" if widgets else "unknown",
            "industry": "Manufacturing" if widgets else "unknown",
        }
    )


def test_web_then_llm_on_the_page_text_and_a_second_run_costs_nothing(
    user, fake_site, fake_openai, settings
):
    settings.CONVEYOR_WEB_ALLOW_PRIVATE = True
    forget_hosts(settings)
    fake_openai.structured = describe
    sheet = make_sheet(
        user,
        [["company", "website"], ["Acme", fake_site.url("/")], ["Plain", fake_site.url("/plain")]],
    )
    steps = [
        {"processor": "web", "options": {"url_column": "website", "outputs": "title, text"}},
        {
            "processor": "llm",
            "columns": "company, text",  # the web step's column
            "options": {
                "base_url": fake_openai.base_url,
                "model": "fake-model",
                "prompt": "What does this company do, in which industry? {company}: {text}",
                "fields": "activity, industry",
            },
        },
    ]

    def run_chain():
        return [run_to_end(job) for job in sheet_chain_submit(sheet=sheet, owner=user, steps=steps)]

    web_job, llm_job = run_chain()
    assert (web_job.status, llm_job.status) == ("succeeded", "succeeded")
    answers = {
        r.row_number: (r.outputs["activity"], r.outputs["industry"])
        for r in RowResult.objects.filter(job=llm_job)
    }
    assert answers == {1: ("makes widgets", "Manufacturing"), 2: ("unknown", "unknown")}
    assert MAIN_TEXT in fake_openai.calls[0].user_message + fake_openai.calls[1].user_message
    pages, calls = list(fake_site.requests), len(fake_openai.calls)

    again = run_chain()
    assert [job.status for job in again] == ["succeeded", "succeeded"]
    assert [(job.processed, job.worked_units) for job in again] == [(2, 0), (2, 0)]  # all reused
    assert (fake_site.requests, len(fake_openai.calls)) == (pages, calls)  # nothing fetched, paid


def test_through_the_api_an_llm_job_after_web_reads_its_text(
    user, fake_site, fake_openai, settings
):
    settings.CONVEYOR_WEB_ALLOW_PRIVATE = True
    forget_hosts(settings)
    fake_openai.structured = describe
    sheet = make_sheet(user, [["company", "website"], ["Acme", fake_site.url("/")]])
    client = Client()
    client.force_login(user)

    def submit(params: dict, after: list[int]) -> int:
        body = {"kind": "sheets.process", "params": {"sheet_id": sheet.pk, **params}}
        response = client.post("/api/jobs/", {**body, "after": after}, "application/json")
        assert response.status_code == 201, response.content
        return response.json()["id"]

    web_id = submit(
        {"processor": "web", "options": {"url_column": "website", "outputs": "text"}}, []
    )
    # The API checks a job's params without its `after`: the llm job can name `text`
    # once the web job has succeeded (the chain above submits both at once).
    assert run_to_end(Job.objects.get(pk=web_id)).status == "succeeded"
    llm_id = submit(
        {
            "processor": "llm",
            "columns": ["company", "text"],
            "options": {
                "base_url": fake_openai.base_url,
                "prompt": "What does {company} do? {text}",
                "fields": "activity, industry",
            },
        },
        [web_id],
    )
    assert run_to_end(Job.objects.get(pk=llm_id)).status == "succeeded"
    [answer] = RowResult.objects.filter(job_id=llm_id)
    assert (answer.outputs["activity"], answer.outputs["industry"]) == (
        "makes widgets",
        "Manufacturing",
    )
