"""Every write of the sheets app: importing, starting work on a sheet (a run, a chain, a
batch; an import and the run on it in one transaction), renaming and deleting. Pages,
API, CLI, admin and the kinds' handlers call these; reads are in `sheets.selectors`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone

from jobs.models import Batch, Job
from jobs.public import (
    InvalidChanges,
    JobActionError,
    Submission,
    atomic_retry,
    batch_submit,
    job_delete,
    job_submit,
    schedule_delete,
)
from sheets.io.importing import (
    SpooledTable,
    sheet_from_google,
    sheet_from_spooled,
    sheet_from_upload,
    sheet_import_later,
    spool_upload,
    unique_name,
)
from sheets.io.sources import SourceError
from sheets.models import Sheet
from sheets.names import IMPORT, KIND, WRITE_BACK, entity_key, run_entity_key
from sheets.processors import OptionsError, UnknownProcessor, get_processor
from sheets.run import SheetParamsError, SheetRun
from sheets.selectors import others_active_on, sheet_all_jobs, sheet_schedules

T = TypeVar("T")


def sheet_job_submit(
    *, sheet: Sheet, owner, session_key: str = "", **fields: Any
) -> tuple[Job, bool]:
    """`run_submit` of a run given by its fields (those of SheetRun: processor, options,
    columns, start_row, row_count, row_timeout, priority, after, trial)."""
    run = SheetRun(sheet_id=sheet.pk, **fields)
    return run_submit(run, owner=owner, session_key=session_key)


def run_submit(run: SheetRun, *, owner, session_key: str = "") -> tuple[Job, bool]:
    """Check and queue a `sheets.process` job (raises SheetParamsError, ValueError).

    Returns `(job, created)`: a sheet has at most one active job, and while one is
    active it is returned (`created` False) instead of starting a second. `run.after`
    and `run.after_any`: jobs it waits for (see `job_submit`; an id in both is waited
    for as `after`, as there). `run.trial`: a first few rows to see the answers and
    what they cost; a run with the same options then reuses them.
    """
    params = run.check(owner)
    plain = {int(i) for i in run.after or ()}
    any_outcome = {int(i) for i in run.after_any or ()} - plain
    return job_submit(
        kind=KIND,
        params=params,
        owner=owner,
        priority=run.priority,
        session_key=session_key,
        entity_key=run_entity_key(params),
        after=[i for i in params.get("after", []) if i not in any_outcome],
        after_any=sorted(any_outcome),
    )


def sheet_chain_submit(*, sheet: Sheet, owner, steps: list[dict[str, Any]]) -> list[Job]:
    """Queue steps on one sheet as one submission: each step (the fields of a SheetRun
    but the sheet) waits for the one before it, so it may read its output columns.

    All steps or none (one transaction). A refused step raises its SheetParamsError with
    `step` (its index); a sheet that already has an active job raises JobActionError
    (its first step would be that job, not a new one).
    """
    jobs: list[Job] = []
    with transaction.atomic():
        for index, step in enumerate(steps):
            after = [jobs[-1].pk] if jobs else []
            try:
                job, created = run_submit(
                    SheetRun(sheet_id=sheet.pk, after=after, **step), owner=owner
                )
            except SheetParamsError as exc:
                exc.step = index
                raise
            if not created:
                raise JobActionError(
                    f"This sheet already has an active job (#{job.pk}): wait for it, or "
                    "cancel it, before starting a chain."
                )
            jobs.append(job)
    return jobs


def sheets_batch_submit(
    *, sheets: list[Sheet], owner, label: str = "", **fields: Any
) -> tuple[Batch, list[Job]]:
    """`batch_run_submit` of a run given by its fields (those of SheetRun)."""
    return batch_run_submit(sheets=sheets, owner=owner, run=SheetRun(**fields), label=label)


def batch_run_submit(
    *, sheets: list[Sheet], owner, run: SheetRun, label: str = "", on_complete: Any = None
) -> tuple[Batch, list[Job]]:
    """One `sheets.process` job per sheet, the same `run` on each, as one batch (one
    progress, one notification). Every sheet's parameters are checked before anything
    is created; a refusal is a SheetParamsError whose `sheet` (and `index`, its place in
    `sheets`) says which. `on_complete`: a `Submission` run when the batch has ended,
    whatever the outcome (`jobs.public.batch_submit`)."""
    submissions = []
    for index, sheet in enumerate(sheets):
        try:
            params = run.replace(sheet_id=sheet.pk).check(owner)
        except SheetParamsError as exc:
            exc.sheet, exc.index = sheet, index
            raise
        submissions.append(Submission(kind=KIND, params=params, owner=owner, priority=run.priority))
    if not label:
        count = f"{len(sheets)} sheet{'s' if len(sheets) != 1 else ''}"
        label = f"{count} · {get_processor(run.processor).label}"
    return batch_submit(owner=owner, submissions=submissions, label=label, on_complete=on_complete)


# -- importing, and starting work on what was imported: both or neither ------------------


def sheet_import_then(*, table: Sheet | SpooledTable, owner, then: Callable[[Sheet], T]) -> T:
    """Store a table read beforehand (`sheets.io.importing.spool_*`) as a new sheet of
    `owner` and do `then(sheet)` (start a run on it, point a running job at it, add a
    schedule) in one transaction: if `then` refuses (bad parameters, a quota, a job it
    waits for that failed, a lost lease), no sheet is left behind, and a sheet is never
    seen without what was done with it. A Sheet given as `table` is taken as it is.

    The reading is done before, outside the transaction: it would hold SQLite's one
    write lock for as long as the parse takes."""

    def store() -> T:
        sheet = table if isinstance(table, Sheet) else sheet_from_spooled(table, owner=owner)
        return then(sheet)

    return atomic_retry(store)


def sheet_import_and_submit(
    *, table: Sheet | SpooledTable, owner, run: SheetRun
) -> tuple[Sheet, Job, bool]:
    """A new sheet and `run` started on it, both or neither (`sheet_import_then`)."""

    def submit(sheet: Sheet) -> tuple[Sheet, Job, bool]:
        return sheet, *run_submit(run.replace(sheet_id=sheet.pk), owner=owner)

    return sheet_import_then(table=table, owner=owner, then=submit)


def sheets_import_and_submit(
    *,
    tables: list[Sheet | SpooledTable],
    owner,
    run: SheetRun | None = None,
    on_complete: Any = None,
) -> tuple[list[Sheet], Batch | None, list[Job]]:
    """Store the spooled tables among `tables` as new sheets (the Sheets among them are
    taken as they are) and, with `run`, start it on every sheet as one batch: all in
    one transaction, so a refusal leaves none of the new sheets behind. Raises what
    `batch_run_submit` raises."""

    def store() -> tuple[list[Sheet], Batch | None, list[Job]]:
        sheets = [
            item if isinstance(item, Sheet) else sheet_from_spooled(item, owner=owner)
            for item in tables
        ]
        if run is None:
            return sheets, None, []
        batch, jobs = batch_run_submit(sheets=sheets, owner=owner, run=run, on_complete=on_complete)
        return sheets, batch, jobs

    return atomic_retry(store)


def sheet_upload(*, upload: UploadedFile, owner, worksheet: str | None = None) -> Sheet:
    """An uploaded file as a Sheet: imported now when small, else checked now (the
    header) and imported by a background job (`sheets.import`) that the sheet's page
    follows live; raises SourceError for a file that is refused at once, QuotaExceeded
    when the owner may not start the import job."""
    if (upload.size or 0) <= settings.CONVEYOR_INLINE_IMPORT_BYTES:
        return sheet_from_upload(upload=upload, owner=owner, worksheet=worksheet)
    sheet, path = sheet_import_later(upload=upload, owner=owner, worksheet=worksheet)

    def start_import() -> None:
        """The importing sheet and its import job: both or neither (a quota, say)."""
        sheet.save()
        job_submit(
            kind=IMPORT,
            params={"sheet_id": sheet.pk, "upload": path.name, "worksheet": worksheet},
            owner=owner,
            entity_key=entity_key(sheet),
            label=f"Import {sheet.name}",
        )

    try:
        atomic_retry(start_import)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return sheet


def sheet_from_link(*, url_or_id: str, owner, worksheet: str | None = None) -> Sheet:
    """A Google Sheet (its link or id) imported as a new sheet; raises SourceError."""
    return sheet_from_google(url_or_id=url_or_id, owner=owner, worksheet=worksheet)


def sheet_from_file(*, upload: UploadedFile, owner) -> Sheet:
    """A small file (the bundled sample) imported now, whatever its size."""
    return sheet_from_upload(upload=upload, owner=owner)


def sheets_upload(
    *, uploads: list[UploadedFile], owner, worksheet: str | None = None, processor: str = ""
) -> tuple[list[Sheet], Batch | None]:
    """Several uploaded files as sheets and, with `processor`, one batch of jobs on them
    (its default options): all of them or none.

    Every file is read, checked and spooled to disk before anything is written: no
    transaction is open while files are parsed (on SQLite it would hold the database's
    one write lock, and stop every other user's writes and every worker's heartbeat, for
    the whole parse). Then the sheets and the batch go in with one short transaction.
    Raises SourceError naming the file, UnknownProcessor, SheetParamsError (`file` or
    `sheet` says which), QuotaExceeded or JobActionError.
    """
    check = _options_check(get_processor(processor)) if processor else None
    run = SheetRun(sheet_id=None, processor=processor, options={}) if processor else None
    spooled: list[SpooledTable] = []
    try:
        for upload in uploads:
            spooled.append(_spool_named(upload, worksheet, check))
        sheets, batch, _ = sheets_import_and_submit(tables=spooled, owner=owner, run=run)
    finally:
        for item in spooled:
            item.close()
    return sheets, batch


def _spool_named(upload: UploadedFile, worksheet: str | None, check) -> SpooledTable:
    name = upload.name or "upload"
    try:
        return spool_upload(upload=upload, worksheet=worksheet, check_columns=check)
    except SourceError as exc:
        raise SourceError(f"{name}: {exc}") from None
    except SheetParamsError as exc:
        exc.file = name
        raise


def _options_check(processor):
    """A batch's jobs run with the processor's default options: a file whose header they
    cannot work with is refused before its rows are read (then checked again, in full,
    when the batch is submitted)."""

    def check(columns: list[str]) -> None:
        try:
            processor.validate_options({}, columns)
        except OptionsError as exc:
            raise SheetParamsError(exc.errors) from None

    return check


BUDGET_OPTIONS = ("budget_tokens", "budget_usd")


def sheet_job_new_budget(job: Job, changes: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A paused sheet job's params with its budget changed, and what changed (the kind's
    `resume_with`: a resume raises or lifts the budget the job paused at). Each of
    `changes` is a new ceiling, or empty to lift it; InvalidChanges for what the job's
    processor refuses (a USD budget for a model without a price)."""
    params = job.params or {}
    try:
        processor = get_processor(params.get("processor", ""))
    except UnknownProcessor:
        raise InvalidChanges(dict.fromkeys(changes, "This job cannot run any more.")) from None
    declared = {option.name for option in processor.options}
    if refused := {
        name: "This job has no such budget." for name in changes if name not in declared
    }:
        raise InvalidChanges(refused)
    lifted = {name: None if value in (None, "") else value for name, value in changes.items()}
    options = {**params.get("options", {}), **lifted}
    try:
        checked = processor.validate_options(options, params.get("columns", []))
    except OptionsError as exc:
        mine = {name: message for name, message in exc.errors.items() if name in changes}
        raise InvalidChanges(mine or exc.errors) from None
    new = {name: checked[name] for name in changes}
    said = [
        f"{name} {'lifted' if value is None else f'set to {value:,}'}"
        for name, value in new.items()
    ]
    return {**params, "options": {**params.get("options", {}), **new}}, ", ".join(said)


