"""Starting work on a sheet: the functions pages, the CLI and scripts call."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from jobs.models import Batch, Job, Schedule
from jobs.public import (
    JobActionError,
    Submission,
    atomic_retry,
    batch_submit,
    job_delete,
    job_submit,
    schedule_delete,
)
from sheets.io.importing import (
    SpooledUpload,
    sheet_from_spooled,
    sheet_from_upload,
    sheet_import_later,
    spool_upload,
    unique_name,
)
from sheets.io.sources import SourceError
from sheets.kinds import IMPORT, KIND, WRITE_BACK, SheetParamsError, entity_key, validate_params
from sheets.models import Sheet
from sheets.processors import OptionsError, get_processor


def sheet_job_submit(
    *,
    sheet: Sheet,
    owner,
    processor: str,
    options: dict[str, Any] | None = None,
    columns: list[str] | str | None = None,
    start_row: int | str | None = None,
    row_count: int | str | None = None,
    row_timeout: float | str | None = None,
    priority: str | int | None = None,
    session_key: str = "",
    after: list[int] | tuple[int, ...] = (),
    trial: bool = False,
) -> tuple[Job, bool]:
    """Validate and queue a `sheets.process` job (raises SheetParamsError, ValueError).

    Returns `(job, created)`: a sheet has at most one active job, and while one is
    active it is returned (`created` False) instead of starting a second. `after`: jobs
    it waits for (see `job_submit`). `trial`: a first few rows (`row_count`) to see the
    answers and what they cost; a run with the same options then reuses them.
    """
    params = validate_params(
        {
            "sheet_id": sheet.pk,
            "processor": processor,
            "options": options or {},
            "columns": columns,
            "start_row": start_row,
            "row_count": row_count,
            "row_timeout": row_timeout,
            "after": list(after),
            "trial": trial,
        },
        owner,
    )
    # A pipeline step waits for the sheet's earlier job: its own key, so that the rule
    # "one active job per sheet" (which dedupes double submits) does not swallow it.
    step_key = f"{entity_key(sheet)}:after:{'-'.join(map(str, sorted(after)))}" if after else ""
    return job_submit(
        kind=KIND,
        params=params,
        owner=owner,
        priority=priority,
        session_key=session_key,
        entity_key=step_key,
        after=after,
    )


def sheet_chain_submit(*, sheet: Sheet, owner, steps: list[dict[str, Any]]) -> list[Job]:
    """Queue steps on one sheet as one submission: each step (the keyword arguments of
    `sheet_job_submit`) waits for the one before it, so it may read its output columns.

    All steps or none (one transaction). A refused step raises its SheetParamsError with
    `step` (its index); a sheet that already has an active job raises JobActionError
    (its first step would be that job, not a new one).
    """
    jobs: list[Job] = []
    with transaction.atomic():
        for index, step in enumerate(steps):
            after = [jobs[-1].pk] if jobs else []
            try:
                job, created = sheet_job_submit(sheet=sheet, owner=owner, after=after, **step)
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
    *,
    sheets: list[Sheet],
    owner,
    processor: str,
    options: dict[str, Any] | None = None,
    columns: list[str] | str | None = None,
    start_row: int | str | None = None,
    row_count: int | str | None = None,
    row_timeout: float | str | None = None,
    priority: str | int | None = None,
    label: str = "",
) -> tuple[Batch, list[Job]]:
    """One `sheets.process` job per sheet, with the same processor and options, as one
    batch (one progress, one notification). Every sheet's parameters are checked before
    anything is created; a refusal is a SheetParamsError whose `sheet` says which."""
    submissions = []
    for sheet in sheets:
        raw = {
            "sheet_id": sheet.pk,
            "processor": processor,
            "options": options or {},
            "columns": columns,
            "start_row": start_row,
            "row_count": row_count,
            "row_timeout": row_timeout,
        }
        try:
            params = validate_params(raw, owner)
        except SheetParamsError as exc:
            exc.sheet = sheet
            raise
        submissions.append(Submission(kind=KIND, params=params, owner=owner, priority=priority))
    if not label:
        count = f"{len(sheets)} sheet{'s' if len(sheets) != 1 else ''}"
        label = f"{count} · {get_processor(processor).label}"
    return batch_submit(owner=owner, submissions=submissions, label=label)


def sheet_upload(*, upload: UploadedFile, owner, worksheet: str | None = None) -> Sheet:
    """An uploaded file as a Sheet: imported now when small, else checked now (the
    header) and imported by a background job (`sheets.import`) that the sheet's page
    follows live; raises SourceError for a file that is refused at once, QuotaExceeded
    when the owner may not start the import job."""
    if (upload.size or 0) <= settings.CONVEYOR_INLINE_IMPORT_BYTES:
        return sheet_from_upload(upload=upload, owner=owner, worksheet=worksheet)
    sheet, path = sheet_import_later(upload=upload, owner=owner, worksheet=worksheet)
    try:
        job_submit(
            kind=IMPORT,
            params={"sheet_id": sheet.pk, "upload": path.name, "worksheet": worksheet},
            owner=owner,
            entity_key=entity_key(sheet),
            label=f"Import {sheet.name}",
        )
    except BaseException:  # a quota, say: no importing sheet without its import job
        sheet.delete()
        path.unlink(missing_ok=True)
        raise
    return sheet


def sheets_upload(
    *, uploads: list[UploadedFile], owner, worksheet: str | None = None, processor: str = ""
) -> tuple[list[Sheet], Batch | None]:
    """Several uploaded files as sheets and, with `processor`, one batch of jobs on them
    (its default options): all of them or none.

    Every file is read, checked and spooled to disk before anything is written: no
    transaction is open while files are parsed (on SQLite it would hold the database's
    one write lock, and stop every other user's writes and every worker's heartbeat, for
    the whole parse). Then each sheet goes in with its own short transaction and the
    batch with another; a refused batch deletes the sheets again. Raises SourceError
    naming the file, UnknownProcessor, SheetParamsError (`file` or `sheet` says which),
    QuotaExceeded or JobActionError.
    """
    check = _options_check(get_processor(processor)) if processor else None
    spooled: list[SpooledUpload] = []
    try:
        for upload in uploads:
            spooled.append(_spool_named(upload, worksheet, check))
        return _store_several(spooled, owner, processor)
    finally:
        for item in spooled:
            item.close()


def _spool_named(upload: UploadedFile, worksheet: str | None, check) -> SpooledUpload:
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


def _store_several(
    spooled: list[SpooledUpload], owner, processor: str
) -> tuple[list[Sheet], Batch | None]:
    sheets: list[Sheet] = []
    try:
        for item in spooled:
            sheets.append(sheet_from_spooled(item, owner=owner))
        if not processor:
            return sheets, None
        batch, _ = sheets_batch_submit(sheets=sheets, owner=owner, processor=processor)
    except BaseException:
        for sheet in sheets:
            sheet.delete()
        raise
    return sheets, batch


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


def sheet_all_jobs(sheet: Sheet) -> QuerySet[Job]:
    """Every job of the sheet's owner that works on the sheet: its imports, its runs and
    its pipeline steps, and the write-backs of those runs (which read their results).
    Keys belong to their owner: another user's job is never one of them, whatever key
    it carries."""
    key = entity_key(sheet)
    on_sheet = Q(entity_key=key) | Q(entity_key__startswith=f"{key}:")
    owners = Job.objects.filter(owner_id=sheet.owner_id)
    runs = owners.filter(kind=KIND).filter(on_sheet).values_list("pk", flat=True)
    writers = [f"write-back:{pk}" for pk in runs]  # sheet_write_back's entity key
    return owners.filter(
        (Q(kind__in=[KIND, IMPORT]) & on_sheet) | Q(kind=WRITE_BACK, entity_key__in=writers)
    )


def others_active_on(sheet: Sheet) -> bool:
    """Whether another user's job is processing the sheet's rows: a job someone with
    the permission to act for its owner started on it (`selectors.may_submit_for`)."""
    jobs = Job.objects.active().filter(kind=KIND, params__sheet_id=sheet.pk)
    return jobs.exclude(owner_id=sheet.owner_id).exists()


def sheet_schedules(sheet: Sheet) -> QuerySet[Schedule]:
    """The schedules that process the sheet: without it their runs could only fail."""
    return Schedule.objects.filter(kind=KIND, params__sheet_id=sheet.pk).order_by("pk")


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
