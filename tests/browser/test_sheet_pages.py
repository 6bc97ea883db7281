"""Sheets in a real browser: the sample in two clicks, an upload run in the background
with the llm processor, results filtered and exported, and a bad file refused."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from jobs.models import Job
from sheets.models import RowResult, Sheet
from tests.sheets.factories import make_sheet

pytestmark = [pytest.mark.browser, pytest.mark.cluster, pytest.mark.django_db(transaction=True)]

S = Job.Status


def test_the_sample_sheet_is_cleaned_in_two_clicks_and_exported(cluster, open_page, user):
    page = open_page(user, "/sheets/")
    page.locator("#try-sample").click()  # click 1
    page.wait_for_url("**/sheets/*/?processor=clean")
    page.locator("#start-watch").click()  # click 2

    page.locator("#current-job-live .status", has_text="Succeeded").wait_for(timeout=30_000)
    page.locator("#results tr[data-row='30']").wait_for()
    job = Job.objects.get(owner=user)
    assert (job.status, job.processed) == (S.SUCCEEDED, 30)
    bob = page.locator("#results tr[data-row='2'] td.output").all_inner_texts()
    assert "bob.smith@example.com" in bob, bob

    page.locator("#results a", has_text="Failed rows").click()
    page.wait_for_selector("#results[data-errors='1']")
    failed = RowResult.objects.filter(job=job, failed=True).count()
    assert page.locator("#results tbody tr[data-row]").count() == failed

    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    text = Path(download.value.path()).read_text(encoding="utf-8-sig")
    exported = list(csv.reader(io.StringIO(text)))
    assert exported[0][:5] == ["name", "email", "phone", "website", "company"]
    assert len(exported) == 31


def test_an_upload_runs_in_the_background_with_the_llm_processor(
    fake_openai,
    cluster,
    open_page,
    user,  # the fake first: the web process allows it
):
    fake_openai.latency = 0.05
    content = "name;notes\n" + "".join(f"Pear {i};ripe\n" for i in range(1, 31))
    page = open_page(user, "/sheets/")
    page.locator("input[name=file]").set_input_files(
        {"name": "pears.csv", "mimeType": "text/csv", "buffer": content.encode("cp1252")}
    )
    page.get_by_role("button", name="Upload and preview").click()
    page.locator("h1", has_text="pears.csv").wait_for()
    assert "delimiter “;”" in page.locator(".page-head .muted").inner_text()
    assert page.locator("table.preview tbody tr").first.inner_text().split("\t")[1] == "Pear 1"

    page.locator("select[name=processor]").select_option("llm")
    options = page.locator("#processor-options")
    options.locator("legend", has_text="LLM").wait_for()
    options.locator("input[name=opt_base_url]").fill(fake_openai.base_url)
    options.locator("textarea[name=opt_prompt]").fill("Describe {name}")
    page.locator("input[name=columns][value=notes]").uncheck()
    page.locator("input[name=start_row]").fill("5")
    page.locator("input[name=row_count]").fill("10")
    page.locator("#start-background").click()

    page.wait_for_url("**/sheets/")
    sheet = Sheet.objects.get(owner=user, name="pears.csv")
    page.locator("table.sheets tr", has_text="pears.csv").locator(".status").wait_for()
    job = Job.objects.get(owner=user)
    page.goto(sheet.get_absolute_url())
    page.locator("#current-job-live .status", has_text="Succeeded").wait_for(timeout=30_000)
    page.locator("#results tr[data-row='14']").wait_for()
    rows = sorted(RowResult.objects.filter(job=job).values_list("row_number", flat=True))
    assert rows == list(range(5, 15))
    assert page.locator("#results tr[data-row='5'] td.output").first.inner_text() == (
        "echo: Describe Pear 5"
    )


def test_llm_prompt_preview_errors_and_a_trial_on_five_rows_shown_live(
    fake_openai,
    cluster,
    open_page,
    user,  # the fake first: the web process allows it
):
    sheet = make_sheet(user, [["name", "notes"], *([f"Plum {i}", "dark"] for i in range(1, 21))])
    page = open_page(user, sheet.get_absolute_url())
    page.locator("select[name=processor]").select_option("llm")
    options = page.locator("#processor-options")
    options.locator("#preview-prompt").wait_for()
    options.locator("input[name=opt_base_url]").fill(fake_openai.base_url)
    options.locator("input[name=opt_api_key]").fill("sk-browser-secret")
    options.locator("textarea[name=opt_prompt]").fill("About {colour}")
    options.locator("#preview-prompt").click()
    errors = page.locator("#llm-preview #preview-errors")
    errors.wait_for()
    assert "The prompt uses {colour}, which is not a column" in errors.inner_text()

    options.locator("textarea[name=opt_prompt]").fill("Describe {name}, {notes}")
    options.locator("input[name=preview_row]").fill("3")
    options.locator("#preview-prompt").click()
    page.locator("#llm-preview h3", has_text="Prompt for row 3").wait_for()
    preview = page.locator("#llm-preview").inner_text()
    assert "Describe Plum 3, dark" in preview and "A rough estimate" in preview
    assert "sk-browser-secret" not in page.content()

    options.locator("#try-rows").click()
    page.locator("#current-job-live .status", has_text="Succeeded").wait_for(timeout=30_000)
    page.locator("#results tr[data-row='5']").wait_for()
    assert page.locator("#results tbody tr[data-row]").count() == 5
    assert "echo: Describe Plum 1, dark" in page.locator("#results").inner_text()
    assert page.locator("#current-job-live .spent-prompt-tokens").inner_text() != ""
    assert len(fake_openai.calls) == 5


def test_a_typed_key_and_the_csrf_token_never_go_into_a_url(fake_openai, open_page, user):
    """The options notice refreshes as the form changes (a GET): it learns that a key is
    typed, never the key, and no request of the page carries the CSRF token in its URL."""
    sheet = make_sheet(user, [["name"], ["Plum"]])
    page = open_page(user, sheet.get_absolute_url())
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    page.locator("select[name=processor]").select_option("llm")
    options = page.locator("#processor-options")
    options.locator("#preview-prompt").wait_for()
    token = page.locator("#start-form input[name=csrfmiddlewaretoken]").input_value()
    options.locator("input[name=opt_base_url]").fill(fake_openai.base_url)
    options.locator("input[name=opt_api_key]").fill("sk-typed-into-the-form")
    options.locator("input[name=opt_model]").fill("plum-model")
    options.locator("input[name=opt_model]").press("Tab")  # change: the notice refreshes
    notice = page.locator("#processor-notice", has_text="(model plum-model)")
    notice.wait_for()
    assert "No API key is configured" not in notice.inner_text()
    notices = [url for url in urls if "/options/notice/" in url]
    assert notices and all("has_opt_api_key=1" in url for url in notices[1:])
    for url in urls:
        assert "sk-typed-into-the-form" not in url and "&opt_api_key=" not in url, url
        assert token not in url and "csrfmiddlewaretoken" not in url, url


def test_a_bad_file_gets_a_clear_message_and_no_sheet(open_page, user):
    page = open_page(user, "/sheets/")
    page.locator("input[name=file]").set_input_files(
        {"name": "empty.csv", "mimeType": "text/csv", "buffer": b""}
    )
    page.get_by_role("button", name="Upload and preview").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "empty" in alert.inner_text().lower()
    assert not Sheet.objects.exists()
