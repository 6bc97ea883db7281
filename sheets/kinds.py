"""The sheet job kinds' handlers: `sheets.process` (the rows handed to `sheets.rows.pipeline`;
its parameters are checked by `sheets.run.SheetRun`), `sheets.write_back` (a finished
job's outputs written to its Google Sheet) and `sheets.import` (a large upload's rows).

A `sheets.process` job with `google_url` (a schedule on a Google Sheet) re-reads the
sheet when it starts: a new Sheet is imported and the job's params point at it.
"""

from __future__ import annotations

import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.utils import timezone

from jobs.models import Job
from jobs.public import (
    Cancelled,
    JobContext,
    PermanentError,
    Preempted,
    SliceDone,
    job_kind,
    unseal_params,
)
from sheets.io.export import inputs_from_earlier_jobs, iter_export_rows, output_columns
from sheets.io.importing import SpooledTable, kept_upload, spool_google, store_table
from sheets.io.sources import SourceError, open_upload
from sheets.models import RowResult, Sheet
from sheets.names import IMPORT, KIND, WRITE_BACK, entity_key, run_entity_key
from sheets.processors import OptionsError, UnknownProcessor, all_processors, get_processor
from sheets.rows.pipeline import process_rows
from sheets.rows.source import RowSource, rows_without_result
from sheets.run import SheetRun, rows_to_do
from sheets.services import sheet_import_then

IMPORT_PROGRESS_SECONDS = 0.25


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
    fresh = {**params, "row_count": rows_to_do(sheet.row_count, start, params.get("rows_wanted"))}
    key = Job.objects.filter(pk=ctx.job_id).values_list("entity_key", flat=True).first()
    ctx.replace_input(
        fresh,
        total=fresh["row_count"],
        entity_key=key or "",
        message=f"The import stored {sheet.row_count:,} rows; processing {fresh['row_count']:,} "
        f"from row {start}",
    )
    return fresh


# -- the kind -----------------------------------------------------------------------


def validate_params(
    params: dict[str, Any], owner, after: list[int] | None = None
) -> dict[str, Any]:
    """The API's and schedules' door to the one validation of a run (`SheetRun.check`);
    `after`: the jobs the API's submit waits for (a pipeline step may use their output
    columns before they exist)."""
    run = SheetRun.from_params(params)
    return (run.replace(after=after) if after else run).check(owner)


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


# What users may search sheet jobs by (`processor=llm options.model=gpt-4o-mini`).
SEARCH_PARAMS = ("processor", "sheet_id", "options.model", "options.mode", "trial")


@job_kind(
    KIND,
    label="Process a sheet",
    validate_params=validate_params,
    retry_failed_rows=prepare_failed_rows_retry,
    entity_key_for=run_entity_key,
    label_for=_label_for,
    total_for=lambda params: params["row_count"],
    on_end=lambda job_id, fields: cancel_batches(job_id),
    # what operators pause or cap alone: `conveyor kind pause llm`
    subkind_for=lambda params: str(params.get("processor") or ""),
    subkinds=lambda: [processor.name for processor in all_processors()],
    search_params=SEARCH_PARAMS,
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
    if processor.name == "llm" and options.get("mode") == "batch":
        # Imported here, as the registry loads built-ins: httpx stays out of processes
        # that never run a row.
        from sheets.rows.batch_mode import run_batches

        run_batches(ctx, source, processor, options)
    else:
        process_rows(ctx, source, processor, options, params["row_timeout"])
    check_every_row_processed(ctx, params)
    return {
        "processed": ctx.processed,
        "failed": ctx.failed,
        "reused": RowResult.objects.filter(job_id=ctx.job_id, reused=True).count(),
        "output_columns": params["output_columns"],
    }


def cancel_batches(job_id: int) -> None:
    """A cancelled `llm` job in batch mode: its batches still open at the provider are
    cancelled too (`sheets.rows.batch_mode`), wherever the job was cancelled."""
    row = Job.objects.filter(pk=job_id, status=Job.Status.CANCELLED)
    found = row.values_list("cursor", "params").first()
    if found is None or not isinstance(found[0], dict) or not found[0].get("chunks"):
        return
    from sheets.rows.batch_mode import cancel_open_batches  # httpx: only when needed

    cancel_open_batches(found[0]["chunks"], unseal_params(found[1]).get("options") or {})


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
    job at it: same columns, processor and options, the rows it has now. The sheet is
    stored and the job pointed at it in one transaction (`sheet_import_then`); a sheet
    the job cannot use is refused before anything is stored."""
    owner = get_user_model().objects.filter(pk=ctx.owner_id).first()
    if owner is None:
        raise PermanentError("The job has no owner to import the Google Sheet for.")
    try:
        spooled = spool_google(
            url_or_id=params["google_url"], worksheet=params.get("google_worksheet") or None
        )
    except SourceError as exc:
        raise PermanentError(f"Could not re-read the Google Sheet: {exc}") from None
    with spooled:
        rows = _rows_of_reread(spooled, params)

        def point_job_at(sheet: Sheet) -> None:
            fresh = {
                **params,
                "sheet_id": sheet.pk,
                "row_count": rows,
                "google_read_at": timezone.now().isoformat(),
            }
            ctx.replace_input(
                fresh,
                total=rows,
                entity_key=entity_key(sheet),
                message=f"Re-read the Google Sheet “{sheet.name}”: {sheet.row_count} rows "
                f"(sheet #{sheet.pk}); processing {rows} from row {params['start_row']}",
            )

        sheet_import_then(table=spooled, owner=owner, then=point_job_at)
    return ctx.params


def _rows_of_reread(spooled: SpooledTable, params: dict[str, Any]) -> int:
    """How many rows the job does on the sheet read again, or why it cannot."""
    missing = [column for column in params["columns"] if column not in spooled.columns]
    if missing:
        raise PermanentError(
            f"The Google Sheet no longer has the column(s) {', '.join(missing)}; its "
            f"columns are {', '.join(spooled.columns)}."
        )
    start = params["start_row"]
    if start > spooled.rows:
        raise PermanentError(
            f"The Google Sheet has {spooled.rows} rows; the job starts at row {start}."
        )
    return rows_to_do(spooled.rows, start, params.get("google_row_count"))


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