def sheet_write_back(*, job: Job, sheet: Sheet) -> Job:
    """Queue the write-back of a finished job's outputs to its Google Sheet."""
    if not sheet.google_id:
        raise JobActionError("Only sheets imported from Google Sheets can be written back.")
    if not job.is_terminal:
        raise JobActionError("Wait for the job to finish before writing its results back.")
    writer, _ = job_submit(
        kind=WRITE_BACK,
        params={"job_id": job.pk},
        owner=job.owner,
        entity_key=f"write-back:{job.pk}",
        label=f"Write back {sheet.name} (job #{job.pk})",
    )
    return writer


MAX_NAME = 200


def sheet_seen(*, sheet: Sheet, by) -> None:
    """Its owner opened the sheet (its page, or its results table refreshed live): the
    sheets list no longer marks results that came in before. Others' looks don't count."""
    if by is not None and by.pk == sheet.owner_id:
        Sheet.objects.filter(pk=sheet.pk).update(seen_at=timezone.now())


def sheet_rename(*, sheet: Sheet, name: str) -> Sheet:
    """Give a sheet another name (trimmed, 1 to 200 characters, unique among the owner's
    sheets: a taken name gets a number); raises ValueError with what is wrong."""
    name = " ".join(name.split())
    if not name:
        raise ValueError("Give the sheet a name.")
    if len(name) > MAX_NAME:
        raise ValueError(f"A sheet name has at most {MAX_NAME} characters.")
    sheet.name = unique_name(sheet.owner_id, name, exclude=sheet.pk)
    sheet.save(update_fields=["name"])
    return sheet


def sheet_delete(*, sheet: Sheet) -> int:
    """Delete a sheet, its rows, its schedules, and its owner's finished jobs on it (with
    their results and write-backs); returns how many jobs went with it. A sheet with an
    active job is refused (JobActionError): the user cancels the job first, so nothing a
    worker holds disappears under it. Only the owner's jobs are named or deleted; another
    user's active job on its rows refuses the delete without naming it."""

    def delete() -> int:
        jobs = list(sheet_all_jobs(sheet).order_by("-pk"))  # write-backs before their runs
        active = sorted(job.pk for job in jobs if not job.is_terminal)
        if active:
            numbers = ", ".join(f"#{pk}" for pk in active)
            raise JobActionError(
                f"“{sheet.name}” has an active job ({numbers}): cancel it, then delete the sheet."
            )
        if others_active_on(sheet):
            raise JobActionError(
                f"Another user's job is processing “{sheet.name}” (someone allowed to act "
                "for you started it): delete the sheet once it has ended."
            )
        for schedule in sheet_schedules(sheet):
            schedule_delete(schedule=schedule)
        for job in jobs:
            job_delete(job=job)
        sheet.delete()
        return len(jobs)

    return atomic_retry(delete)
