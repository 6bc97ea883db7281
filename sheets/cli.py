"""The sheet verbs of `manage.py conveyor`: `submit` (import a CSV/XLSX file, a Google
Sheet or an imported sheet and start a job on it; several of them: a batch), `export` (write a sheet job's
results) and `schedule add` (process a sheet on a cron expression or an interval; a
Google Sheet is re-read at every run), registered with the command's verb registry.

Everything goes through the same functions as the pages (`sheets.services`,
`sheets.io.importing`, `sheets.io.export`); problems raise `CliError` (exit code 2).
"""

from __future__ import annotations

import argparse
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from django.core.management.base import OutputWrapper

from jobs import public
from jobs.models import Batch, Job
from jobs.public import (
    EXIT_JOB_FAILED,
    GROUP,
    CliError,
    JobActionError,
    Verb,
    add_schedule_arguments,
    batch_as_dict,
    create_schedule,
    deduplicated,
    find_job,
    job_as_dict,
    register_verb,
    schedule_as_dict,
    schedule_text,
    wait_for_job,
)
from sheets.io.export import csv_chunks, xlsx_file
from sheets.io.importing import sheet_from_google, sheet_import
from sheets.io.sources import SourceError, open_upload
from sheets.kinds import KIND as SHEET_KIND
from sheets.kinds import validate_params
from sheets.models import Sheet
from sheets.processors import UnknownProcessor, get_processor
from sheets.services import sheet_job_submit, sheets_batch_submit

GOOGLE_ID = re.compile(r"[A-Za-z0-9_-]{20,}")
SHEET_REF = re.compile(r"sheet:#?(\d+)")
# Where each sheet job parameter comes from on the command line, for error messages.
PARAM_FLAGS = {
    "processor": "--processor",
    "columns": "--columns",
    "start_row": "--start-row",
    "row_count": "--rows",
    "row_timeout": "--row-timeout",
    "options": "--option",
    "sheet_id": "PATH",
}


def _plain(text: str) -> str:
    return text


# -- submitting a sheet ----------------------------------------------------------------


def parse_options(pairs: Iterable[str]) -> dict[str, str]:
    """`--option NAME=VALUE` pairs as strings; the processor parses and checks them."""
    options: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise CliError(f"--option takes NAME=VALUE, not {pair!r}.")
        options[name.strip()] = value
    return options


def check_processor(name: str) -> None:
    try:
        get_processor(name)
    except UnknownProcessor as exc:
        raise CliError(str(exc)) from None


def check_priority(value: str | None, user: Any) -> None:
    """The rule of the pages and the API for the user the CLI acts as: high, normal or
    low; integers for staff only (`selectors.priority_for`)."""
    try:
        public.priority_for(user, value)
    except ValueError as exc:
        raise CliError(f"Bad --priority {value!r}: {exc}.") from None


def parse_after(value: str | None, user: Any) -> list[int]:
    """`--after 12,13`: jobs the new one waits for, which the user must be able to see."""
    if not value:
        return []
    try:
        ids = [int(part.strip().lstrip("#")) for part in value.split(",") if part.strip()]
    except ValueError:
        raise CliError(f"--after takes job ids separated by commas, not {value!r}.") from None
    if missing := public.missing_jobs(user, ids):
        raise CliError(f"--after: no job {', '.join(f'#{i}' for i in missing)}.")
    return ids


def is_google_sheet(source: str) -> bool:
    return source.startswith(("https://", "http://")) or bool(GOOGLE_ID.fullmatch(source))


def is_sheet_ref(source: str) -> bool:
    return bool(SHEET_REF.fullmatch(source.strip()))


def import_sheet(source: str, owner, worksheet: str | None = None) -> Sheet:
    """A new Sheet from a CSV/XLSX path, or from a Google Sheet URL or id; or, for
    `sheet:ID`, that sheet already imported: the owner's, or another user's if the owner
    may act for them (`selectors.may_submit_for`, as on the pages and the API)."""
    if match := SHEET_REF.fullmatch(source.strip()):
        sheet = Sheet.objects.visible_to(owner).filter(pk=int(match.group(1))).first()
        if sheet is None or not public.may_submit_for(owner, sheet.owner_id):
            raise CliError(f"No sheet #{match.group(1)} (acting as {owner.get_username()}).")
        return sheet
    path = Path(source)
    try:
        if path.is_file():
            table = open_upload(path, path.name, worksheet=worksheet)
            return sheet_import(table=table, owner=owner, name=path.name)
        if not path.exists() and is_google_sheet(source):
            return sheet_from_google(url_or_id=source, owner=owner, worksheet=worksheet)
    except SourceError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"Cannot read {source}: {exc.strerror or exc}.") from None
    if path.exists():
        raise CliError(f"{source} is not a file.")
    raise CliError(f"No such file: {source}")


