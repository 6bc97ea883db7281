"""The `llm` processor's structured fields (`fields`: one typed column per field) against
the fake OpenAI-compatible API (sheets/processors/builtins/llm/fields.py, __init__.py)."""

from __future__ import annotations

import html
import json

import pytest
from django.test import Client

from jobs.models import Job
from sheets.models import RowResult
from sheets.processors import OptionsError, get_processor, run_rows
from sheets.processors.builtins.llm.fields import MAX_FIELDS, AnswerProblem, check_answer
from sheets.processors.builtins.llm.fields import parse_fields as parse
from sheets.services import sheet_job_submit
from tests.sheets.factories import make_sheet, run_to_end

NEVER = lambda: False  # noqa: E731
LLM = get_processor("llm")
COLUMNS = ["name", "notes"]
FIELDS = "company, country\nheadcount:int, remote:boolean, size:enum(small| Mid |large)"
FACTS = {  # what the fake model reads out of each row, as a sloppy model writes it
    "Acme": {"company": "Acme", "country": "FR", "headcount": "1,200", "remote": "yes",
             "size": "MID"},
    "Bolt": {"company": "Bolt", "country": None, "headcount": 40.0, "remote": False,
             "size": "small"},
}  # fmt: skip


@pytest.fixture(autouse=True)
def llm_settings(settings):
    settings.CONVEYOR_LLM_BASE_URL = ""
    settings.CONVEYOR_LLM_API_KEY = ""
    settings.CONVEYOR_LLM_MODEL = "test-model"
    settings.CONVEYOR_LLM_MAX_ATTEMPTS = 3
    settings.CONVEYOR_HTTP_RETRY_BASE_SECONDS = 0.02
    settings.CONVEYOR_LLM_PRICES = {}
    settings.REDIS_URL = ""
    return settings


def options_for(fake, **raw) -> dict:
    return LLM.validate_options({"base_url": fake.base_url, "fields": FIELDS, **raw}, COLUMNS)


def run(options, rows) -> dict:
    return {o.number: o for o in run_rows(LLM, options, rows, should_stop=NEVER)}


def facts(call) -> dict:
    """The fake model's answer: the facts of the company its prompt names."""
    return next(v for k, v in FACTS.items() if k in json.dumps(call.body["messages"][:2]))


def rows(n: int) -> list[tuple[int, dict[str, str]]]:
    return [
        (i, {"name": "Acme" if i % 2 else "Bolt", "notes": f"row {i}"}) for i in range(1, n + 1)
    ]


# --- the option ---------------------------------------------------------------------


def test_fields_are_kept_in_one_spelling_and_give_one_column_each(fake_openai):
    options = options_for(fake_openai)
    assert options["fields"] == (
        "company, country, headcount:int, remote:bool, size:enum(small|Mid|large)"
    )
    assert LLM.output_columns(options, COLUMNS) == [
        "company",
        "country",
        "headcount",
        "remote",
        "size",
        "tokens",
    ]
    assert options_for(fake_openai, prompt="")["prompt"] == "", "a prompt is optional"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"fields": "company, headcount:integr"}, "headcount: unknown type 'integr'; types are"),
        ({"fields": "size:enum()"}, "size: the enum has no values; write size:enum(a|b|c)."),
        ({"fields": "size:enum( | )"}, "size: the enum has no values"),
        ({"fields": "size:enum"}, "size: an enum lists its values"),
        ({"fields": "headcount:int(3)"}, "headcount: only enum takes values in (...)."),
        ({"fields": "company, Company:str"}, "The field 'Company' is named twice."),
        ({"fields": ":int"}, "a field needs a name before the colon"),
        ({"fields": "a{b}"}, "'a{b}' is not a field name"),
        ({"fields": "tokens:int"}, "'tokens' is the name of a column the llm processor writes"),
        (
            {"fields": ", ".join(f"f{i}" for i in range(MAX_FIELDS + 1))},
            f"At most {MAX_FIELDS} fields ({MAX_FIELDS + 1} given).",
        ),
        (
            {"fields": "company, Name, notes:int"},
            "Name, notes are input columns; an output column needs a name of its own",
        ),
        ({"fields": "company", "categories": "a, b"}, "Give categories or fields, not both"),
    ],
)
def test_a_bad_fields_spec_is_refused_with_a_clear_message(fake_openai, raw, message):
    with pytest.raises(OptionsError) as caught:
        options_for(fake_openai, **raw)
    assert message in caught.value.errors["fields"]


