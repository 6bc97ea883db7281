"""The sheet verbs of `manage.py conveyor`: `submit` (import a CSV/XLSX file, a Google
Sheet or an imported sheet and start a job on it; several of them: a batch), `export` (write a sheet job's
results) and `schedule add` (process a sheet on a cron expression or an interval; a
Google Sheet is re-read at every run), registered with the command's verb registry.

Everything goes through the same functions as the pages (`sheets.services`,
`sheets.io.importing`, `sheets.io.export`); problems raise `CliError` (exit code 2).
"""

from __future__ import annotations

import argparse
import json
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
from sheets import selectors
from sheets.io.export import csv_chunks, xlsx_file
from sheets.io.importing import SpooledTable, spool_google, spool_table
from sheets.io.sources import SourceError, open_upload
from sheets.models import Sheet
from sheets.names import KIND as SHEET_KIND
from sheets.processors import UnknownProcessor, get_processor
from sheets.run import SheetRun
from sheets.services import sheet_import_and_submit, sheet_import_then, sheets_import_and_submit

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


def parse_after(value: str | None, user: Any, flag: str = "--after") -> list[int]:
    """`--after 12,13` (or `--after-any`): jobs the new one waits for, which the user
    must be able to see."""
    if not value:
        return []
    try:
        ids = [int(part.strip().lstrip("#")) for part in value.split(",") if part.strip()]
    except ValueError:
        raise CliError(f"{flag} takes job ids separated by commas, not {value!r}.") from None
    if missing := public.missing_jobs(user, ids):
        raise CliError(f"{flag}: no job {', '.join(f'#{i}' for i in missing)}.")
    return ids


def parse_on_complete(value: str | None, user: Any) -> Any:
    """`--on-complete KIND[:JSON]`: a job run when the batch has ended, whatever the
    outcome (the outcome in its params, under `batch_outcome`)."""
    if not value:
        return None
    kind, _, text = value.partition(":")
    try:
        params = json.loads(text) if text.strip() else {}
    except ValueError:
        raise CliError(f"--on-complete: the params after {kind}: are not JSON.") from None
    if not isinstance(params, dict):
        raise CliError("--on-complete: the params must be a JSON object.")
    try:
        return public.checked_submission(kind=kind.strip(), params=params, owner=user)
    except public.JobActionError as exc:
        raise CliError(f"--on-complete: {exc}") from None


def is_google_sheet(source: str) -> bool:
    return source.startswith(("https://", "http://")) or bool(GOOGLE_ID.fullmatch(source))


def read_source(source: str, owner, worksheet: str | None = None) -> Sheet | SpooledTable:
    """`source` read and checked, nothing stored yet (`sheets.services` stores it with
    what is done with it, in one transaction): a CSV/XLSX path, or a Google Sheet URL or
    id; or, for `sheet:ID`, that sheet already imported: the owner's, or another user's
    if the owner may act for them (`selectors.may_submit_for`, as on the pages and the
    API). The caller closes a SpooledTable."""
    if match := SHEET_REF.fullmatch(source.strip()):
        sheet = selectors.sheet_to_run(owner, int(match.group(1)))
        if sheet is None:
            raise CliError(f"No sheet #{match.group(1)} (acting as {owner.get_username()}).")
        return sheet
    path = Path(source)
    try:
        if path.is_file():
            return spool_table(open_upload(path, path.name, worksheet=worksheet), path.name)
        if not path.exists() and is_google_sheet(source):
            return spool_google(url_or_id=source, worksheet=worksheet)
    except SourceError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"Cannot read {source}: {exc.strerror or exc}.") from None
    if path.exists():
        raise CliError(f"{source} is not a file.")
    raise CliError(f"No such file: {source}")


def _closed(tables: list[Sheet | SpooledTable]) -> None:
    for table in tables:
        if isinstance(table, SpooledTable):
            table.close()


def refusal(exc: Exception) -> CliError:
    """A refused run (SheetParamsError, a bad priority, a quota, an `--after` job that
    failed) as the command's error, its fields named as the flags that set them."""
    errors = getattr(exc, "errors", None)
    return CliError(params_message(errors) if errors else str(exc))


def params_message(errors: dict[str, str]) -> str:
    """SheetParamsError fields named as the flags that set them."""
    parts = [
        f"{PARAM_FLAGS.get(field, f'--option {field}')}: {message.rstrip('.')}"
        for field, message in errors.items()
    ]
    return "; ".join(parts) + "."