def params_message(errors: dict[str, str]) -> str:
    """SheetParamsError fields named as the flags that set them."""
    parts = [
        f"{PARAM_FLAGS.get(field, f'--option {field}')}: {message.rstrip('.')}"
        for field, message in errors.items()
    ]
    return "; ".join(parts) + "."


def submit_sheet(
    *,
    source: str,
    owner,
    processor: str,
    options: dict[str, str],
    columns: str | None = None,
    start_row: str | None = None,
    row_count: str | None = None,
    row_timeout: str | None = None,
    worksheet: str | None = None,
    priority: str | None = None,
    after: str | None = None,
) -> tuple[Job, bool]:
    """Import `source` and queue a `sheets.process` job on it; `(job, created)`:
    `created` is False when the sheet's active job was found instead (`sheet:ID` of a
    sheet with one), and nothing new started.

    Cheap checks come before the import; if the job's parameters are then refused
    (columns, rows, options), the sheet imported for it is deleted again, so bad input
    leaves nothing behind.
    """
    check_processor(processor)
    check_priority(priority, owner)
    upstream = parse_after(after, owner)
    sheet = import_sheet(source, owner, worksheet)
    imported = not is_sheet_ref(source)
    try:
        return sheet_job_submit(
            sheet=sheet,
            owner=owner,
            processor=processor,
            options=options,
            columns=columns,
            start_row=start_row,
            row_count=row_count,
            row_timeout=row_timeout,
            priority=priority,
            after=upstream,
        )
    except ValueError as exc:  # SheetParamsError is one
        if imported:
            sheet.delete()
        errors = getattr(exc, "errors", None)
        raise CliError(params_message(errors) if errors else str(exc)) from None
    except JobActionError as exc:  # a quota, or `--after` naming a failed job
        if imported:
            sheet.delete()
        raise CliError(str(exc)) from None


def submit_batch(
    *,
    sources: list[str],
    owner,
    processor: str,
    options: dict[str, str],
    columns: str | None = None,
    start_row: str | None = None,
    row_count: str | None = None,
    row_timeout: str | None = None,
    worksheet: str | None = None,
    priority: str | None = None,
) -> tuple[Batch, list[Job]]:
    """Import every source and queue one job per sheet as one batch: all or nothing.

    A source that cannot be imported, or whose sheet refuses the job's parameters, ends
    the command with a message naming it, and the sheets already imported for the batch
    are deleted again.
    """
    check_processor(processor)
    check_priority(priority, owner)
    imported: list[Sheet] = []
    sheets: list[Sheet] = []
    try:
        for source in sources:
            sheet = _import_named(source, owner, worksheet)
            sheets.append(sheet)
            if not is_sheet_ref(source):
                imported.append(sheet)
        return sheets_batch_submit(
            sheets=sheets,
            owner=owner,
            processor=processor,
            options=options,
            columns=columns,
            start_row=start_row,
            row_count=row_count,
            row_timeout=row_timeout,
            priority=priority,
        )
    except ValueError as exc:  # SheetParamsError is one
        _delete(imported)
        errors = getattr(exc, "errors", None)
        message = params_message(errors) if errors else str(exc)
        where = sources[sheets.index(exc.sheet)] if hasattr(exc, "sheet") else ""
        raise CliError(f"{where}: {message}" if where else message) from None
    except JobActionError as exc:
        _delete(imported)
        raise CliError(str(exc)) from None
    except CliError:
        _delete(imported)
        raise


def _import_named(source: str, owner, worksheet: str | None) -> Sheet:
    try:
        return import_sheet(source, owner, worksheet)
    except CliError as exc:
        message = exc.message if exc.message.startswith(source) else f"{source}: {exc.message}"
        raise CliError(message, exc.code) from None


def _delete(sheets: list[Sheet]) -> None:
    for sheet in sheets:
        sheet.delete()


