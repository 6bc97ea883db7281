"""The sheet job kinds: `sheets.process` (its parameters, checked for users of the
pages, API and CLI, and the handler that hands the rows to `sheets.pipeline`) and
`sheets.write_back` (a finished job's outputs written to its Google Sheet).

A `sheets.process` job with `google_url` (a schedule on a Google Sheet) re-reads the
sheet when it starts: a new Sheet is imported and the job's params point at it.
"""

from __future__ import annotations

import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils import timezone

from jobs.models import Job
from jobs.public import (
    Cancelled,
    JobContext,
    PermanentError,
    Preempted,
    SliceDone,
    job_kind,
    may_submit_for,
)
from sheets.io.export import inputs_from_earlier_jobs, iter_export_rows, output_columns
from sheets.io.importing import kept_upload, sheet_from_google, store_table
from sheets.io.sources import SourceError, open_upload
from sheets.models import RowResult, Sheet
from sheets.pipeline import RowSource, rows_without_result, run_in_batches, run_streaming
from sheets.processors import OptionsError, get_processor
from sheets.processors.base import UnknownProcessor

KIND = "sheets.process"
WRITE_BACK = "sheets.write_back"
IMPORT = "sheets.import"
IMPORT_PROGRESS_SECONDS = 0.25


def entity_key(sheet: Sheet | int) -> str:
    return f"sheet:{sheet if isinstance(sheet, int) else sheet.pk}"


# -- parameters -------------------------------------------------------------------


class SheetParamsError(ValueError):
    """Bad job parameters; `errors` maps a field (or option) name to its message."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


def validate_params(params: dict[str, Any], owner) -> dict[str, Any]:
    """Check and normalise `{sheet_id, processor, options, columns, start_row, row_count}`
    and `trial: true` (a first few rows, to see the answers and what they cost).

    Input columns may be the sheet's own or the output columns of an earlier job on the
    same sheet (a pipeline step): one that succeeded, or one it waits for (`after`,
    a list of job ids). `sources` records which job gives each such column. Every
    problem is reported at once, keyed by field (or option) name.
    """
    sheet = Sheet.objects.visible_to(owner).filter(pk=_int(params.get("sheet_id"))).first()
    if sheet is None or not may_submit_for(owner, sheet.owner_id):  # another's: a permission
        raise SheetParamsError({"sheet_id": "No such sheet."})
    after = params.get("after") or []
    importing = not sheet.is_ready and waits_for_import(sheet, after)
    if not sheet.is_ready and not importing:
        raise SheetParamsError({"sheet_id": "The sheet is still being imported (or failed to)."})
    errors: dict[str, str] = {}

    def check(fn, *args):
        try:
            return fn(*args)
        except SheetParamsError as exc:
            errors.update(exc.errors)
            return None

    outputs = earlier_outputs(sheet, after)
    columns = check(_input_columns, sheet, params.get("columns"), outputs) or list(sheet.columns)
    rows_of = _rows_once_imported if importing else _row_range
    row_range = check(rows_of, sheet, params.get("start_row"), params.get("row_count"))
    row_timeout = check(_row_timeout, params.get("row_timeout"))
    processor = check(_processor, params.get("processor"))
    options = check(_options, processor, params.get("options"), columns) if processor else None
    google = check(_google, sheet, params)
    if errors:
        raise SheetParamsError(errors)
    return {
        **(google or {}),
        **({"trial": True} if params.get("trial") is True else {}),
        "sheet_id": sheet.pk,
        "processor": processor.name,
        "options": options,
        "columns": columns,
        "start_row": row_range[0],
        "row_count": row_range[1],
        **({"rows_wanted": _int(params.get("row_count"))} if importing else {}),
        "output_columns": processor.output_columns(options, columns),
        "row_timeout": row_timeout,
        "sources": {column: outputs[column] for column in columns if column in outputs},
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


def _google(sheet: Sheet, params: dict[str, Any]) -> dict[str, Any]:
    """`google_url`: re-read this Google Sheet when the job starts (schedules do), with
    the worksheet the sheet was read from and the row count asked for (None: to the end)."""
    url = params.get("google_url")
    if url in (None, ""):
        return {}
    if not isinstance(url, str):
        raise SheetParamsError({"google_url": "must be a Google Sheets link"})
    from sheets.io import google  # gspread + google-auth (~25 MB): loaded when a sheet needs them

    try:
        google_id, _ = google.parse_google_url(url)
    except SourceError as exc:
        raise SheetParamsError({"google_url": str(exc)}) from None
    if google_id != sheet.google_id:
        raise SheetParamsError({"google_url": "is not the Google Sheet this sheet was read from"})
    rows = params["google_row_count"] if "google_row_count" in params else params.get("row_count")
    return {
        "google_url": url.strip(),
        "google_worksheet": sheet.worksheet,
        "google_row_count": _int(rows) if rows not in (None, "") else None,
    }


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


def _row_range(sheet: Sheet, start: Any, count: Any) -> tuple[int, int]:
    first = 1 if start in (None, "") else _int(start)
    if first is None or not 1 <= first <= sheet.row_count:
        raise SheetParamsError({"start_row": f"Start row must be between 1 and {sheet.row_count}."})
    available = sheet.row_count - first + 1
    if count in (None, ""):
        return first, available
    rows = _int(count)
    if rows is None or rows < 1:
        raise SheetParamsError({"row_count": "Number of rows must be a positive whole number."})
    return first, min(rows, available)


def waits_for_import(sheet: Sheet, after: list[Any]) -> bool:
    """Whether `after` names the sheet's active import job: a job queued on a sheet still
    being imported runs once the rows are stored, and learns their number then."""
    return Job.objects.filter(
        kind=IMPORT,
        entity_key=entity_key(sheet),
        status__in=Job.ACTIVE,
        pk__in=[i for i in after if isinstance(i, int)],
    ).exists()


def _rows_once_imported(sheet: Sheet, start: Any, count: Any) -> tuple[int, None]:
    """The row range of a job queued during the import: checked for form now, against
    the sheet's rows when the job starts (`row_count` None until then)."""
    first = 1 if start in (None, "") else _int(start)
    if first is None or first < 1:
        raise SheetParamsError({"start_row": "Start row must be a whole number from 1."})
    if count not in (None, "") and (_int(count) is None or _int(count) < 1):
        raise SheetParamsError({"row_count": "Number of rows must be a positive whole number."})
    return first, None


