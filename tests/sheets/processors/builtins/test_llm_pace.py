"""How the `llm` processor paces itself (sheets/processors/pacing.py): `concurrency=auto`
finds the limit a fake API enforces and says in its headers, three sheets share it,
`tpm` caps tokens, a breaker stops jobs while the API is down and a 401 fails a job once.
Speed is the benchmark's business (bench/llm.py): these tests assert what the server saw."""

from __future__ import annotations

import threading
import time

import pytest

from jobs.engine.runner import run_one_slice
from jobs.models import Job
from sheets.processors import RowStream, get_processor
from sheets.processors.pacing import parse_duration
from sheets.services import sheet_job_submit
from tests.jobs.factories import fresh
from tests.sheets.factories import make_sheet
from tests.support.processes import wait_for

LLM = get_processor("llm")
COLUMNS = ["name", "notes"]


@pytest.fixture(autouse=True)
def llm_settings(settings):
    settings.CONVEYOR_LLM_BASE_URL = ""
    settings.CONVEYOR_LLM_API_KEY = ""
    settings.CONVEYOR_LLM_MODEL = "test-model"
    settings.CONVEYOR_LLM_MAX_ATTEMPTS = 4
    settings.CONVEYOR_HTTP_RETRY_BASE_SECONDS = 0.02
    settings.CONVEYOR_HTTP_RETRY_MAX_SECONDS = 5.0
    settings.CONVEYOR_LLM_RPM = {}
    settings.CONVEYOR_LLM_TPM = {}
    settings.REDIS_URL = ""
    return settings


def options_for(fake, **raw) -> dict:
    return LLM.validate_options({"base_url": fake.base_url, "prompt": "Hi {name}", **raw}, COLUMNS)


def rows(n: int, tag: str = "") -> list[tuple[int, dict[str, str]]]:
    return [(i, {"name": f"Apple {tag}{i}", "notes": "fruit"}) for i in range(1, n + 1)]


def stream_all(options: dict, batch: list[tuple[int, dict[str, str]]], seen=None) -> list:
    """The rows through a RowStream, as a sheet job runs them; their outcomes. `seen`
    gets the rows the stream allowed in flight, each time it was looked at."""
    outcomes: list = []
    with RowStream(LLM, options, row_timeout=30) as stream:
        for number, row in batch:
            stream.submit(number, row)
        deadline = time.monotonic() + 60
        while len(outcomes) < len(batch) and time.monotonic() < deadline:
            outcomes += stream.collect(timeout=0.2)
            assert stream.halted is None
            if seen is not None:
                seen.append(stream.concurrency)
    return outcomes


def test_reset_headers_are_read_in_every_unit_providers_use():
    assert parse_duration("1s") == 1.0
    assert parse_duration("6m0s") == 360.0
    assert parse_duration("20ms") == pytest.approx(0.02)
    assert parse_duration("1h2m3.5s") == 3723.5
    assert parse_duration("2") == 2.0
    assert parse_duration("soon") is None
    assert parse_duration("") is None


def test_concurrency_is_auto_by_default_and_a_number_pins_it(fake_openai, settings):
    assert options_for(fake_openai)["concurrency"] == "auto"
    assert options_for(fake_openai, concurrency=" AUTO ")["concurrency"] == "auto"
    assert options_for(fake_openai, concurrency="12")["concurrency"] == 12
    assert options_for(fake_openai, concurrency=7)["concurrency"] == 7


def test_auto_raises_requests_in_flight_up_to_the_ceiling(fake_openai, settings):
    settings.CONVEYOR_LLM_MAX_CONCURRENCY = 12
    fake_openai.latency = 0.1
    allowed: list[int] = []
    outcomes = stream_all(options_for(fake_openai), rows(80), allowed)
    assert [o.error for o in outcomes if o.error] == []
    # It starts with 4 and grows while the answers come back: 12, never more (how many
    # the server sees at once also depends on how busy this machine is).
    assert max(allowed) == 12
    assert fake_openai.max_in_flight <= 12