# -- exporting ----------------------------------------------------------------------------


def export_sheet(job: Job) -> Sheet:
    if job.kind != SHEET_KIND:
        raise CliError(f"Job #{job.pk} is a {job.kind} job; only {SHEET_KIND} jobs have rows.")
    sheet = Sheet.objects.filter(pk=job.params.get("sheet_id")).first()
    if sheet is None:
        raise CliError(f"The sheet of job #{job.pk} was deleted; there is nothing to export.")
    return sheet


def export_format(fmt: str | None, target: str) -> str:
    if fmt:
        return fmt
    return "xlsx" if target.lower().endswith(".xlsx") else "csv"


def export_results(job: Job, fmt: str, target: str, stdout: OutputWrapper) -> int:
    """Write the job's rows as CSV or XLSX to `target` ("-": stdout); return how many.

    Uses `sheets.io.export`, so formulas are neutralised exactly as in the page's
    downloads. On stdout the CSV has no byte-order mark (it is for pipes, not Excel).
    """
    sheet = export_sheet(job)
    if target == "-":
        if fmt != "csv":
            raise CliError("Only CSV can go to standard output; give -o a file name for XLSX.")
        for chunk in csv_chunks(job, sheet):
            stdout.write(chunk.lstrip("\ufeff"), style_func=_plain, ending="")
        stdout.flush()
    else:
        try:
            _write_file(job, sheet, fmt, target)
        except OSError as exc:
            raise CliError(f"Cannot write {target}: {exc.strerror or exc}.") from None
    return job.params.get("row_count", sheet.row_count)


def _write_file(job: Job, sheet: Sheet, fmt: str, target: str) -> None:
    if fmt == "csv":
        with open(target, "w", encoding="utf-8", newline="") as handle:
            handle.writelines(csv_chunks(job, sheet))
        return
    with xlsx_file(job, sheet) as workbook, open(target, "wb") as handle:
        shutil.copyfileobj(workbook, handle)


# -- the verbs -------------------------------------------------------------------------------


def _sheet_job_arguments(parser: argparse.ArgumentParser) -> None:
    """What a sheet job takes on the command line, for `submit` and `schedule add`."""
    parser.add_argument("--processor", required=True, metavar="NAME")
    parser.add_argument(
        "--option", action="append", default=[], metavar="NAME=VALUE", help="Repeatable."
    )
    parser.add_argument("--columns", metavar="A,B", help="Input columns (default: all).")
    parser.add_argument("--start-row", metavar="N", help="First data row (1 = under the header).")
    parser.add_argument("--rows", metavar="N", help="How many rows (default: to the end).")
    parser.add_argument("--row-timeout", metavar="SECONDS")
    parser.add_argument("--worksheet", metavar="NAME", help="XLSX or Google worksheet.")


def _submit_arguments(submit: argparse.ArgumentParser) -> None:
    submit.add_argument(
        "path",
        metavar="PATH",
        nargs="+",
        help="CSV or XLSX file, a Google Sheet URL/id, or sheet:ID; several: one batch.",
    )
    _sheet_job_arguments(submit)
    submit.add_argument("--priority", metavar="P", help="high, normal or low (staff: any integer).")
    submit.add_argument("--after", metavar="ID[,ID]", help="Start once these jobs succeeded.")
    submit.add_argument(
        "--wait", action="store_true", help="Show progress on stderr until the job ends."
    )


def _submit(command: Any, user: Any, options: dict[str, Any]) -> None:
    if len(options["path"]) > 1:
        _submit_batch(command, user, options)
        return
    job, created = submit_sheet(
        source=options["path"][0],
        owner=user,
        processor=options["processor"],
        options=parse_options(options["option"]),
        columns=options["columns"],
        start_row=options["start_row"],
        row_count=options["rows"],
        row_timeout=options["row_timeout"],
        worksheet=options["worksheet"],
        priority=options["priority"],
        after=options["after"],
    )
    if not created:
        deduplicated(command, options, job, "on this sheet")
        return
    if not options["wait"]:
        if options["json"]:
            command.print_json({**job_as_dict(job), "deduplicated": False})
        else:
            command.stdout.write(str(job.pk))
        return
    if not options["json"]:
        command.stdout.write(str(job.pk))
        command.stdout.flush()
    job = wait_for_job(job, command.stderr)
    if options["json"]:
        command.print_json({**job_as_dict(job), "deduplicated": False})
    if job.status != Job.Status.SUCCEEDED:
        raise CliError("", EXIT_JOB_FAILED)


