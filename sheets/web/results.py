"""A job's results table on the sheet's page, and that table alone for filters, pages
and live refreshes."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from jobs.models import Job
from sheets.chains import sheet_jobs
from sheets.models import RowResult, Sheet
from sheets.selectors import (
    ISSUES,
    current_job,
    job_results,
    results_with_issues,
    row_inputs,
)
from sheets.services import (
    sheet_seen,
)
from sheets.web.access import visible_sheet

RESULTS_PER_PAGE = 50


TOKENS = "tokens"  # the llm processor's tokens of a row's request


REUSED_TOKENS = "0 (reused)"


def results_context(
    request: HttpRequest, sheet: Sheet, job: Job, pinned: bool = False
) -> dict[str, Any]:
    """The results table of `job`; `pinned`: a job the user asked for that is not the
    one the page follows live, so live refreshes keep it (sheets/sheet.js reads the mark)."""
    shown = request.GET.get("errors", "")
    errors_only = shown == "1"
    outputs = job.params.get("output_columns", [])
    issues_only = shown == ISSUES and ISSUES in outputs
    order = request.GET.get("order") or ("latest" if job.is_active else "row")
    which = "errors" if errors_only else ISSUES if issues_only else ""
    results = job_results(job, shown=which, latest_first=order == "latest")
    page = Paginator(results, RESULTS_PER_PAGE).get_page(request.GET.get("page"))
    inputs = row_inputs(sheet, [r.row_number for r in page.object_list])
    columns = job.params.get("columns", sheet.columns)
    index = [sheet.columns.index(c) for c in columns if c in sheet.columns]
    table = [
        {
            "result": result,
            "inputs": [
                (inputs.get(result.row_number) or [""] * len(sheet.columns))[i] for i in index
            ],
            "outputs": [_shown_output(result, c) for c in outputs],
        }
        for result in page.object_list
    ]
    return {
        "results_job": job,
        "results_pinned": pinned,
        "results_page": page,
        "results_table": table,
        "input_columns": columns,
        "output_columns": outputs,
        "errors_only": errors_only,
        "issues_only": issues_only,
        "shown": "1" if errors_only else ISSUES if issues_only else "",
        "issues_count": results_with_issues(job).count() if ISSUES in outputs else None,
        "order": order,
    }


def _shown_output(result: RowResult, column: str) -> str:
    """A row's output as the table shows it: a reused row's `tokens` are the original
    answer's, which this job did not pay (its `spent` counts 0), so it says "reused"."""
    if column == TOKENS and result.reused:
        return REUSED_TOKENS
    return result.outputs.get(column, "")


@require_GET
@login_required
def results(request: HttpRequest, sheet_id: int) -> HttpResponse:
    """The results table alone (filters, pages, live refreshes): of the asked job, else
    of the job the page follows; an asked job other than that one stays pinned."""
    sheet = visible_sheet(request, sheet_id)
    current = current_job(sheet)
    asked = request.GET.get("job", "")
    job = None
    if asked.isascii() and asked.isdigit():
        job = sheet_jobs(sheet).filter(pk=int(asked)).first()
    job = job or current
    if job is None:
        return HttpResponse("", status=204)
    sheet_seen(sheet=sheet, by=request.user)  # a live refresh: the owner sees them come in
    context = {"sheet": sheet, **results_context(request, sheet, job, job != current)}
    return render(request, "sheets/sheet_detail.html#results", context)