def test_a_field_named_like_an_input_column_is_refused_at_submit_through_the_api(
    db, fake_openai, user
):
    sheet = make_sheet(user, [["name", "Notes"], ["Acme", "x"]])
    client = Client()
    client.force_login(user)

    def submit(fields: str):
        params = {"sheet_id": sheet.pk, "processor": "llm"}
        params["options"] = {"base_url": fake_openai.base_url, "fields": fields}
        body = json.dumps({"kind": "sheets.process", "params": params})
        return client.post("/api/jobs/", body, content_type="application/json")

    clash = submit("company, notes")
    assert clash.status_code == 400
    assert "notes is an input column; an output column needs a name of its own" in (
        json.dumps(clash.json())
    )
    bad = submit("headcount:number(1)")
    assert bad.status_code == 400 and "only enum takes values" in json.dumps(bad.json())
    assert not Job.objects.exists() and not fake_openai.calls


# --- answers ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_typed_fields_end_to_end_through_a_sheet_job(fake_openai, user):
    fake_openai.structured = facts
    sheet = make_sheet(user, [["name", "notes"], ["Acme", "rockets"], ["Bolt", "bikes"]])
    options = {"base_url": fake_openai.base_url, "fields": FIELDS}
    job = sheet_job_submit(sheet=sheet, owner=user, processor="llm", options=options)[0]
    job = run_to_end(job)
    assert (job.status, job.processed, job.failed) == (Job.Status.SUCCEEDED, 2, 0)
    assert job.params["output_columns"] == [
        *("company", "country", "headcount", "remote", "size", "tokens")
    ]
    outputs = {r.row_number: r.outputs for r in RowResult.objects.filter(job=job)}
    assert {n: {k: v for k, v in o.items() if k != "tokens"} for n, o in outputs.items()} == {
        1: {"company": "Acme", "country": "FR", "headcount": 1200, "remote": True, "size": "Mid"},
        2: {"company": "Bolt", "country": "", "headcount": 40, "remote": False, "size": "small"},
    }
    assert all(o["tokens"] > 0 for o in outputs.values())
    first = fake_openai.calls[0].body
    assert first["response_format"]["type"] == "json_schema"
    sent = first["response_format"]["json_schema"]
    assert sent["strict"] is True
    assert sent["schema"]["required"] == ["company", "country", "headcount", "remote", "size"]
    assert sent["schema"]["additionalProperties"] is False
    assert sent["schema"]["properties"]["headcount"] == {"type": ["integer", "null"]}
    assert sent["schema"]["properties"]["size"]["enum"] == ["small", "Mid", "large", None]
    told = first["messages"][0]["content"]  # in case an endpoint ignores response_format
    assert "headcount: a whole number; remote: true or false; size: one of small, Mid, large" in (
        told
    )
    assert first["messages"][-1]["content"] == "What are the fields of this record?\n\n" + (
        "name: Acme\nnotes: rockets"
    )
    assert len(fake_openai.calls) == 2


