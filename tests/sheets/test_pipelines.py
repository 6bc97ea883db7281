"""A sheet pipeline: a job's input columns may be an earlier job's outputs on the same
sheet (one that succeeded, or one it waits for with `after`), so clean -> llm on the
cleaned column -> export runs as a chain."""

from __future__ import annotations

import csv
import io

import pytest

from jobs.models import Job
from sheets import export
from sheets.kinds import SheetParamsError
from sheets.services import sheet_job_submit
from tests.sheets.factories import make_sheet
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