@pytest.mark.parametrize(
    "store",
    ["memory", pytest.param("database", marks=pytest.mark.django_db(transaction=True)), "redis"],
)
def test_three_sheets_at_once_share_the_limit_with_almost_no_429(
    fake_openai, settings, request, store
):
    if store == "redis":
        settings.REDIS_URL = request.getfixturevalue("redis_url")
    settings.CONVEYOR_PACE_STORE = store
    # A strict limit (a bucket of one second's worth, not OpenAI's whole minute): any
    # burst beyond the pace is answered 429.
    fake_openai.rpm_limit = 1200
    fake_openai.limit_window = 1.0
    fake_openai.latency = 0.05
    options = options_for(fake_openai)
    results: list[list] = []
    threads = [
        threading.Thread(target=lambda tag=tag: results.append(stream_all(options, rows(30, tag))))
        for tag in "abc"
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(len(result) for result in results) == [30, 30, 30]
    assert [o.error for result in results for o in result if o.error] == []
    assert fake_openai.limited <= 0.02 * len(fake_openai.calls)


def test_tokens_per_minute_cap_the_pace(fake_openai):
    fake_openai.tpm_limit = 6000  # its bucket holds one second's worth: 100 tokens
    fake_openai.limit_window = 1.0
    outcomes = stream_all(options_for(fake_openai, tpm="5000"), rows(12))
    assert [o.error for o in outcomes if o.error] == []
    assert fake_openai.limited == 0
    # A request counts its estimate (prompt / 4 + max tokens: 19 here, what the fake
    # counts too): 12 of them at 5,000 a minute span at least 11 x 19 x 60 / 5000 s.
    starts = sorted(call.started for call in fake_openai.calls)
    assert starts[-1] - starts[0] >= 2.3


def test_the_operators_cap_for_an_endpoint_holds_and_a_job_may_only_go_lower(fake_openai, settings):
    settings.CONVEYOR_LLM_RPM = {fake_openai.base_url: 240, "": 100_000}  # 4 a second
    outcomes = stream_all(options_for(fake_openai, rpm="100000"), rows(9))
    assert [o.error for o in outcomes if o.error] == []
    starts = sorted(call.started for call in fake_openai.calls)
    assert starts[-1] - starts[0] >= 1.8  # 9 requests at 4 a second span 2 s


def test_the_job_page_says_when_it_waits_for_the_rate_limit(fake_openai, settings):
    settings.CONVEYOR_HTTP_RETRY_MAX_SECONDS = 30.0
    fake_openai.retry_after = "20"
    fake_openai.plan("Apple", [429])
    with RowStream(LLM, options_for(fake_openai), row_timeout=60) as stream:
        assert stream.status() == "0 requests in flight, 0 req/min"
        stream.submit(1, {"name": "Apple", "notes": "fruit"})
        status = wait_for(
            lambda: "waiting for the rate limit until" in stream.status() and stream.status(),
            what="the stream to say it waits",
        )
        stream.cancel()
    assert status.startswith("0 requests in flight, ")  # the one request was answered 429
    assert " req/min; waiting for the rate limit until " in status


def test_one_row_the_api_chokes_on_fails_alone_without_opening_the_breaker(fake_openai, settings):
    settings.CONVEYOR_LLM_BREAKER_FAILURES = 3
    fake_openai.plan('Apple 1"', [500] * 4)  # the row's every attempt: 4 failures in a row
    [outcome] = stream_all(options_for(fake_openai), rows(1))  # and no halt
    assert outcome.error.startswith("HTTP 500 from the API after 4 attempts")
    assert [outcome.error for outcome in stream_all(options_for(fake_openai), rows(3))] == [""] * 3


# --- the breaker and a refused key, through sheet jobs run in this process -------------


def submit(user, fake, count: int, **options) -> Job:
    body = [[f"Apple {i}", "fruit"] for i in range(1, count + 1)]
    sheet = make_sheet(user, [COLUMNS, *body])
    chosen = {"base_url": fake.base_url, "prompt": "Hi {name}", **options}
    job, _ = sheet_job_submit(sheet=sheet, owner=user, processor="llm", options=chosen)
    return job


def slice_of(job: Job) -> Job:
    Job.objects.filter(pk=job.pk).update(run_after=None)
    run_one_slice(job.pk)
    return fresh(job)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("outage", ["drop", 503])
def test_the_breaker_stops_the_job_while_the_api_is_down_and_fails_no_row(
    user, fake_openai, settings, outage
):
    settings.CONVEYOR_LLM_BREAKER_FAILURES = 3
    settings.CONVEYOR_LLM_BREAKER_SECONDS = 1.0
    job = submit(user, fake_openai, 20)
    fake_openai.outage = outage
    job = slice_of(job)
    assert job.status == Job.Status.RETRYING and job.attempts == 0
    host = fake_openai.base_url.split("//")[1].split(":")[0]
    assert job.message.startswith(f"Waiting for the API at {host}: retrying at ")
    assert job.failed == 0
    # Three failures in a row open it; the rows already on their way fail once each.
    assert len(fake_openai.calls) <= 3 + 4
    sent = len(fake_openai.calls)
    job = slice_of(job)  # while it is open, nothing is sent
    assert job.status == Job.Status.RETRYING and len(fake_openai.calls) == sent
    wait_for(lambda: slice_of(job).status != Job.Status.RETRYING or len(fake_openai.calls) > sent)
    assert len(fake_openai.calls) == sent + 1, "one request probes the endpoint"
    fake_openai.outage = None
    job = wait_for(
        lambda: (j := slice_of(job)).status == Job.Status.SUCCEEDED and j,
        timeout=15,
        what="the job to resume by itself",
    )
    assert (job.processed, job.failed) == (20, 0)


@pytest.mark.django_db(transaction=True)
def test_a_refused_key_fails_the_job_once_not_row_by_row(user, fake_openai):
    fake_openai.api_key = "sk-good"
    fake_openai.echo_key = True
    job = slice_of(submit(user, fake_openai, 30, api_key="sk-revoked-0123456789"))
    assert job.status == Job.Status.FAILED
    assert job.error.startswith("HTTP 401 from the API: Incorrect API key provided: ")
    assert "sk-revoked-0123456789" not in job.error
    assert job.failed == 0
    assert len(fake_openai.calls) <= 4


# --- three sheets in three worker processes: the pace shared through the database ------


@pytest.mark.cluster
def test_three_sheets_in_three_worker_processes_share_the_limit_without_redis(
    cluster_factory, user, fake_openai
):
    fake_openai.rpm_limit = 1200  # a bucket of one second's worth, as above
    fake_openai.limit_window = 1.0
    fake_openai.latency = 0.05
    cluster_factory(workers=3)  # no REDIS_URL: the deployment has only its database
    jobs = [submit(user, fake_openai, 60, prompt=f"Hi {tag} {{name}}") for tag in "abc"]
    wait_for(
        lambda: all(fresh(job).status == Job.Status.SUCCEEDED for job in jobs),
        timeout=120,
        what="the three jobs to finish",
    )
    assert [(fresh(job).processed, fresh(job).failed) for job in jobs] == [(60, 0)] * 3
    spans = []
    for tag in "abc":
        starts = [c.started for c in fake_openai.calls if c.user_message.startswith(f"Hi {tag} ")]
        spans.append((min(starts), max(starts)))
    assert max(start for start, _ in spans) < min(end for _, end in spans), "all three at once"
    assert fake_openai.limited <= 0.02 * len(fake_openai.calls)
