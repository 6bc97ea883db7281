"""Which rows a sheet job still has to do, and reading them: the cells of its input
columns, or an earlier job's outputs where a pipeline step reads those (`sources`).

`RowSource` hands out rows in order from the job's cursor; its mode says which rows of
the range count (all, those without a result, or only failed ones).
"""

from __future__ import annotations

from typing import Any

from jobs.public import JobContext
from sheets.models import RowResult, Sheet, SheetRow

MISSING_WINDOW = 5_000  # rows looked at per query for rows without a result


class RowSource:
    """The rows a job still has to do, in order; `take` reads the next ones and moves
    past them. Modes (the cursor's `mode`): "all", every row of the range from the
    cursor; "missing" (a failed-rows pass: its failed results were deleted), every row
    of the range from the cursor that has no result yet, the failed ones and those never
    processed alike; "failed", only rows with a failed result (cursors of jobs retried
    before "missing" existed: the job's end checks what that leaves undone)."""

    def __init__(self, ctx: JobContext, sheet: Sheet, params: dict[str, Any]) -> None:
        cursor = ctx.cursor or {}
        self.job_id = ctx.job_id
        self.sheet = sheet
        self.columns = params["columns"]
        self.sources: dict[str, int] = params.get("sources") or {}
        self.mode = cursor.get("mode", "all")
        self.start = params["start_row"]
        self.next = cursor.get("next", params["start_row"])
        self.end = params["start_row"] + params["row_count"]  # exclusive

    def take(self, size: int) -> list[tuple[int, dict[str, str]]]:
        if self.mode == "failed":
            failed = RowResult.objects.filter(
                job_id=self.job_id, failed=True, row_number__gte=self.next, row_number__lt=self.end
            ).order_by("row_number")
            numbers = list(failed.values_list("row_number", flat=True)[:size])
        elif self.mode == "missing":
            numbers = self._without_result(size)
        else:
            numbers = list(range(self.next, min(self.next + size, self.end)))
        if self.mode == "missing" and len(numbers) < size:
            self.next = self.end  # every row to the end was looked at: none is left
        elif numbers:
            self.next = numbers[-1] + 1
        return load_rows(self.sheet, numbers, self.columns, self.sources)

    def _without_result(self, size: int) -> list[int]:
        # Rows before the cursor are stored or in flight: only rows from it on count.
        return rows_without_result(self.job_id, self.next, self.end, size)

    def describe(self, last: int) -> str:
        """Where the job is, in the terms of its own range, as its progress counts it:
        "Row 12 of 400" beside "12 / 400", not "of 1000" (the sheet's rows)."""
        if self.start == 1:
            where = f"Row {last} of {self.end - 1}"
        else:
            where = f"Row {last} of rows {self.start}–{self.end - 1}"
        redoing = {
            "missing": " (redoing failed and unprocessed rows)",
            "failed": " (redoing failed rows)",
        }
        return where + redoing.get(self.mode, "")

    def rewind(self, number: int) -> None:
        self.next = number


def rows_without_result(job_id: int, start: int, end: int, size: int) -> list[int]:
    """The first `size` row numbers in [start, end) that have no result of the job, in
    order: one query per MISSING_WINDOW rows."""
    numbers: list[int] = []
    while len(numbers) < size and start < end:
        stop = min(start + MISSING_WINDOW, end)
        stored = set(
            RowResult.objects.filter(
                job_id=job_id, row_number__gte=start, row_number__lt=stop
            ).values_list("row_number", flat=True)
        )
        numbers += [n for n in range(start, stop) if n not in stored][: size - len(numbers)]
        start = stop
    return numbers


def load_rows(
    sheet: Sheet, numbers: list[int], columns: list[str], sources: dict[str, int] | None = None
) -> list[tuple[int, dict]]:
    """`(number, {column: value})` for the input columns of these rows: one query, plus
    one per earlier job whose output columns are inputs here (`sources`)."""
    if not numbers:
        return []
    sources = sources or {}
    own = [c for c in columns if c not in sources]
    index = [sheet.columns.index(c) for c in own]
    rows = SheetRow.objects.filter(sheet=sheet, **_numbers_lookup("number", numbers)).order_by(
        "number"
    )
    loaded = [
        (number, {c: values[i] if i < len(values) else "" for c, i in zip(own, index, strict=True)})
        for number, values in rows.values_list("number", "values")
    ]
    for job_id in set(sources.values()):
        outputs = dict(
            RowResult.objects.filter(
                job_id=job_id, **_numbers_lookup("row_number", numbers)
            ).values_list("row_number", "outputs")
        )
        for number, row in loaded:
            for column, source in sources.items():
                if source == job_id:
                    row[column] = str((outputs.get(number) or {}).get(column, ""))
    return [(number, {c: row[c] for c in columns}) for number, row in loaded]


def _numbers_lookup(field: str, numbers: list[int]) -> dict[str, Any]:
    """A range for consecutive row numbers (the usual batch): cheaper to compile and to
    run than an IN list of a thousand."""
    if numbers == list(range(numbers[0], numbers[0] + len(numbers))):
        return {f"{field}__gte": numbers[0], f"{field}__lte": numbers[-1]}
    return {f"{field}__in": numbers}
