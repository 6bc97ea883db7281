"""A run's parameters (`SheetRun`) and their one validation, for every front end: the
sheet's page (`sheets.web.forms`), the API (a `sheets.process` job's params, through
the kind's `validate_params`), the CLI and schedules. `check()` gives the params a
`sheets.process` job is stored with, or raises SheetParamsError with every problem at
once, keyed by field (or option) name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Q

from jobs.models import Job
from jobs.public import may_submit_for
from sheets.io.sources import SourceError
from sheets.models import Sheet
from sheets.names import IMPORT, KIND, entity_key
from sheets.processors import OptionsError, UnknownProcessor, get_processor

MAX_ROW_TIMEOUT = 3600  # seconds
UNSET: Any = object()  # `google_row_count` not given: the run's `row_count` then


class SheetParamsError(OptionsError):
    """Bad job parameters; `errors` maps a field (or option) name to its message (a
    processor's OptionsError, widened to every field of a run)."""


@dataclass(frozen=True)
class SheetRun:
    """What a user asks of a run on a sheet, as given (strings from a form or the command
    line, JSON values from the API); nothing is trusted before `check()`.

    `after`: jobs it waits for (a pipeline step, or the sheet's import job); `after_any`:
    jobs it waits for whatever their outcome (the API's and the CLI's after_any); `trial`: a
    first few rows, to see the answers and what they cost; `google_url`: re-read this
    Google Sheet when the job starts (schedules); `priority` goes to `job_submit`, which
    applies the one priority rule of pages, API and CLI.
    """

    sheet_id: Any = None
    processor: Any = None
    options: Any = None
    columns: Any = None
    start_row: Any = None
    row_count: Any = None
    row_timeout: Any = None
    priority: Any = None
    after: Any = ()
    after_any: Any = ()
    trial: bool = False
    google_url: Any = None
    google_row_count: Any = UNSET

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> SheetRun:
        """A run from a job's params (the API's, a schedule's): unknown keys are ignored,
        as the stored params are rebuilt by `check()`."""
        names = {f.name for f in dataclasses.fields(cls)} - {"priority", "after_any"}
        return cls(**{name: params[name] for name in names if name in params})

    def replace(self, **changes: Any) -> SheetRun:
        return dataclasses.replace(self, **changes)

    def check(self, owner) -> dict[str, Any]:
        """The params of a `sheets.process` job for `owner` (the sheet's owner, or someone
        who may act for them), or SheetParamsError.

        Input columns may be the sheet's own or the output columns of an earlier job on
        the same sheet (a pipeline step): one that succeeded, or one it waits for
        (`after` or `after_any`, both stored as the params' `after`, as the API stores
        them). `sources` records which job gives each such column. On a sheet still
        being imported, a run that waits for the import has its rows checked for form
        now and counted when it starts (`row_count` None until then).
        """
        sheet = Sheet.objects.visible_to(owner).filter(pk=_int(self.sheet_id)).first()
        if sheet is None or not may_submit_for(owner, sheet.owner_id):  # another's: a permission
            raise SheetParamsError({"sheet_id": "No such sheet."})
        after = [*(self.after or []), *(self.after_any or [])]
        importing = not sheet.is_ready and waits_for_import(sheet, after)
        if not sheet.is_ready and not importing:
            raise SheetParamsError(
                {"sheet_id": "The sheet is still being imported (or failed to)."}
            )
        errors: dict[str, str] = {}

        def check(fn, *args):
            try:
                return fn(*args)
            except SheetParamsError as exc:
                errors.update(exc.errors)
                return None

        outputs = earlier_outputs(sheet, after)
        columns = check(_input_columns, sheet, self.columns, outputs) or list(sheet.columns)
        limit = None if importing else sheet.row_count
        row_range = check(_row_range, limit, self.start_row, self.row_count)
        row_timeout = check(_row_timeout, self.row_timeout)
        processor = check(_processor, self.processor)
        options = check(_options, processor, self.options, columns) if processor else None
        google = check(self._google, sheet)
        if errors:
            raise SheetParamsError(errors)
        return {
            **(google or {}),
            **({"trial": True} if self.trial is True else {}),
            "sheet_id": sheet.pk,
            "processor": processor.name,
            "options": options,
            "columns": columns,
            "start_row": row_range[0],
            "row_count": row_range[1],
            **({"rows_wanted": _int(self.row_count)} if importing else {}),
            "output_columns": processor.output_columns(options, columns),
            "row_timeout": row_timeout,
            "sources": {column: outputs[column] for column in columns if column in outputs},
            **({"after": sorted({int(i) for i in after})} if after else {}),
        }

    def _google(self, sheet: Sheet) -> dict[str, Any]:
        """`google_url`: re-read this Google Sheet when the job starts (schedules do), with
        the worksheet the sheet was read from and the row count asked for (None: to the
        end)."""
        url = self.google_url
        if url in (None, ""):
            return {}
        if not isinstance(url, str):
            raise SheetParamsError({"google_url": "must be a Google Sheets link"})
        from sheets.io import google  # gspread + google-auth (~25 MB): loaded when needed

        try:
            google_id, _ = google.parse_google_url(url)
        except SourceError as exc:
            raise SheetParamsError({"google_url": str(exc)}) from None
        if google_id != sheet.google_id:
            raise SheetParamsError(
                {"google_url": "is not the Google Sheet this sheet was read from"}
            )
        rows = self.row_count if self.google_row_count is UNSET else self.google_row_count
        return {
            "google_url": url.strip(),
            "google_worksheet": sheet.worksheet,
            "google_row_count": _int(rows) if rows not in (None, "") else None,
        }


def earlier_outputs(sheet: Sheet, after: list[int]) -> dict[str, int]:
    """Output columns of the sheet's earlier jobs that a new job may read: those of jobs
    that succeeded or that it waits for (the latest job giving a column wins)."""
    jobs = Job.objects.filter(kind=KIND, params__sheet_id=sheet.pk).filter(
        Q(status=Job.Status.SUCCEEDED) | Q(pk__in=[i for i in after if isinstance(i, int)])
    )
    found: dict[str, int] = {}
    for job_id, params in jobs.order_by("pk").values_list("pk", "params"):
        for column in (params or {}).get("output_columns", []):
            if column not in sheet.columns:
                found[column] = job_id
    return found


def waits_for_import(sheet: Sheet, after: list[Any]) -> bool:
    """Whether `after` names the sheet's active import job: a job queued on a sheet still
    being imported runs once the rows are stored, and learns their number then."""
    return Job.objects.filter(
        kind=IMPORT,
        entity_key=entity_key(sheet),
        status__in=Job.ACTIVE,
        pk__in=[i for i in after if isinstance(i, int)],
    ).exists()


def rows_to_do(available_from: int, start: int, wanted: int | None) -> int:
    """How many rows a run from `start` does on a sheet of `available_from` rows: those
    `wanted` (None: to the end), at most the rows there are."""
    available = available_from - start + 1
    return min(wanted, available) if wanted else available


def _processor(name: Any):
    try:
        return get_processor(str(name or ""))
    except UnknownProcessor as exc:
        raise SheetParamsError({"processor": str(exc)}) from None


def _options(processor, raw: Any, columns: list[str]) -> dict[str, Any]:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SheetParamsError({"options": "options must be an object"})
    try:
        return processor.validate_options(raw, columns)
    except OptionsError as exc:
        raise SheetParamsError(exc.errors) from None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _input_columns(sheet: Sheet, columns: Any, outputs: dict[str, int]) -> list[str]:
    if columns in (None, "", []):
        return list(sheet.columns)
    if isinstance(columns, str):
        columns = [c.strip() for c in columns.split(",") if c.strip()]
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise SheetParamsError({"columns": "columns must be a list of column names"})
    unknown = [c for c in columns if c not in sheet.columns and c not in outputs]
    if unknown:
        known = [*sheet.columns, *(f"{c} (from job #{j})" for c, j in outputs.items())]
        raise SheetParamsError(
            {
                "columns": f"Not columns of this sheet: {', '.join(unknown)}. "
                f"Columns are: {', '.join(known)}."
            }
        )
    return list(dict.fromkeys(columns))


def _row_range(sheet_rows: int | None, start: Any, count: Any) -> tuple[int, int | None]:
    """The first row and how many rows; on a sheet still being imported (`sheet_rows`
    None) checked for form only, and the count left to the job's start (None)."""
    first = 1 if start in (None, "") else _int(start)
    if sheet_rows is None and (first is None or first < 1):
        raise SheetParamsError({"start_row": "Start row must be a whole number from 1."})
    if sheet_rows is not None and (first is None or not 1 <= first <= sheet_rows):
        raise SheetParamsError({"start_row": f"Start row must be between 1 and {sheet_rows}."})
    rows = _int(count)
    if count not in (None, "") and (rows is None or rows < 1):
        raise SheetParamsError({"row_count": "Number of rows must be a positive whole number."})
    if sheet_rows is None:
        return first, None
    return first, rows_to_do(sheet_rows, first, rows)


def _row_timeout(value: Any) -> float:
    if value in (None, ""):
        return settings.CONVEYOR_ROW_TIME_LIMIT
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise SheetParamsError(
            {"row_timeout": "Row time limit must be a number of seconds."}
        ) from None
    if not 0 < seconds <= MAX_ROW_TIMEOUT:
        raise SheetParamsError(
            {"row_timeout": f"Row time limit must be between 0 and {MAX_ROW_TIMEOUT} s."}
        )
    return seconds
