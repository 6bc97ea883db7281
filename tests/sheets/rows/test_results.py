"""Every size a user can set has a ceiling, and outputs are bounded: an over-long
answer becomes a row error that says so, and `web` refuses a huge `max_bytes`."""

from __future__ import annotations

import pytest

from sheets.run import SheetParamsError
from sheets.services import sheet_job_submit
from tests.jobs.factories import run_to_end
from tests.sheets.factories import make_sheet

pytestmark = pytest.mark.django_db(transaction=True)


def run_echo_job(user, settings, fake_openai, name: str, answer: str):
    """An llm job over the rows "Short" and `name`: the fake echoes the prompt, but
    answers `answer` for `name`. Returns the finished job and its results by row."""
    settings.CONVEYOR_LLM_API_KEY = ""
    fake_openai.style = lambda text: answer if name in text else text
    fake_openai.categories = []
    sheet = make_sheet(user, [["name"], ["Short"], [name]])
    options = {"base_url": fake_openai.base_url, "prompt": "Repeat {name}"}
    job, _ = sheet_job_submit(sheet=sheet, owner=user, processor="llm", options=options)
    job = run_to_end(job)
    return job, {r.row_number: r for r in job.row_results.all()}


def test_an_answer_longer_than_a_cell_is_a_row_error_that_says_so(user, settings, fake_openai):
    settings.CONVEYOR_MAX_OUTPUT_CHARS = 1000
    job, results = run_echo_job(user, settings, fake_openai, "Long", "x" * 5000)
    assert job.failed == 1 and not results[1].failed
    assert "holds 5,000 characters; the most stored is 1,000" in results[2].error
    assert results[2].outputs == {}


def test_web_refuses_a_max_bytes_above_the_ceiling(user, settings):
    settings.CONVEYOR_WEB_MAX_BYTES = 1_000_000
    sheet = make_sheet(user, [["url"], ["example.com"]])
    with pytest.raises(SheetParamsError) as refused:
        sheet_job_submit(
            sheet=sheet, owner=user, processor="web", options={"max_bytes": "1200000000"}
        )
    assert "at most 1,000,000 bytes" in refused.value.errors["max_bytes"]


def test_an_api_answer_over_the_byte_ceiling_is_a_row_error_read_no_further(
    user, settings, fake_openai
):
    settings.CONVEYOR_LLM_MAX_RESPONSE_BYTES = 100_000
    job, results = run_echo_job(user, settings, fake_openai, "Huge", "y" * 400_000)
    assert job.failed == 1 and results[1].outputs["answer"] == "echo: Repeat Short"
    assert results[2].error == (
        "the API's answer is larger than 100,000 bytes (CONVEYOR_LLM_MAX_RESPONSE_BYTES)"
    )
    assert len(fake_openai.calls) == 2  # a paid answer, not asked again
