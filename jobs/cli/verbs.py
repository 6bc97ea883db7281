"""The generic verbs of `manage.py conveyor`: status, list, cancel, pause, resume, retry.

Apps register more (sheets: `submit`, `export`) in their own `cli` module.
"""

from __future__ import annotations

import argparse
from typing import Any

from jobs.cli.base import (
    Verb,
    apply_action,
    find_job,
    jobs_table,
    list_jobs,
    register_verb,
    state_line,
    status_text,
)
from jobs.models import Job
from jobs.serializers import job_as_dict


def _job_id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", metavar="ID")


def _status(command: Any, user: Any, options: dict[str, Any]) -> None:
    job = find_job(user, options["id"])
    command.show(job, options, status_text(job))


def _list_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--status", metavar="S", help=", ".join(Job.Status.values))
    parser.add_argument("--kind", metavar="K")
    parser.add_argument("--limit", type=int, default=20, metavar="N")


def _list(command: Any, user: Any, options: dict[str, Any]) -> None:
    jobs = list_jobs(user, status=options["status"], kind=options["kind"], limit=options["limit"])
    if options["json"]:
        command.print_json([job_as_dict(job) for job in jobs])
    else:
        command.stdout.write(jobs_table(jobs))


def _act(command: Any, user: Any, options: dict[str, Any]) -> None:
    job = find_job(user, options["id"])
    action = "force-stop" if options.get("force") else options["action"]
    failed_rows = options.get("failed_rows", False)
    job = apply_action(action, job, user, failed_rows=failed_rows)
    line = state_line(job)
    if failed_rows and job.message:  # what the retry will do: "Redo 3 failed rows and ..."
        line = f"{line} {job.message}."
    command.show(job, options, line)


def _cancel_arguments(parser: argparse.ArgumentParser) -> None:
    _job_id(parser)
    parser.add_argument(
        "--force",
        action="store_true",
        help="Stop the worker running it at once (for a job that reaches no checkpoint).",
    )


def _retry_arguments(parser: argparse.ArgumentParser) -> None:
    _job_id(parser)
    parser.add_argument(
        "--failed-rows",
        action="store_true",
        help="Redo the failed rows (and process any rows the job never reached).",
    )


register_verb(Verb("status", "Show a job.", _job_id, _status))
register_verb(Verb("list", "List recent jobs.", _list_arguments, _list))
register_verb(
    Verb("cancel", "Cancel a job (--force: stop its worker now).", _cancel_arguments, _act)
)
register_verb(Verb("pause", "Pause a job.", _job_id, _act))
register_verb(Verb("resume", "Resume a paused job.", _job_id, _act))
register_verb(Verb("retry", "Run a finished job again.", _retry_arguments, _act))
