"""Results out: CSV and XLSX downloads of a job's rows (input columns, outputs, error),
streamed in chunks (the write-back to a Google Sheet is a job kind in `sheets/kinds.py`).

Every cell a spreadsheet would run as a formula (`= + - @`, tab, CR first) is
neutralised with a leading apostrophe, in both formats: exported data can come from
anyone (the sheet's author, a website, a model) and must not execute on opening.
"""

from __future__ import annotations

import csv
import re
import tempfile
from collections.abc import Iterator
from typing import Any

from jobs.models import Job
from sheets.models import RowResult, Sheet, SheetRow

CHUNK_ROWS = 2_000
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?([eE][+-]?\d+)?$")


def neutralise(value: Any) -> str:
    """The cell as text, made inert if a spreadsheet would evaluate it."""
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_STARTS) and not PLAIN_NUMBER.match(text):
        return "'" + text
    return text


def output_columns(job: Job, sheet: Sheet) -> list[str]:
    """The job's own output columns (after the sheet's and the earlier steps' ones)."""
    derived = inputs_from_earlier_jobs(job)
    return [
        c
        for c in job.params.get("output_columns", [])
        if c not in sheet.columns and c not in derived
    ]


def inputs_from_earlier_jobs(job: Job) -> dict[str, int]:
    """Input columns that earlier jobs' outputs gave (a pipeline step): column -> job."""
    return dict(job.params.get("sources") or {})


def export_header(job: Job, sheet: Sheet) -> list[str]:
    return [*sheet.columns, *inputs_from_earlier_jobs(job), *output_columns(job, sheet), "error"]


def _outputs(job_id: int, first: int, last: int) -> dict[int, tuple[dict, str]]:
    rows = RowResult.objects.filter(job_id=job_id, row_number__gte=first, row_number__lt=last)
    return {
        n: (out or {}, error)
        for n, out, error in rows.values_list("row_number", "outputs", "error")
    }


def iter_export_rows(job: Job, sheet: Sheet) -> Iterator[list[str]]:
    """The job's rows in order, chunk by chunk: the sheet's values, the earlier steps'
    outputs it read, its own outputs and error; a few queries per CHUNK_ROWS rows."""
    derived = inputs_from_earlier_jobs(job)
    outputs = output_columns(job, sheet)
    start = job.params.get("start_row", 1)
    end = start + job.params.get("row_count", sheet.row_count)
    for first in range(start, end, CHUNK_ROWS):
        last = min(first + CHUNK_ROWS, end)
        results = _outputs(job.pk, first, last)
        earlier = {source: _outputs(source, first, last) for source in set(derived.values())}
        rows = SheetRow.objects.filter(sheet=sheet, number__gte=first, number__lt=last)
        for number, values in rows.order_by("number").values_list("number", "values"):
            out, error = results.get(number, ({}, ""))
            steps = [
                earlier[source].get(number, ({}, ""))[0].get(c, "") for c, source in derived.items()
            ]
            yield [*values, *steps, *(out.get(c, "") for c in outputs), error]


class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_chunks(job: Job, sheet: Sheet) -> Iterator[str]:
    """CSV text with a BOM (so Excel reads UTF-8), neutralised, one line at a time."""
    writer = csv.writer(_Echo())
    yield "\ufeff" + writer.writerow([neutralise(v) for v in export_header(job, sheet)])
    for row in iter_export_rows(job, sheet):
        yield writer.writerow([neutralise(v) for v in row])


def xlsx_file(job: Job, sheet: Sheet):
    """A temporary file holding the XLSX (openpyxl's write-only mode streams rows)."""
    from openpyxl import Workbook  # ~25 MB with numpy: loaded by exports only

    workbook = Workbook(write_only=True)
    worksheet = workbook.create_sheet(title="Results")
    worksheet.append([neutralise(v) for v in export_header(job, sheet)])
    for row in iter_export_rows(job, sheet):
        worksheet.append([neutralise(v) for v in row])
    handle = tempfile.TemporaryFile(prefix="conveyor-export-", suffix=".xlsx")  # noqa: SIM115 - closed by the response
    workbook.save(handle)
    handle.seek(0)
    return handle
