"""A sheet pipeline: a job's input columns may be an earlier job's outputs on the same
sheet (one that succeeded, or one it waits for with `after`), so clean -> llm on the
cleaned column -> export runs as a chain."""

from __future__ import annotations

import csv
import io

import pytest

from jobs.models import Job
from jobs.web import live
from sheets.io import export
from sheets.run import SheetParamsError
from sheets.services import sheet_job_submit
from tests.sheets.factories import make_sheet, run_to_end
from tests.support.processes import wait_for

pytestmark = pytest.mark.django_db(transaction=True)
ROWS = [
    ["product", "price"],
    ["  apple  fruit ", "1"],
    ["carrot   vegetable", "2"],
    [" pear fruit", "3"],
]


@pytest.mark.cluster
def test_clean_then_llm_on_the_cleaned_column_then_export(fake_openai, settings, user, cluster):
    settings.CONVEYOR_LLM_API_KEY = ""
    fake_openai.categories = ["Fruit", "Vegetable"]
    sheet = make_sheet(user, ROWS)
    cleaning, _ = sheet_job_submit(sheet=sheet, owner=user, processor="clean", columns=["product"])
    llm_options = {"base_url": fake_openai.base_url, "prompt": "Classify {clean_product}"}
    llm_options["categories"] = "Fruit,Vegetable"
    sorting, _ = sheet_job_submit(
        sheet=sheet,
        owner=user,
        processor="llm",
        options=llm_options,
        columns=["clean_product"],
        after=[cleaning.pk],
    )
    assert sorting.params["sources"] == {"clean_product": cleaning.pk}
    wait_for(lambda: Job.objects.get(pk=sorting.pk).is_terminal, timeout=60, what="the second step")
    sorting.refresh_from_db()
    cleaning.refresh_from_db()
    assert sorting.status == Job.Status.SUCCEEDED, sorting.error
    assert sorting.started_at >= cleaning.finished_at
    asked = sorted(call.user_message for call in fake_openai.calls)
    assert asked == ["Classify apple fruit", "Classify carrot vegetable", "Classify pear fruit"]
    table = list(
        csv.reader(io.StringIO("".join(export.csv_chunks(sorting, sheet)).lstrip("\ufeff")))
    )
    assert table[0] == ["product", "price", "clean_product", "category", "tokens", "error"]
    assert [row[2:4] for row in table[1:]] == [
        ["apple fruit", "Fruit"],
        ["carrot vegetable", "Vegetable"],
        ["pear fruit", "Fruit"],
    ]


def test_an_output_column_needs_a_succeeded_or_awaited_job(user):
    sheet = make_sheet(user, ROWS)
    cleaning, _ = sheet_job_submit(sheet=sheet, owner=user, processor="clean", columns=["product"])
    with pytest.raises(SheetParamsError) as refused:
        sheet_job_submit(sheet=sheet, owner=user, processor="copy", columns=["clean_product"])
    assert "Not columns of this sheet: clean_product" in refused.value.errors["columns"]
    job, _ = sheet_job_submit(
        sheet=sheet, owner=user, processor="copy", columns=["clean_product"], after=[cleaning.pk]
    )
    assert job.params["sources"] == {"clean_product": cleaning.pk}


def test_a_two_step_chain_from_the_sheet_page_is_one_submission(user, client):
    client.force_login(user)
    sheet = make_sheet(user, ROWS)
    form = {"processor": "clean", "columns": ["product"], "mode": "watch"}
    steps = {"then_processor": ["copy", ""], "then_columns": ["clean_product", ""]}
    response = client.post(f"/sheets/{sheet.pk}/start/", {**form, **steps})
    assert response.status_code == 302, response.content.decode()[:2000]
    first, second = Job.objects.order_by("pk")
    assert (first.params["processor"], second.params["processor"]) == ("clean", "copy")
    assert list(second.upstream_links.values_list("depends_on_id", flat=True)) == [first.pk]
    assert second.params["sources"] == {"clean_product": first.pk}
    page = client.get(f"/sheets/{sheet.pk}/").content.decode()
    assert "Step 1 of 2: clean 0 %" in page
    assert f'entity=sheet:{sheet.pk}:after:{first.pk}&amp;entity=sheet:{sheet.pk}"' in page
    run_to_end(first)  # the relay's push for the first step's end shows the second step
    pushed = live.entity_fragment(Job.objects.get(pk=first.pk))
    assert 'id="sheet-chain"' in pushed and "Step 2 of 2: copy 0 %" in pushed


def test_a_refused_later_step_is_shown_and_no_step_is_made(user, client):
    client.force_login(user)
    sheet = make_sheet(user, ROWS)
    form = {"processor": "clean", "columns": ["product"]}
    steps = {"then_processor": ["copy"], "then_columns": ["no_such_column"]}
    response = client.post(f"/sheets/{sheet.pk}/start/", {**form, **steps})
    assert response.status_code == 400
    assert "Not columns of this sheet: no_such_column" in response.content.decode()
    assert not Job.objects.exists()
