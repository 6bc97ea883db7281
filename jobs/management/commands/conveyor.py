"""`manage.py conveyor`: submit sheet jobs, watch, list and control jobs, export results.

Parsing and printing only; the work is done in `jobs.cli.base` through the same services as
the pages. Exit codes: 0 done, 1 the awaited job failed or was cancelled, 2 bad input
or an action that does not apply to the job, 130 Ctrl-C. From the shell an error is one
"Error: ..." line on stderr; through `call_command` it is raised as `jobs.cli.base.CliError`
(`.code`, `.message`).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, NoReturn

from django.core.management.base import BaseCommand, CommandParser

from jobs.cli import base as cli
from jobs.models import Job
from jobs.serializers import job_as_dict


class OneLineErrorParser(CommandParser):
    """Subcommand parser whose usage errors are one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise cli.CliError(f"{message} (see: {self.prog} --help)")


def _flags(*, json_output: bool = True) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--user", metavar="NAME", help="Act as this user (default: the first superuser)."
    )
    if json_output:
        common.add_argument("--json", action="store_true", help="Print JSON.")
    return common


def _add_submit(actions: Any) -> None:
    submit = actions.add_parser(
        "submit",
        parents=[_flags()],
        help="Import a CSV/XLSX file or Google Sheet and start a job on it; prints the job id.",
    )
    submit.add_argument("path", metavar="PATH", help="CSV or XLSX file, or a Google Sheet URL/id.")
    submit.add_argument("--processor", required=True, metavar="NAME")
    submit.add_argument(
        "--option", action="append", default=[], metavar="NAME=VALUE", help="Repeatable."
    )
    submit.add_argument("--columns", metavar="A,B", help="Input columns (default: all).")
    submit.add_argument("--start-row", metavar="N", help="First data row (1 = under the header).")
    submit.add_argument("--rows", metavar="N", help="How many rows (default: to the end).")
    submit.add_argument("--row-timeout", metavar="SECONDS")
    submit.add_argument("--worksheet", metavar="NAME", help="XLSX or Google worksheet.")
    submit.add_argument("--priority", metavar="P", help="high, normal, low or an integer.")
    submit.add_argument(
        "--wait", action="store_true", help="Show progress on stderr until the job ends."
    )


def _add_job_commands(actions: Any) -> None:
    status = actions.add_parser("status", parents=[_flags()], help="Show a job.")
    status.add_argument("id", metavar="ID")
    listing = actions.add_parser("list", parents=[_flags()], help="List recent jobs.")
    listing.add_argument("--status", metavar="S", help=", ".join(Job.Status.values))
    listing.add_argument("--kind", metavar="K")
    listing.add_argument("--limit", type=int, default=20, metavar="N")
    for name, text in [
        ("cancel", "Cancel a job."),
        ("pause", "Pause a job."),
        ("resume", "Resume a paused job."),
        ("retry", "Run a finished job again."),
    ]:
        action = actions.add_parser(name, parents=[_flags()], help=text)
        action.add_argument("id", metavar="ID")
        if name == "retry":
            action.add_argument("--failed-rows", action="store_true", help="Only the failed rows.")
    export = actions.add_parser(
        "export", parents=[_flags(json_output=False)], help="Write a sheet job's results."
    )
    export.add_argument("id", metavar="ID")
    export.add_argument("--format", choices=["csv", "xlsx"], help="Default: from -o's suffix.")
    export.add_argument("-o", "--output", required=True, metavar="FILE", help="'-': stdout (CSV).")


class Command(BaseCommand):
    help = "Submit, watch, list, cancel, pause, resume, retry and export Conveyor jobs."

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        # Django builds a plain CommandParser; ours only changes how errors are reported.
        parser.__class__ = OneLineErrorParser
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(
            dest="action", required=True, metavar="ACTION", parser_class=OneLineErrorParser
        )
        _add_submit(actions)
        _add_job_commands(actions)

    def run_from_argv(self, argv: list[str]) -> None:
        try:
            super().run_from_argv(argv)
        except cli.CliError as exc:
            if exc.message:
                self.stderr.write(f"Error: {exc.message}")
            sys.exit(exc.code)
        except KeyboardInterrupt:  # outside --wait, which handles its own
            self.stderr.write("Interrupted.")
            sys.exit(cli.EXIT_INTERRUPTED)

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        user = cli.acting_user(options["user"])
        handlers = {
            "submit": self.submit,
            "status": self.status,
            "list": self.list_jobs,
            "export": self.export,
        }
        with cli.quiet_queue_log():
            handlers.get(action, self.act)(user, action, options)

    def submit(self, user, action: str, options: dict[str, Any]) -> None:
        job = cli.submit_sheet(
            source=options["path"],
            owner=user,
            processor=options["processor"],
            options=cli.parse_options(options["option"]),
            columns=options["columns"],
            start_row=options["start_row"],
            row_count=options["rows"],
            row_timeout=options["row_timeout"],
            worksheet=options["worksheet"],
            priority=options["priority"],
        )
        if not options["wait"]:
            self.show(job, options, str(job.pk))
            return
        if not options["json"]:
            self.stdout.write(str(job.pk))
            self.stdout.flush()
        job = cli.wait_for_job(job, self.stderr)
        if options["json"]:
            self.print_json(job_as_dict(job))
        if job.status != Job.Status.SUCCEEDED:
            raise cli.CliError("", cli.EXIT_JOB_FAILED)

    def status(self, user, action: str, options: dict[str, Any]) -> None:
        job = cli.find_job(user, options["id"])
        self.show(job, options, cli.status_text(job))

    def list_jobs(self, user, action: str, options: dict[str, Any]) -> None:
        jobs = cli.list_jobs(
            user, status=options["status"], kind=options["kind"], limit=options["limit"]
        )
        if options["json"]:
            self.print_json([job_as_dict(job) for job in jobs])
        else:
            self.stdout.write(cli.jobs_table(jobs))

    def act(self, user, action: str, options: dict[str, Any]) -> None:
        job = cli.find_job(user, options["id"])
        job = cli.apply_action(action, job, user, failed_rows=options.get("failed_rows", False))
        self.show(job, options, cli.state_line(job))

    def export(self, user, action: str, options: dict[str, Any]) -> None:
        job = cli.find_job(user, options["id"])
        target = options["output"]
        fmt = cli.export_format(options["format"], target)
        rows = cli.export_results(job, fmt, target, self.stdout)
        if target != "-":
            self.stdout.write(f"Wrote {rows:,} rows of job #{job.pk} to {target} ({fmt}).")

    def show(self, job: Job, options: dict[str, Any], text: str) -> None:
        if options["json"]:
            self.print_json(job_as_dict(job))
        else:
            self.stdout.write(text)

    def print_json(self, data: Any) -> None:
        self.stdout.write(json.dumps(data, indent=2, ensure_ascii=False))