@pytest.mark.parametrize(
    ("value", "kind", "typed"),
    [
        ("1,200", "headcount:int", 1200),
        (" 7 ", "headcount:int", 7),
        (3.0, "headcount:int", 3),
        ("2.50", "price:float", 2.5),
        ("1,234.5", "price:float", 1234.5),
        ("No", "remote:bool", False),
        ("TRUE", "remote:bool", True),
        ("LARGE", "size:enum(small|mid|Large)", "Large"),
        (" mid ", "size:enum(small|mid|Large)", "mid"),
        (None, "headcount:int", ""),
        (12, "company", "12"),
    ],
)
def test_values_are_read_as_their_type(value, kind, typed):
    answer = json.dumps({parse(kind)[0].name: value})
    assert list(check_answer(answer, parse(kind)).values()) == [typed]


@pytest.mark.parametrize(
    ("answer", "kind", "problem"),
    [
        (
            '{"headcount": "about fifty"}',
            "headcount:int",
            "headcount: 'about fifty' is not a whole",
        ),
        ('{"headcount": 2.5}', "headcount:int", "headcount: '2.5' is not a whole number"),
        ('{"headcount": true}', "headcount:int", "headcount: True is not a whole number"),
        ('{"remote": "maybe"}', "remote:bool", "remote: 'maybe' is not true or false"),
        ('{"size": "huge"}', "size:enum(small|big)", "size: 'huge' is not one of small, big"),
        ('{"a": 1}', "a, b", "b: missing"),
        ('{"a": [1]}', "a", "a: '[1]' is not a single value"),
        ("Sure! Acme, France", "a", "the answer is not JSON: 'Sure! Acme, France'"),
        ("[1, 2]", "a", "the answer is not a JSON object"),
    ],
)
def test_an_answer_of_the_wrong_shape_names_the_field(answer, kind, problem):
    with pytest.raises(AnswerProblem) as caught:
        check_answer(answer, parse(kind))
    assert problem in str(caught.value)


def test_a_fenced_json_answer_is_read():
    assert check_answer('```json\n{"a": "x"}\n```', parse("a")) == {"a": "x"}


def test_a_wrong_answer_gets_one_repair_then_a_row_error_naming_the_field(fake_openai):
    def sloppy(call):
        repairing = "cannot be used" in call.user_message
        if "Acme" in json.dumps(call.body["messages"][:2]):  # right on the second try
            return {**FACTS["Acme"], "headcount": "12" if repairing else "about fifty"}
        return "I think Bolt is a bike maker."  # never JSON

    fake_openai.structured = sloppy
    outcomes = run(options_for(fake_openai, concurrency="1"), rows(2))
    assert outcomes[1].error == "" and outcomes[1].outputs["headcount"] == 12
    assert outcomes[2].error == "the answer is not JSON: 'I think Bolt is a bike maker.'"
    assert len(fake_openai.calls) == 4
    repair = fake_openai.calls[1].body["messages"]
    assert [m["role"] for m in repair] == ["system", "user", "assistant", "user"]
    assert json.loads(repair[2]["content"])["headcount"] == "about fifty"
    assert "headcount: 'about fifty' is not a whole number" in repair[3]["content"]
    for number, calls in ((1, fake_openai.calls[:2]), (2, fake_openai.calls[2:])):
        usage = outcomes[number].usage
        prompt = sum(sum(len(m["content"].split()) for m in c.body["messages"]) for c in calls)
        assert usage["requests"] == 2 and usage["prompt_tokens"] == prompt, "both paid for"
    assert outcomes[1].outputs["tokens"] == sum(
        outcomes[1].usage[k] for k in ("prompt_tokens", "completion_tokens")
    )


def test_a_failed_repair_names_the_field_and_counts_both_requests(fake_openai):
    fake_openai.structured = lambda call: {**FACTS["Acme"], "headcount": "about fifty"}
    [outcome] = run(options_for(fake_openai), rows(1)).values()
    assert outcome.error == "headcount: 'about fifty' is not a whole number"
    assert outcome.usage["requests"] == 2 and len(fake_openai.calls) == 2


# --- endpoints without structured outputs -----------------------------------------------