def command_run(options: dict[str, Any], owner) -> SheetRun:
    """The run the command line asks for (`--processor`, `--option`, `--columns`,
    `--start-row`, `--rows`, `--row-timeout`, `--priority`), its processor and priority
    checked first: cheap checks, before anything is read."""
    check_processor(options["processor"])
    check_priority(options["priority"], owner)
    return SheetRun(
        processor=options["processor"],
        options=parse_options(options["option"]),
        columns=options["columns"],
        start_row=options["start_row"],
        row_count=options["rows"],
        row_timeout=options["row_timeout"],
        priority=options["priority"],
    )


def submit_sheet(
    *, source: str, owner, run: SheetRun, worksheet: str | None = None
) -> tuple[Job, bool]:
    """Import `source` and queue `run` on it; `(job, created)`: `created` is False when
    the sheet's active job was found instead (`sheet:ID` of a sheet with one), and
    nothing new started. The sheet and its job are stored in one transaction
    (`sheet_import_and_submit`), so a refused job leaves no sheet behind.
    """
    table = read_source(source, owner, worksheet)
    try:
        _, job, created = sheet_import_and_submit(table=table, owner=owner, run=run)
    except (ValueError, JobActionError) as exc:  # SheetParamsError is a ValueError
        raise refusal(exc) from None
    finally:
        _closed([table])
    return job, created


def submit_batch(
    *,
    sources: list[str],
    owner,
    run: SheetRun,
    worksheet: str | None = None,
    on_complete: Any = None,
) -> tuple[Batch, list[Job]]:
    """Import every source and queue `run` on each sheet as one batch: all or nothing.

    A source that cannot be read, or whose sheet refuses the job's parameters, ends the
    command with a message naming it; the sheets and the batch are stored in one
    transaction (`sheets_import_and_submit`), so nothing is left behind.
    """
    tables: list[Sheet | SpooledTable] = []
    try:
        for source in sources:
            tables.append(_read_named(source, owner, worksheet))
        _, batch, jobs = sheets_import_and_submit(
            tables=tables, owner=owner, run=run, on_complete=on_complete
        )
    except (ValueError, JobActionError) as exc:
        error = refusal(exc)
        where = sources[exc.index] if hasattr(exc, "index") else ""
        raise CliError(f"{where}: {error.message}" if where else error.message) from None
    finally:
        _closed(tables)
    return batch, jobs


def _read_named(source: str, owner, worksheet: str | None) -> Sheet | SpooledTable:
    try:
        return read_source(source, owner, worksheet)
    except CliError as exc:
        message = exc.message if exc.message.startswith(source) else f"{source}: {exc.message}"
        raise CliError(message, exc.code) from None


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
    submit.add_argument(
        "--after",
        metavar="ID[,ID]",
        help="Start once these jobs succeeded (cancelled if one fails or is cancelled).",
    )
    submit.add_argument(
        "--after-any",
        metavar="ID[,ID]",
        help="Start once these jobs ended, whatever the outcome.",
    )
    submit.add_argument(
        "--on-complete",
        metavar="KIND[:JSON]",
        help="Several PATHs: a job to run once the batch ended, whatever the outcome.",
    )
    submit.add_argument(
        "--wait", action="store_true", help="Show progress on stderr until the job ends."
    )


def _submit(command: Any, user: Any, options: dict[str, Any]) -> None:
    if len(options["path"]) > 1:
        _submit_batch(command, user, options)
        return
    if options.get("on_complete"):
        raise CliError("--on-complete takes several PATHs (a batch).")
    run = command_run(options, user)
    run = run.replace(
        after=parse_after(options["after"], user),
        after_any=parse_after(options["after_any"], user, "--after-any"),
    )
    job, created = submit_sheet(
        source=options["path"][0], owner=user, run=run, worksheet=options["worksheet"]
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
    if options["after"] or options["after_any"] or options["wait"]:
        raise CliError("--after, --after-any and --wait take one PATH; several PATHs make a batch.")
    batch, jobs = submit_batch(
        sources=options["path"],
        owner=user,
        run=command_run(options, user),
        worksheet=options["worksheet"],
        on_complete=parse_on_complete(options.get("on_complete"), user),
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
    columns and options, then re-read at every run). The sheet and its schedule are
    stored in one transaction: bad input leaves nothing behind."""
    run = command_run(options, owner)
    table = read_source(source, owner, options["worksheet"])
    google = isinstance(table, SpooledTable) and table.info.kind == Sheet.Source.GSHEET
    run = run.replace(google_url=source.strip() if google else None)

    def add_schedule(sheet: Sheet) -> Any:
        return create_schedule(
            owner=owner,
            kind=SHEET_KIND,
            params=run.replace(sheet_id=sheet.pk).check(owner),
            options=options,
            name=f"{sheet.name} · {get_processor(options['processor']).label}",
        )

    try:
        return sheet_import_then(table=table, owner=owner, then=add_schedule)
    except ValueError as exc:  # SheetParamsError is one
        raise refusal(exc) from None
    finally:
        _closed([table])


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