def _rows_known(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """A job queued while its sheet was imported: its rows, now that they are stored."""
    sheet = Sheet.objects.filter(pk=params["sheet_id"]).first()
    if sheet is None or not sheet.is_ready:
        raise PermanentError("The sheet's import did not finish: there are no rows to process.")
    start = params["start_row"]
    if start > sheet.row_count:
        raise PermanentError(
            f"The sheet has {sheet.row_count:,} rows; the job starts at row {start}."
        )
    available = sheet.row_count - start + 1
    wanted = params.get("rows_wanted")
    fresh = {**params, "row_count": min(wanted, available) if wanted else available}
    key = Job.objects.filter(pk=ctx.job_id).values_list("entity_key", flat=True).first()
    ctx.replace_input(
        fresh,
        total=fresh["row_count"],
        entity_key=key or "",
        message=f"The import stored {sheet.row_count:,} rows; processing {fresh['row_count']:,} "
        f"from row {start}",
    )
    return fresh


def _row_timeout(value: Any) -> float:
    if value in (None, ""):
        return settings.CONVEYOR_ROW_TIME_LIMIT
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise SheetParamsError(
            {"row_timeout": "Row time limit must be a number of seconds."}
        ) from None
    if not 0 < seconds <= 3600:
        raise SheetParamsError({"row_timeout": "Row time limit must be between 0 and 3600 s."})
    return seconds


# -- the kind -----------------------------------------------------------------------


def _entity_key_for(params: dict[str, Any]) -> str:
    return entity_key(params["sheet_id"])


def _label_for(params: dict[str, Any]) -> str:
    name = Sheet.objects.filter(pk=params["sheet_id"]).values_list("name", flat=True).first()
    trial = f" · trial on {params['row_count']} rows" if params.get("trial") else ""
    return f"{name or 'sheet'} · {get_processor(params['processor']).label}{trial}"


def prepare_failed_rows_retry(job: Job) -> dict[str, Any]:
    """A failed-rows pass (inside the retry's transaction): the failed rows' results are
    deleted, so they count as not processed, and the job then does every row of its
    range without a result: those, and the rows it never reached (a job cancelled or
    failed midway) — a retry never ends Succeeded over rows it skipped. The message
    says which rows it will do."""
    start, count = job.params["start_row"], job.params.get("row_count") or 0
    in_range = RowResult.objects.filter(
        job=job, row_number__gte=start, row_number__lt=start + count
    )
    redo, _ = in_range.filter(failed=True).delete()
    kept = in_range.count()
    return {
        "cursor": {"next": start, "mode": "missing"},
        "processed": kept,
        "failed": 0,
        "message": failed_rows_retry_plan(redo, count - kept - redo),
    }


def failed_rows_retry_plan(failed: int, never: int) -> str:
    """What a failed-rows retry will do, for the job's message and timeline."""
    plan = f"Redo {failed} failed row{'s' if failed != 1 else ''}"
    if never > 0:
        plan += f" and process the {never} row{'s' if never != 1 else ''} never processed"
    return plan


@job_kind(
    KIND,
    label="Process a sheet",
    validate_params=validate_params,
    retry_failed_rows=prepare_failed_rows_retry,
    entity_key_for=_entity_key_for,
    label_for=_label_for,
    total_for=lambda params: params["row_count"],
)
def process_sheet(ctx: JobContext) -> dict[str, Any]:
    params = ctx.params
    if params.get("google_url") and not params.get("google_read_at"):
        params = reread_google_sheet(ctx, params)
    if params.get("row_count") is None:
        params = _rows_known(ctx, params)
    sheet = Sheet.objects.filter(pk=params["sheet_id"]).first()
    if sheet is None:
        raise PermanentError("The sheet was deleted.")
    try:
        processor = get_processor(params["processor"])
        options = processor.validate_options(params["options"], params["columns"])
    except (UnknownProcessor, OptionsError) as exc:
        raise PermanentError(f"Cannot run processor {params['processor']!r}: {exc}") from None
    if ctx.total is None:
        ctx.progress(ctx.processed, total=params["row_count"], message="Starting")
    source = RowSource(ctx, sheet, params)
    run = run_streaming if processor.is_async else run_in_batches
    run(ctx, source, processor, options, params["row_timeout"])
    check_every_row_processed(ctx, params)
    return {
        "processed": ctx.processed,
        "failed": ctx.failed,
        "reused": RowResult.objects.filter(job_id=ctx.job_id, reused=True).count(),
        "output_columns": params["output_columns"],
    }


def check_every_row_processed(ctx: JobContext, params: dict[str, Any]) -> None:
    """The job is never Succeeded while rows of its range have no result: here, where
    the kind ends, rows left without one (a cursor of an older failed-rows retry, which
    redid only failed rows; a row the sheet no longer holds) fail the job, saying how
    many and which is first, with its counters made true and its cursor set so that a
    retry processes exactly those rows."""
    start, count = params["start_row"], params["row_count"]
    rows = RowResult.objects.filter(
        job_id=ctx.job_id, row_number__gte=start, row_number__lt=start + count
    )
    stored = rows.count()
    if stored >= count:
        return
    [first] = rows_without_result(ctx.job_id, start, start + count, 1)
    missing = count - stored
    with suppress(SliceDone, Preempted):  # it ends here all the same; a cancel or pause wins
        ctx.commit(
            cursor={"next": start, "mode": "missing"},
            processed=stored,
            failed=rows.filter(failed=True).count(),
        )
    raise PermanentError(
        f"{missing} of the job's {count} rows were never processed (row {first} the first), "
        "so it cannot count as succeeded. Retry it to process them."
    )


def reread_google_sheet(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """Import the Google Sheet again (as a new Sheet of the job's owner) and point the
    job at it: same columns, processor and options, the rows it has now."""
    owner = get_user_model().objects.filter(pk=ctx.owner_id).first()
    if owner is None:
        raise PermanentError("The job has no owner to import the Google Sheet for.")
    try:
        sheet = sheet_from_google(
            url_or_id=params["google_url"],
            owner=owner,
            worksheet=params.get("google_worksheet") or None,
        )
    except SourceError as exc:
        raise PermanentError(f"Could not re-read the Google Sheet: {exc}") from None
    try:
        fresh = _read_from(sheet, params)
    except PermanentError:
        sheet.delete()
        raise
    ctx.replace_input(
        fresh,
        total=fresh["row_count"],
        entity_key=entity_key(sheet),
        message=f"Re-read the Google Sheet “{sheet.name}”: {sheet.row_count} rows "
        f"(sheet #{sheet.pk}); processing {fresh['row_count']} from row {fresh['start_row']}",
    )
    return fresh


def _read_from(sheet: Sheet, params: dict[str, Any]) -> dict[str, Any]:
    missing = [column for column in params["columns"] if column not in sheet.columns]
    if missing:
        raise PermanentError(
            f"The Google Sheet no longer has the column(s) {', '.join(missing)}; its "
            f"columns are {', '.join(sheet.columns)}."
        )
    start = params["start_row"]
    if start > sheet.row_count:
        raise PermanentError(
            f"The Google Sheet has {sheet.row_count} rows; the job starts at row {start}."
        )
    available = sheet.row_count - start + 1
    wanted = params.get("google_row_count")
    return {
        **params,
        "sheet_id": sheet.pk,
        "row_count": min(wanted, available) if wanted else available,
        "google_read_at": timezone.now().isoformat(),
    }


# -- Google Sheets write-back, as a job of its own (it can be slow or fail) ------------


@job_kind(WRITE_BACK, label="Write results back to Google Sheets", max_attempts=3)
def write_back_job(ctx: JobContext) -> dict[str, Any]:
    from sheets.io import google  # gspread + google-auth (~25 MB): loaded when a job needs them

    source = Job.objects.filter(pk=ctx.params["job_id"]).first()
    if source is None:
        raise PermanentError("The job whose results should be written back was deleted.")
    sheet = Sheet.objects.filter(pk=source.params["sheet_id"]).first()
    if sheet is None or not sheet.google_id:
        raise PermanentError("Only sheets imported from Google Sheets can be written back.")
    outputs = output_columns(source, sheet)
    skip = len(sheet.columns) + len(inputs_from_earlier_jobs(source))
    columns: dict[str, list[str]] = {c: [] for c in outputs}
    for row in iter_export_rows(source, sheet):
        for offset, name in enumerate(outputs):
            # Written RAW by write_back: Google Sheets stores formulas as text.
            columns[name].append(str(row[skip + offset]))
    ctx.progress(0, total=1, message=f"Writing {len(outputs)} columns to Google Sheets")
    cells = google.write_back(
        sheet.google_id,
        sheet.worksheet,
        sheet.columns,
        columns,
        first_row=source.params.get("start_row", 1) + 1,
    )
    ctx.progress(1, total=1, message=f"Wrote {cells} cells")
    return {"cells": cells, "columns": outputs}


# -- large uploads, imported in the background -------------------------------------------


@job_kind(IMPORT, label="Import a sheet", resumable=False, max_attempts=3)
def import_sheet(ctx: JobContext) -> dict[str, Any]:
    """Read, check and store an uploaded file's rows into its importing Sheet.

    The rows go in with the sheet's "ready" state in one transaction at the end, so a
    crash or a cancel leaves no half sheet (a crash restarts the import from the file).
    """
    # `upload`: the kept file's name (older jobs: `path`, of which only the name counts).
    path = kept_upload(ctx.params.get("upload") or Path(ctx.params.get("path", "")).name)
    sheet = Sheet.objects.filter(pk=ctx.params["sheet_id"]).first()
    if sheet is None:
        path.unlink(missing_ok=True)
        raise PermanentError("The sheet was deleted before its rows were imported.")
    if not path.is_file():  # OSError's message would name the server's path
        gone = "The uploaded file is gone from the server: upload it again."
        _import_failed(sheet, path, gone)
        raise PermanentError(gone)

    try:
        with open_upload(path, sheet.name, worksheet=ctx.params.get("worksheet")) as table:
            reported = [0.0]

            def read(count: int) -> None:
                """Progress a few times a second (one transaction each), a cancel check
                after every batch: 1,000,000 rows are 500 batches."""
                if time.monotonic() - reported[0] < IMPORT_PROGRESS_SECONDS:
                    ctx.checkpoint()
                    return
                reported[0] = time.monotonic()
                estimate = _estimated_rows(count, table)
                ctx.progress(count, total=estimate, message=f"Read {count:,} rows")

            store_table(sheet, table, sheet.columns, on_rows=read)
    except SourceError as exc:
        _import_failed(sheet, path, str(exc))
        raise PermanentError(str(exc)) from None
    except Cancelled:
        _import_failed(sheet, path, "The import was cancelled: no rows were stored.")
        raise
    path.unlink(missing_ok=True)
    ctx.progress(
        sheet.row_count, total=sheet.row_count, message=f"Imported {sheet.row_count:,} rows"
    )
    return {"rows": sheet.row_count}


def _estimated_rows(count: int, table) -> int | None:
    """The file's row count, extrapolated from the share of its bytes read so far, so
    the sheet's page says "importing 62 %"; kept under 100 % until the rows are stored."""
    share = table.share_read() if table.share_read else 0.0
    if share < 0.001:
        return None
    return max(round(count / share), count * 100 // 99 + 1)


def _import_failed(sheet: Sheet, path: Path, error: str) -> None:
    Sheet.objects.filter(pk=sheet.pk).update(status="failed", import_error=error[:5000])
    path.unlink(missing_ok=True)