@pytest.mark.parametrize(
    ("refused", "way"), [({"json_schema"}, "json_object"), ({"json_schema", "json_object"}, "")]
)
def test_an_endpoint_refusing_the_schema_costs_one_extra_request_per_way_per_session(
    fake_openai, refused, way
):
    fake_openai.structured = facts
    fake_openai.refuse_formats = refused
    outcomes = run(options_for(fake_openai, concurrency="4"), rows(8))
    assert [o.error for o in outcomes.values()] == [""] * 8
    assert outcomes[1].outputs["headcount"] == 1200
    assert len(fake_openai.calls) == 8 + len(refused)
    assert [c.status for c in fake_openai.calls[: len(refused)]] == [400] * len(refused)
    answered = fake_openai.calls[len(refused) :]
    assert {c.response_format for c in answered} == {way}
    assert all('"additionalProperties": false' in c.system_message for c in answered)
    again = run(options_for(fake_openai), rows(1))  # a new session finds its way again
    assert again[1].error == "" and len(fake_openai.calls) == 8 + 2 * len(refused) + 1


def test_waiting_for_the_first_rows_answer_does_not_count_against_the_row_timeout(fake_openai):
    fake_openai.structured = facts
    fake_openai.latency = lambda call: 1.0 if call.number == 1 else 0.6
    options = options_for(fake_openai, concurrency="4")
    outcomes = {
        o.number: o for o in run_rows(LLM, options, rows(4), should_stop=NEVER, row_timeout=1.4)
    }
    assert [o.error for o in outcomes.values()] == [""] * 4  # 1.0 s waited + 0.6 s asked
    assert len(fake_openai.calls) == 4


def test_a_400_about_something_else_is_not_taken_for_a_refused_format(fake_openai):
    fake_openai.structured = facts
    fake_openai.plan("Acme", [400, 400])  # "Invalid value for 'temperature'", twice
    outcomes = run(options_for(fake_openai, concurrency="1"), rows(3))
    assert outcomes[1].error == (
        "HTTP 400 from the API: Invalid value for 'temperature': must be at most 2."
    )
    assert outcomes[2].error == outcomes[3].error == ""
    assert [(c.status, c.response_format) for c in fake_openai.calls] == [
        (400, "json_schema"),
        (400, "json_object"),  # tried once the next way down: refused too, so not the format
        (200, "json_schema"),
        (200, "json_schema"),
    ]


# --- preview and estimate ---------------------------------------------------------------


@pytest.mark.django_db
def test_the_preview_shows_the_schema_sent_and_the_estimate_counts_it(fake_openai, user):
    sheet = make_sheet(user, [["name", "notes"], *[[f"Acme {i}", "rockets"] for i in range(10)]])
    client = Client()
    client.force_login(user)
    form = {
        "processor": "llm",
        "opt_prompt": "Tell me about {name}",
        "opt_base_url": fake_openai.base_url,
        "opt_model": "test-model",
        "start_row": "1",
        "priority": "normal",
    }

    def prompt_tokens(page: str) -> int:
        return int(page.split('class="estimate-prompt-tokens">')[1].split("<")[0].replace(",", ""))

    plain = client.post(f"/sheets/{sheet.pk}/llm-preview/", form).content.decode()
    response = client.post(f"/sheets/{sheet.pk}/llm-preview/", {**form, "opt_fields": FIELDS})
    page = html.unescape(response.content.decode())
    assert response.status_code == 200 and 'id="preview-format"' in page
    shown = page.split('id="preview-format"')[1].split('<pre class="prompt">')[1].split("</pre>")
    sent = json.loads(shown[0])
    assert sent["type"] == "json_schema" and sent["json_schema"]["strict"] is True
    assert list(sent["json_schema"]["schema"]["properties"]) == [
        *("company", "country", "headcount", "remote", "size")
    ]
    assert "You extract fields from records" in page
    schema_tokens = len(json.dumps(sent)) // 4
    assert prompt_tokens(page) >= prompt_tokens(plain) + 10 * schema_tokens
    assert 'id="preview-format"' not in plain and not fake_openai.calls
