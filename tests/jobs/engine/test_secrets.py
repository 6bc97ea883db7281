"""Secrets users type are encrypted at rest, reach only the worker that runs the job,
and never end up in stored text: errors, row errors, events, exports."""

from __future__ import annotations

import json

import pytest

from jobs.engine import secrets
from jobs.engine.redact import MASK
from jobs.models import Job, JobEvent
from sheets.io import export
from sheets.run import SheetParamsError
from sheets.services import sheet_job_submit
from tests.sheets.factories import make_sheet, run_to_end

pytestmark = pytest.mark.django_db(transaction=True)
ROWS = [["name", "notes"], ["Apple", "a fruit"], ["Carrot", "a vegetable"]]


@pytest.fixture
def llm_sheet(user, settings, fake_openai):
    settings.CONVEYOR_LLM_API_KEY = ""
    settings.CONVEYOR_HTTP_RETRY_BASE_SECONDS = 0.01
    fake_openai.categories = ["Fruit", "Vegetable"]
    return make_sheet(user, ROWS)


def submit(sheet, user, fake, key: str) -> Job:
    options = {"base_url": fake.base_url, "api_key": key, "categories": "Fruit,Vegetable"}
    job, _ = sheet_job_submit(sheet=sheet, owner=user, processor="llm", options=options)
    return job


def test_a_typed_key_is_stored_encrypted_and_still_reaches_the_api(llm_sheet, user, fake_openai):
    fake_openai.api_key = "sk-test-secret-1234"
    job = submit(llm_sheet, user, fake_openai, "sk-test-secret-1234")
    stored = Job.objects.get(pk=job.pk).params
    assert stored["options"]["api_key"].startswith("enc:")
    assert "sk-test-secret-1234" not in json.dumps(stored)
    job = run_to_end(job)
    assert (job.status, job.failed) == ("succeeded", 0)


def test_an_upstream_error_that_echoes_the_key_is_stored_masked(llm_sheet, user, fake_openai):
    fake_openai.api_key = "sk-the-right-key"
    fake_openai.echo_key = True
    job = run_to_end(submit(llm_sheet, user, fake_openai, "sk-typed-wrong-9876"))
    # A refused key fails the job once (not row by row), with the provider's words, masked.
    assert job.status == Job.Status.FAILED and "Incorrect API key provided" in job.error
    assert MASK in job.error and "sk-typed-wrong-9876" not in job.error
    csv_text = "".join(export.csv_chunks(job, llm_sheet))
    events = " ".join(JobEvent.objects.filter(job=job).values_list("message", flat=True))
    assert "sk-typed-wrong-9876" not in csv_text + events + job.error + job.traceback


def test_a_key_with_a_newline_is_refused_before_any_job_exists(llm_sheet, user, fake_openai):
    with pytest.raises(SheetParamsError) as refused:
        submit(llm_sheet, user, fake_openai, "sk-abc\nInjected: yes")
    assert "api_key" in refused.value.errors and "sk-abc" not in str(refused.value)
    assert not Job.objects.exists()


def test_sealed_params_open_again_and_scrub_masks_the_servers_key(settings):
    settings.CONVEYOR_LLM_API_KEY = "sk-server-key-5555"
    sealed = secrets.seal({"options": {"api_key": "sk-mine-0001", "model": "m"}})
    assert sealed["options"]["model"] == "m" and sealed["options"]["api_key"] != "sk-mine-0001"
    assert secrets.unseal(sealed) == {"options": {"api_key": "sk-mine-0001", "model": "m"}}
    text = "401: key sk-mine-0001 rejected; server key sk-server-key-5555"
    assert secrets.scrub(text, {"sk-mine-0001"}) == f"401: key {MASK} rejected; server key {MASK}"


def test_a_typed_value_that_looks_sealed_is_sealed_all_the_same():
    sealed = secrets.seal({"api_key": "enc:not-really-sealed"})
    assert sealed["api_key"] != "enc:not-really-sealed"
    assert secrets.unseal(sealed) == {"api_key": "enc:not-really-sealed"}


def test_a_sealed_key_copied_from_another_job_is_never_opened_for_the_copier(
    llm_sheet, user, other_user, fake_openai
):
    alices = submit(llm_sheet, user, fake_openai, "sk-alice-secret-0001")
    copied = Job.objects.get(pk=alices.pk).params["options"]["api_key"]
    bobs_sheet = make_sheet(other_user, ROWS)
    job = run_to_end(submit(bobs_sheet, other_user, fake_openai, copied))
    sent = {call.headers.get("Authorization", "") for call in fake_openai.calls}
    assert sent == {f"Bearer {copied}"}  # the text bob typed, as typed
    assert job.status == "succeeded"