def _submit_batch(command: Any, user: Any, options: dict[str, Any]) -> None:
    """Several sources: one batch. Prints `batch <id>` then the job ids, one a line."""
    if options["after"] or options["wait"]:
        raise CliError("--after and --wait take one PATH; several PATHs make a batch.")
    batch, jobs = submit_batch(
        sources=options["path"],
        owner=user,
        processor=options["processor"],
        options=parse_options(options["option"]),
        columns=options["columns"],
        start_row=options["start_row"],
        row_count=options["rows"],
        row_timeout=options["row_timeout"],
        worksheet=options["worksheet"],
        priority=options["priority"],
    )
    if options["json"]:
        progress = public.batch_progress(batch)
        command.print_json(batch_as_dict(batch, progress.jobs, progress.percent))
        return
    command.stdout.write(f"batch {batch.pk}")
    for job in jobs:
        command.stdout.write(str(job.pk))


def _export_arguments(export: argparse.ArgumentParser) -> None:
    export.add_argument("id", metavar="ID")
    export.add_argument("--format", choices=["csv", "xlsx"], help="Default: from -o's suffix.")
    export.add_argument("-o", "--output", required=True, metavar="FILE", help="'-': stdout (CSV).")


def _export(command: Any, user: Any, options: dict[str, Any]) -> None:
    job = find_job(user, options["id"])
    target = options["output"]
    fmt = export_format(options["format"], target)
    rows = export_results(job, fmt, target, command.stdout)
    if target != "-":
        command.stdout.write(f"Wrote {rows:,} rows of job #{job.pk} to {target} ({fmt}).")


# -- schedules --------------------------------------------------------------------------


def schedule_sheet(*, source: str, owner, options: dict[str, Any]) -> Any:
    """A schedule of `sheets.process` jobs on `source`: a file (imported once, each run
    processes that sheet), `sheet:ID`, or a Google Sheet (imported now to check the
    columns and options, then re-read at every run). Bad input leaves nothing behind."""
    check_processor(options["processor"])
    check_priority(options["priority"], owner)
    sheet = import_sheet(source, owner, options["worksheet"])
    imported = not is_sheet_ref(source)
    google = sheet.source == Sheet.Source.GSHEET and not is_sheet_ref(source)
    try:
        params = validate_params(
            {
                "sheet_id": sheet.pk,
                "processor": options["processor"],
                "options": parse_options(options["option"]),
                "columns": options["columns"],
                "start_row": options["start_row"],
                "row_count": options["rows"],
                "row_timeout": options["row_timeout"],
                **({"google_url": source.strip()} if google else {}),
            },
            owner,
        )
        return create_schedule(
            owner=owner,
            kind=SHEET_KIND,
            params=params,
            options=options,
            name=f"{sheet.name} · {get_processor(options['processor']).label}",
        )
    except ValueError as exc:  # SheetParamsError is one
        if imported:
            sheet.delete()
        errors = getattr(exc, "errors", None)
        raise CliError(params_message(errors) if errors else str(exc)) from None
    except CliError:
        if imported:
            sheet.delete()
        raise


def _schedule_add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source",
        metavar="SOURCE",
        help="CSV or XLSX file (imported once), sheet:ID, or a Google Sheet link (re-read "
        "at every run).",
    )
    _sheet_job_arguments(parser)
    add_schedule_arguments(parser)


def _schedule_add(command: Any, user: Any, options: dict[str, Any]) -> None:
    schedule = schedule_sheet(source=options["source"], owner=user, options=options)
    if options["json"]:
        command.print_json(schedule_as_dict(schedule))
    else:
        command.stdout.write(schedule_text(schedule))


register_verb(
    Verb(
        "add",
        "Process a sheet on a schedule (--cron or --every); prints the schedule.",
        _schedule_add_arguments,
        _schedule_add,
        group=GROUP,
    )
)
register_verb(
    Verb(
        "submit",
        "Import a CSV/XLSX file or Google Sheet and start a job on it; prints the job id.",
        _submit_arguments,
        _submit,
    )
)
register_verb(
    Verb("export", "Write a sheet job's results.", _export_arguments, _export, json=False)
)
