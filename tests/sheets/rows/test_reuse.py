"""Paid answers are reused: a row whose inputs, processor and options equal a row the
same owner had answered takes that answer without a request; never across users."""

from __future__ import annotations

import pytest

from sheets.services import sheet_job_submit
from tests.jobs.factories import run_to_end
from tests.sheets.factories import make_sheet

pytestmark = pytest.mark.django_db(transaction=True)
HEADER = ["name", "notes"]


def rows(count: int, changed: set[int] = frozenset()) -> list[list[str]]:
    body = [[f"item {i}", "changed" if i in changed else f"note {i}"] for i in range(count)]
    return [HEADER, *body]


@pytest.fixture
def llm(settings, fake_openai):
    settings.CONVEYOR_LLM_API_KEY = ""
    fake_openai.categories = ["Fruit", "Vegetable"]

    def run(owner, sheet_rows, **options):
        sheet = make_sheet(owner, sheet_rows)
        chosen = {"base_url": fake_openai.base_url, "categories": "Fruit,Vegetable", **options}
        before = len(fake_openai.calls)
        job, _ = sheet_job_submit(sheet=sheet, owner=owner, processor="llm", options=chosen)
        job = run_to_end(job)
        assert job.status == "succeeded" and job.failed == 0
        return job, len(fake_openai.calls) - before

    return run


def test_only_new_or_changed_rows_cost_requests(llm, user):
    first, sent = llm(user, rows(30))
    assert sent == 30 and first.result["reused"] == 0
    again, sent = llm(user, rows(30))
    assert sent == 0 and again.result["reused"] == 30
    assert again.row_results.filter(reused=True).count() == 30
    assert sorted(r.outputs["category"] for r in again.row_results.all()) == sorted(
        r.outputs["category"] for r in first.row_results.all()
    )
    _, sent = llm(user, rows(35, changed=set(range(10))))
    assert sent == 15  # 10 changed + 5 added


def test_answers_are_never_reused_across_users_or_options(llm, user, other_user):
    llm(user, rows(5))
    _, theirs = llm(other_user, rows(5))
    assert theirs == 5
    _, other_model = llm(user, rows(5), model="another-model")
    assert other_model == 5
    _, key_only = llm(user, rows(5), api_key="sk-different-key", concurrency=2)
    assert key_only == 0  # secrets and pacing do not change the answer
    _, budgeted = llm(user, rows(5), budget_tokens=100_000, tpm=50_000)
    assert budgeted == 0, "a budget and a tokens/min cap do not change the answer"
    _, off = llm(user, rows(5), reuse="no")
    assert off == 5


def test_the_results_table_shows_reused_rows_as_costing_nothing(llm, user, client):
    first, _ = llm(user, rows(3))
    again, sent = llm(user, rows(3))
    assert sent == 0 and not any(again.spent.values()), "the job paid nothing"
    client.force_login(user)

    def token_cells(job) -> list[str]:
        url = f"/sheets/{job.params['sheet_id']}/results/?job={job.pk}"
        html = client.get(url).content.decode()
        table = html[html.index("<tbody>") : html.index("</tbody>")]
        return [cell.split("<")[0] for cell in table.split('<td class="output">')[1:][1::2]]

    assert token_cells(again) == ["0 (reused)"] * 3
    paid = token_cells(first)
    assert len(paid) == 3 and all(cell.isdigit() and int(cell) > 0 for cell in paid)


def test_answers_stored_before_the_fields_option_existed_keep_their_key():
    """An empty `fields` asks nothing new: the key is the one computed without it."""
    from sheets.processors import get_processor
    from sheets.rows.reuse import ReuseKey

    llm = get_processor("llm")
    before = {"prompt": "Sort {name}", "model": "m", "categories": "a, b", "base_url": "u"}
    row = {"name": "Ada"}
    assert ReuseKey(llm, {**before, "fields": ""})(row) == ReuseKey(llm, before)(row)
    assert ReuseKey(llm, {**before, "fields": "age:int"})(row) != ReuseKey(llm, before)(row)
