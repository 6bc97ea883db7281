"""The generic verbs of `manage.py conveyor`: status, list, and one verb per entry of the
job actions (`jobs.actions.jobs.JOBS`: pause, resume, cancel [--force], retry
[--failed-rows], delete), and per entry of the batch actions (`conveyor batch pause ID`).

Apps register more (sheets: `submit`, `export`) in their own `cli` module.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from jobs import selectors
from jobs.actions.base import Action
from jobs.actions.batches import BATCHES
from jobs.actions.jobs import JOBS
from jobs.cli.base import (
    Verb,
    apply_action,
    find_job,
    find_visible,
    jobs_table,
    list_jobs,
    register_group,
    register_verb,
    state_line,
    status_text,
)
from jobs.models import Batch, Job
from jobs.serializers import job_as_dict

BATCH_GROUP = "batch"


def _job_id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", metavar="ID")


def find_batch(user: Any, batch_id: str) -> Batch:
    return find_visible(selectors.visible_batches(user), batch_id, "Batch", user)


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


def _option_flags(action: Action) -> Callable[[argparse.ArgumentParser], None]:
    """The ID and a flag per option of the entry (`cancel --force`)."""

    def add(parser: argparse.ArgumentParser) -> None:
        _job_id(parser)
        for option in action.options:
            parser.add_argument(
                option.flag, dest=option.name, action="store_true", help=option.help
            )

    return add


def _job_verb(action: Action) -> Verb:
    """`conveyor NAME ID [--option]`: the job's state after the action."""

    def handle(command: Any, user: Any, options: dict[str, Any]) -> None:
        job = find_job(user, options["id"])
        chosen = JOBS[JOBS.chosen(action.name, options)]
        if apply_action(JOBS, chosen.name, job, user) is None:
            _deleted(command, options, job.pk, f"Job #{job.pk} deleted.")
            return
        line = state_line(job)
        if chosen.tells_plan and job.message:  # "Redo 3 failed rows and ..."
            line = f"{line} {job.message}."
        command.show(job, options, line)

    return Verb(action.name, action.help, _option_flags(action), handle)


def _deleted(command: Any, options: dict[str, Any], pk: int, text: str) -> None:
    if options["json"]:
        command.print_json({"deleted": pk})
    else:
        command.stdout.write(text)


def _batch_verb(action: Action) -> Verb:
    """`conveyor batch NAME ID`: how many of the batch's jobs changed, and why not others."""

    def handle(command: Any, user: Any, options: dict[str, Any]) -> None:
        found = find_batch(user, options["id"])
        outcome = apply_action(BATCHES, action.name, found, user)
        if options["json"]:
            command.print_json({"changed": outcome.changed, "skipped": outcome.skipped})
        else:
            command.stdout.write("\n".join(outcome.lines(action.done)))

    return Verb(action.name, action.help, _job_id, handle, group=BATCH_GROUP)


register_verb(Verb("status", "Show a job.", _job_id, _status))
register_verb(Verb("list", "List recent jobs.", _list_arguments, _list))
register_group(BATCH_GROUP, "Act on every job of a batch: pause, resume, cancel, ...")
for action in JOBS.values():
    if action.on_cli:
        register_verb(_job_verb(action))
for action in BATCHES.values():
    register_verb(_batch_verb(action))
