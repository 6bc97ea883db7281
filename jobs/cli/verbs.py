"""The generic verbs of `manage.py conveyor`: status, list, and one verb per entry of the
job actions (`jobs.actions.jobs.JOBS`: pause, resume [--set NAME=VALUE], cancel [--force],
retry [--failed-rows], delete), and per entry of the batch actions (`conveyor batch pause
ID`).

`resume --set budget_usd=5` changes what the job's kind lets a resume change (its
`resume_fields`, a sheet job's budget), as the API's resume body and the page's form do;
the kind checks the values (`resume_with`), so jobs/ names no field of any kind.

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
    CliError,
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
from jobs.extensions import extension_for
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


RESUME = "resume"  # the entry that takes changes (the API's resume body, the page's form)


def _option_flags(action: Action) -> Callable[[argparse.ArgumentParser], None]:
    """The ID and a flag per option of the entry (`cancel --force`); for resume, `--set`."""

    def add(parser: argparse.ArgumentParser) -> None:
        _job_id(parser)
        for option in action.options:
            parser.add_argument(
                option.flag, dest=option.name, action="store_true", help=option.help
            )
        if action.name == RESUME:
            parser.add_argument(
                "--set",
                dest="changes",
                action="append",
                default=[],
                metavar="NAME=VALUE",
                help="Resume with this changed (what the job's kind allows, e.g. a sheet "
                "job's budget_tokens or budget_usd; an empty VALUE lifts it). Repeatable.",
            )

    return add


def parse_changes(job: Job, pairs: list[str]) -> dict[str, str]:
    """`--set NAME=VALUE` pairs as the changes of a resume (strings, as a form sends
    them: the kind parses and checks the values); a NAME the job's kind does not let a
    resume change is refused here, as the API refuses an unknown body field."""
    allowed = extension_for(job.kind).resume_fields
    changes: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise CliError(f"--set takes NAME=VALUE, not {pair!r}.")
        if name not in allowed:
            may = f"may change {', '.join(allowed)}" if allowed else "changes nothing"
            raise CliError(
                f"--set {name}: unknown field; a resume of job #{job.pk} ({job.kind}) {may}."
            )
        changes[name] = value.strip()
    return changes


def _job_verb(action: Action) -> Verb:
    """`conveyor NAME ID [--option]`: the job's state after the action."""

    def handle(command: Any, user: Any, options: dict[str, Any]) -> None:
        job = find_job(user, options["id"])
        chosen = JOBS[JOBS.chosen(action.name, options)]
        changes = parse_changes(job, options.get("changes") or [])
        given = {"changes": changes} if changes else {}
        if apply_action(JOBS, chosen.name, job, user, **given) is None:
            _deleted(command, options, job.pk, f"Job #{job.pk} deleted.")
            return
        line = state_line(job)
        if chosen.tells_plan and job.message:  # "Redo 3 failed rows and ..."
            line = f"{line} {job.message}."
        if changes and (said := selectors.last_state_message(job)):
            line = f"{line} {said}."  # "Resumed by admin: budget_usd set to 5"
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
