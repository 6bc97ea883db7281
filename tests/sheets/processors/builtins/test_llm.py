"""The `llm` processor against a fake OpenAI-compatible API
(sheets/processors/builtins/llm/)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import redis

from sheets.processors import OptionsError, get_processor, run_rows
from tests.support.processes import free_port, wait_for

NEVER = lambda: False  # noqa: E731
LLM = get_processor("llm")
COLUMNS = ["name", "notes"]
PRODUCE = [
    (1, {"name": "Apple", "notes": "a crisp fruit"}),
    (2, {"name": "Carrot", "notes": "an orange vegetable"}),
    (3, {"name": "Pear", "notes": "a sweet fruit"}),
]


@pytest.fixture(autouse=True)
def llm_settings(settings):
    settings.CONVEYOR_LLM_BASE_URL = ""
    settings.CONVEYOR_LLM_API_KEY = ""
    settings.CONVEYOR_LLM_MODEL = "test-model"
    settings.CONVEYOR_LLM_MAX_ATTEMPTS = 4
    settings.CONVEYOR_HTTP_RETRY_BASE_SECONDS = 0.02
    settings.CONVEYOR_HTTP_RETRY_MAX_SECONDS = 5.0
    settings.REDIS_URL = ""
    return settings


def options_for(fake, **raw) -> dict:
    return LLM.validate_options({"base_url": fake.base_url, **raw}, COLUMNS)


def run(options, rows, **kwargs) -> dict:
    return {o.number: o for o in run_rows(LLM, options, rows, should_stop=NEVER, **kwargs)}


def rows(n: int) -> list[tuple[int, dict[str, str]]]:
    return [(i, {"name": f"Apple {i}", "notes": "fruit"}) for i in range(1, n + 1)]


# --- options and prompts ------------------------------------------------------------


def test_without_an_endpoint_the_form_says_how_to_configure_one():
    notice = LLM.notice({})
    for hint in ("No LLM endpoint is configured", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        assert hint in notice
    assert "Ollama at http://127.0.0.1:11434/v1" in notice
    assert "LM Studio at http://127.0.0.1:1234/v1" in notice
    with pytest.raises(OptionsError) as caught:
        LLM.validate_options({"categories": "a, b"}, COLUMNS)
    assert caught.value.errors == {"base_url": notice}


def test_endpoint_and_model_default_from_settings(settings):
    settings.CONVEYOR_LLM_BASE_URL = "http://127.0.0.1:11434/v1"
    options = LLM.validate_options({"prompt": "Summarise {notes}"}, COLUMNS)
    assert options["base_url"] == "http://127.0.0.1:11434/v1"
    assert options["model"] == "test-model"
    notice = LLM.notice(options)
    assert notice.startswith("Each row is sent to http://127.0.0.1:11434/v1 (model test-model).")
    assert "No API key is configured" in notice
    settings.CONVEYOR_LLM_API_KEY = "sk-test"
    assert "No API key" not in LLM.notice(options)


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        ({}, "prompt", "Write a prompt, or give categories to choose from."),
        ({"categories": "Fruit"}, "categories", "Give at least two categories"),
        ({"prompt": "Rate {colour}"}, "prompt", "The prompt uses {colour}, which is not a column"),
        ({"prompt": "{name.__class__}"}, "prompt", "{name.__class__}, which is not a column"),
        ({"prompt": "{name!r:>99}"}, "prompt", "which is not a column"),
        ({"prompt": 'Reply {"a": 1}'}, "prompt", "which is not a column"),
        ({"prompt": "Reply {name"}, "prompt", "Unmatched { or }"),
        ({"prompt": "Reply {}"}, "prompt", "Empty {}"),
        ({"prompt": "x", "concurrency": "0"}, "concurrency", "Enter auto, or a whole number"),
        ({"prompt": "x", "concurrency": "65"}, "concurrency", "from 1 to 64."),
        ({"prompt": "x", "concurrency": "lots"}, "concurrency", "Enter auto, or a whole number"),
        ({"prompt": "x", "rpm": "-1"}, "rpm", "Must be at least 0."),
    ],
)
def test_invalid_options_are_reported_per_field(fake_openai, raw, field, message):
    with pytest.raises(OptionsError) as caught:
        options_for(fake_openai, **raw)
    assert message in caught.value.errors[field]


def test_output_column_is_category_with_categories_else_answer(fake_openai):
    with_categories = options_for(fake_openai, categories="Fruit,Vegetable")
    free_text = options_for(fake_openai, prompt="Describe {name}")
    assert LLM.output_columns(with_categories, COLUMNS) == ["category", "tokens"]
    assert LLM.output_columns(free_text, COLUMNS) == ["answer", "tokens"]


# --- answers ------------------------------------------------------------------------


def test_categories_with_the_default_prompt(fake_openai):
    fake_openai.categories = ["Fruit", "Vegetable"]
    outcomes = run(options_for(fake_openai, categories="Fruit, vegetable ,"), PRODUCE)
    assert {n: o.outputs["category"] for n, o in outcomes.items()} == {
        1: "Fruit",
        2: "vegetable",
        3: "Fruit",
    }
    assert all(o.outputs["tokens"] > 0 for o in outcomes.values())
    apple = next(c for c in fake_openai.calls if "Apple" in c.user_message)
    assert apple.body["model"] == "test-model"
    assert apple.system_message.endswith(
        "one of these categories and nothing else: Fruit, vegetable."
    )
    assert (
        apple.user_message
        == "Which category fits this record?\n\nname: Apple\nnotes: a crisp fruit"
    )


def test_answers_match_categories_whatever_their_case_spacing_and_punctuation(fake_openai):
    fake_openai.categories = ["Fruit", "Vegetable"]
    fake_openai.style = lambda answer: f'  "**{answer.upper()}**".\n'
    outcomes = run(options_for(fake_openai, categories="Fruit, Vegetable"), PRODUCE)
    assert [outcomes[n].outputs["category"] for n in (1, 2, 3)] == ["Fruit", "Vegetable", "Fruit"]


def test_reasoning_before_the_answer_is_ignored(fake_openai):
    fake_openai.categories = ["Fruit", "Vegetable"]
    fake_openai.style = lambda answer: f"<think>Vegetable? No.</think>\n{answer}"
    outcomes = run(options_for(fake_openai, categories="Fruit, Vegetable"), PRODUCE[:1])
    assert outcomes[1].outputs["category"] == "Fruit"


def test_an_answer_outside_the_categories_fails_only_that_row(fake_openai):
    fake_openai.categories = ["Fruit", "Vegetable"]
    batch = [*PRODUCE, (4, {"name": "WRONG", "notes": "?"})]
    outcomes = run(options_for(fake_openai, categories="Fruit, Vegetable"), batch)
    assert outcomes[4].error == (
        'the model answered "Banana", which is not one of the categories (Fruit, Vegetable)'
    )
    assert [outcomes[n].error for n in (1, 2, 3)] == ["", "", ""]


def test_prompt_template_fills_in_columns_and_nothing_else(fake_openai):
    options = options_for(fake_openai, prompt="Describe {name} ({ Notes }) in {{one}} word")
    batch = [(1, {"name": "Apple", "notes": "crisp"}), (2, {"name": "{notes}", "notes": "x"})]
    outcomes = run(options, batch)
    assert outcomes[1].outputs["answer"] == "echo: Describe Apple (crisp) in {one} word"
    assert outcomes[2].outputs["answer"] == "echo: Describe {notes} (x) in {one} word"
    assert all(call.system_message == "" for call in fake_openai.calls)


def test_the_api_key_comes_from_the_form_or_the_settings(fake_openai, settings):
    fake_openai.api_key = "sk-good"
    options = options_for(fake_openai, prompt="Hi {name}")
    [refused] = run(options, PRODUCE[:1]).values()
    assert refused.error == "HTTP 401 from the API: Incorrect API key provided."
    assert refused.attempts == 1
    settings.CONVEYOR_LLM_API_KEY = "sk-good"
    assert run(options, PRODUCE[:1])[1].error.startswith("HTTP 401"), "a typed URL: no key"
    settings.CONVEYOR_LLM_BASE_URL = fake_openai.base_url  # the server's own endpoint
    assert run(options, PRODUCE[:1])[1].error == ""
    settings.CONVEYOR_LLM_API_KEY = ""
    assert run({**options, "api_key": "sk-good"}, PRODUCE[:1])[1].error == ""
    assert fake_openai.calls[-1].headers["Authorization"] == "Bearer sk-good"


# --- retries ------------------------------------------------------------------------


def http_date(seconds_from_now: float) -> str:
    return format_datetime(datetime.now(UTC) + timedelta(seconds=seconds_from_now), usegmt=True)


@pytest.mark.parametrize("retry_after", ["1", "date"])
def test_429_is_retried_after_the_time_the_api_asks_for(fake_openai, retry_after):
    fake_openai.retry_after = (lambda: http_date(2)) if retry_after == "date" else retry_after
    fake_openai.plan("Apple", [429])
    outcomes = run(options_for(fake_openai, prompt="Hi {name}"), PRODUCE[:1])
    assert (outcomes[1].error, outcomes[1].attempts) == ("", 2)
    first, second = (c for c in fake_openai.calls if "Apple" in c.user_message)
    assert (first.status, second.status) == (429, 200)
    assert second.started - first.started >= 0.95


def test_server_errors_are_retried_until_the_answer_comes(fake_openai):
    fake_openai.plan("Carrot", [500, 503])
    outcomes = run(options_for(fake_openai, prompt="Hi {name}"), PRODUCE)
    assert {n: (o.error, o.attempts) for n, o in outcomes.items()} == {
        1: ("", 1),
        2: ("", 3),
        3: ("", 1),
    }


def test_a_fraction_of_failures_costs_attempts_not_rows(fake_openai, settings):
    settings.CONVEYOR_LLM_MAX_ATTEMPTS = 10
    fake_openai.error_fraction = 0.25
    outcomes = run(options_for(fake_openai, prompt="Hi {name}", concurrency="8"), rows(30))
    assert [o.error for o in outcomes.values() if o.error] == []
    assert sum(o.attempts for o in outcomes.values()) == len(fake_openai.calls) > 30


def test_retries_stop_after_the_configured_number_of_attempts(fake_openai, settings):
    settings.CONVEYOR_LLM_MAX_ATTEMPTS = 3
    fake_openai.plan("Apple", [500] * 5)
    [outcome] = run(options_for(fake_openai, prompt="Hi {name}"), PRODUCE[:1]).values()
    assert outcome.error == (
        "HTTP 500 from the API after 3 attempts: "
        "The server had an error while processing your request."
    )
    assert outcome.attempts == len(fake_openai.calls) == 3


def test_a_client_error_is_not_retried_and_shows_the_api_message(fake_openai):
    fake_openai.plan("Apple", [400])
    [outcome] = run(options_for(fake_openai, prompt="Hi {name}"), PRODUCE[:1]).values()
    assert outcome.error == (
        "HTTP 400 from the API: Invalid value for 'temperature': must be at most 2."
    )
    assert outcome.attempts == len(fake_openai.calls) == 1


def test_an_unreachable_endpoint_is_a_row_error_after_retries(settings):
    settings.CONVEYOR_LLM_BASE_URL = f"http://127.0.0.1:{free_port()}/v1"
    options = LLM.validate_options({"prompt": "Hi {name}"}, COLUMNS)
    [outcome] = run(options, PRODUCE[:1]).values()
    assert outcome.error.startswith("ConnectError: ")
    assert outcome.error.endswith("gave up after 4 attempts")
    assert outcome.attempts == 4


# --- concurrency, rate and cancelling ------------------------------------------------------


def test_concurrency_is_used_and_never_exceeded(fake_openai):
    fake_openai.latency = 0.1
    outcomes = run(options_for(fake_openai, prompt="Hi {name}", concurrency="6"), rows(24))
    assert len(outcomes) == 24
    # Six at once, as the server saw them (speed is the benchmarks' business: bench llm).
    assert fake_openai.max_in_flight == 6


def arrival_gaps(calls, window: int) -> list[float]:
    """Time between each request and the `window`-th after it, as the server saw them.

    Arrival times wobble by the time a new connection takes; a broken limit shows as a
    burst of gaps near 0, so the tests allow 0.9 s for a 1 s window.
    """
    starts = sorted(call.started for call in calls)
    return [later - earlier for earlier, later in zip(starts, starts[window:], strict=False)]


def test_requests_per_minute_are_spread_out(fake_openai):
    # 240/min is enforced as 4 per second: any 5 requests span at least a second.
    options = options_for(fake_openai, prompt="Hi {name}", rpm="240", concurrency="12")
    began = time.monotonic()
    outcomes = run(options, rows(12))
    assert all(o.error == "" for o in outcomes.values())
    assert min(arrival_gaps(fake_openai.calls, 4)) >= 0.9
    assert time.monotonic() - began >= 1.9


def test_waiting_for_a_rate_limit_slot_does_not_count_against_the_row_timeout(fake_openai):
    # 120/min is 2 per second: the last of 6 rows waits 2 s for its slot.
    options = options_for(fake_openai, prompt="Hi {name}", rpm="120", concurrency="6")
    outcomes = run(options, rows(6), row_timeout=0.8)
    assert [o.error for o in outcomes.values()] == [""] * 6


def test_waiting_out_429s_does_not_count_against_the_row_timeout(fake_openai):
    fake_openai.retry_after = "0.4"
    fake_openai.plan("Apple", [429, 429])
    fake_openai.latency = 0.1  # three requests fit in the timeout; their backoffs would not
    options = options_for(fake_openai, prompt="Hi {name}")
    [outcome] = run(options, PRODUCE[:1], row_timeout=0.5).values()
    assert (outcome.error, outcome.attempts) == ("", 3)
    assert [c.status for c in fake_openai.calls] == [429, 429, 200]
    assert fake_openai.dropped == 0


def test_requests_per_minute_are_shared_through_redis(fake_openai, settings, redis_url):
    settings.REDIS_URL = redis_url
    settings.CONVEYOR_PACE_STORE = "redis"  # what REDIS_URL chooses (tests/conftest.py)
    store = redis.Redis.from_url(redis_url)
    for key in store.keys("*conveyor-pace*"):  # other tests' schedules
        store.delete(key)
    options = options_for(fake_openai, prompt="Hi {name}", rpm="240", concurrency="6")
    results: list[dict] = []
    threads = [
        threading.Thread(target=lambda: results.append(run(options, rows(6)))) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert [len(result) for result in results] == [6, 6]
    # One limit for both runs, 4 a second: 12 requests span 2 s (two separate limits
    # would let 8 a second through: 1 s). A request that opens a connection on a busy
    # machine may arrive a few tenths of a second late and shorten one gap (seen in CI).
    starts = sorted(call.started for call in fake_openai.calls)
    assert starts[-1] - starts[0] >= 1.5
    assert sorted(arrival_gaps(fake_openai.calls, 4))[1] >= 0.9
    assert store.keys("*conveyor-pace*"), "the pace did not keep its schedule in Redis"


def test_stopping_aborts_the_requests_in_flight(fake_openai):
    fake_openai.latency = 10.0
    options = options_for(fake_openai, prompt="Hi {name}", concurrency="4")
    began = time.monotonic()
    outcomes = run_rows(LLM, options, rows(8), should_stop=lambda: fake_openai.in_flight >= 4)
    assert time.monotonic() - began < 1.5
    assert outcomes == []
    wait_for(lambda: fake_openai.dropped == 4, timeout=3, what="the fake API to see 4 hang-ups")
    assert len(fake_openai.calls) == 4


def test_a_slow_answer_hits_the_row_timeout(fake_openai):
    fake_openai.latency = lambda call: 5.0 if "Apple" in call.user_message else 0.0
    began = time.monotonic()
    outcomes = run(options_for(fake_openai, prompt="Hi {name}"), PRODUCE, row_timeout=0.3)
    assert time.monotonic() - began < 1.5
    assert outcomes[1].error == "timed out after 0.3 s"
    assert outcomes[2].error == outcomes[3].error == ""
