"""`manage.py conveyor schedule ...`: list and show schedules, one verb per entry of
`jobs.actions.schedules.SCHEDULES` (pause, resume, run-now, delete), and the pieces an
app's `schedule add` verb uses (sheets registers one).

Schedules are scoped like jobs (the user's own; staff all) and changed through the
registry; bad input is a CliError (exit code 2, one line).
"""

from __future__ import annotations

import argparse
from typing import Any

from django.conf import settings
from django.utils import timezone

from jobs import selectors
from jobs.actions.base import Action
from jobs.actions.schedules import SCHEDULES
from jobs.cli.base import (
    CliError,
    Verb,
    deduplicated,
    find_job,
    find_visible,
    register_group,
    register_verb,
    text_table,
)
from jobs.engine.errors import AlreadyActive, JobActionError, ScheduleError
from jobs.models import Job, Schedule
from jobs.schedules.services import schedule_create
from jobs.serializers import job_as_dict, schedule_as_dict

GROUP = "schedule"
# Where each schedule field comes from on the command line, for error messages.
FLAGS = {
    "cron": "--cron",
    "every": "--every",
    "timezone": "--timezone",
    "overlap": "--overlap",
    "priority": "--priority",
    "name": "--name",
    "kind": "--kind",
    "params": "the job's options",
}

register_group(GROUP, "Run a job on a cron expression or an interval: add, list, show, ...")


# -- helpers for `schedule add` verbs --------------------------------------------------


def add_schedule_arguments(parser: argparse.ArgumentParser) -> None:
    """--cron or --every (one is required), --timezone, --overlap, --name, --priority."""
    timing = parser.add_mutually_exclusive_group(required=True)
    timing.add_argument("--cron", metavar="EXPR", help='5 fields, e.g. "0 7 * * *".')
    timing.add_argument("--every", metavar="DURATION", help="30s, 10m, 1h, 1d or seconds.")
    parser.add_argument(
        "--timezone",
        metavar="TZ",
        default=settings.TIME_ZONE,
        help=f"IANA name for --cron (default {settings.TIME_ZONE}).",
    )
    parser.add_argument(
        "--overlap",
        choices=Schedule.Overlap.values,
        default=Schedule.Overlap.SKIP,
        help="skip (default): no run while the previous one is active; queue: run anyway.",
    )
    parser.add_argument("--name", metavar="TEXT", default="", help="Shown in lists.")
    parser.add_argument("--priority", metavar="P", help="high, normal or low (staff: any integer).")


def create_schedule(
    *, owner: Any, kind: str, params: dict[str, Any], options: dict[str, Any], name: str = ""
) -> Schedule:
    """A schedule from `add_schedule_arguments` options; problems name the flags. The
    priority follows the rule for the user the CLI acts as (`selectors.priority_for`)."""
    try:
        priority = selectors.priority_for(owner, options["priority"])
    except ValueError as exc:
        raise CliError(flags_message({"priority": str(exc)})) from None
    try:
        return schedule_create(
            owner=owner,
            kind=kind,
            params=params,
            name=options["name"] or name,
            priority=priority,
            cron=options["cron"] or "",
            every=options["every"],
            timezone=options["timezone"],
            overlap=options["overlap"],
        )
    except ScheduleError as exc:
        raise CliError(flags_message(exc.fields)) from None
    except JobActionError as exc:  # e.g. the owner has as many schedules as allowed
        raise CliError(str(exc)) from None


def flags_message(errors: dict[str, str]) -> str:
    parts = [
        f"{FLAGS.get(field, field)}: {message.rstrip('.')}" for field, message in errors.items()
    ]
    return "; ".join(parts) + "."


def find_schedule(user: Any, schedule_id: str | int) -> Schedule:
    """The schedule if `user` may see it; another user's is "not found"."""
    return find_visible(selectors.visible_schedules(user), schedule_id, "Schedule", user)


def _local(value) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S %Z") if value else "–"


def state(schedule: Schedule) -> str:
    return "enabled" if schedule.enabled else "paused"


def last_run(schedule: Schedule) -> str:
    job = schedule.last_job
    if job is None:
        return "–" if schedule.last_run_at is None else f"{_local(schedule.last_run_at)} (deleted)"
    return f"job #{job.pk} {job.status}"


def schedule_text(schedule: Schedule) -> str:
    """The human form of `schedule show`."""
    lines = [
        f"Schedule #{schedule.pk}  {schedule.title}  [{schedule.kind}]",
        f"When      {schedule.when}, overlap {schedule.overlap}, {state(schedule)}"
        + (f" ({schedule.paused_reason})" if schedule.paused_reason else ""),
        f"Next run  {_local(schedule.next_run_at)}",
        f"Last run  {_local(schedule.last_run_at)} · {last_run(schedule)}",
        f"Runs      {schedule.run_count} started, {schedule.skipped_count} skipped"
        + (f" (last {_local(schedule.last_skipped_at)})" if schedule.last_skipped_at else ""),
    ]
    if schedule.last_error:
        lines.append(f"Error     {schedule.last_error.splitlines()[0]}")
    return "\n".join(lines)


def schedules_table(rows: list[Schedule]) -> str:
    if not rows:
        return "No schedules."
    header = ("ID", "STATE", "WHEN", "NEXT RUN", "LAST RUN", "NAME")
    cells = [
        (
            str(s.pk),
            state(s),
            s.when,
            timezone.localtime(s.next_run_at).strftime("%Y-%m-%d %H:%M:%S")
            if s.next_run_at
            else "–",
            last_run(s),
            s.title[:60],
        )
        for s in rows
    ]
    return text_table(header, cells)


# -- the verbs -----------------------------------------------------------------------


def _schedule_id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", metavar="ID")


def _list_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=int, default=50, metavar="N")


def _list(command: Any, user: Any, options: dict[str, Any]) -> None:
    if options["limit"] < 1:
        raise CliError("--limit must be at least 1.")
    rows = list(selectors.visible_schedules(user).order_by("pk")[: options["limit"]])
    if options["json"]:
        command.print_json([schedule_as_dict(s) for s in rows])
    else:
        command.stdout.write(schedules_table(rows))


def _show(command: Any, user: Any, options: dict[str, Any]) -> None:
    found = find_schedule(user, options["id"])
    _print(command, options, found, schedule_text(found))


def _print(command: Any, options: dict[str, Any], found: Schedule, text: str) -> None:
    if options["json"]:
        command.print_json(schedule_as_dict(found))
    else:
        command.stdout.write(text)


def _action_verb(action: Action) -> Verb:
    """`conveyor schedule NAME ID`: the schedule's state after the action; run-now prints
    the job it started (or says an active one already does the work), delete says so."""

    def handle(command: Any, user: Any, options: dict[str, Any]) -> None:
        found = find_schedule(user, options["id"])
        try:
            result = SCHEDULES.act(action.name, found, user)
        except AlreadyActive as exc:  # the CLI's one rule for work already being done
            deduplicated(command, options, find_job(user, exc.job_id), exc.where)
            return
        except JobActionError as exc:
            raise CliError(str(exc)) from None
        if result is None:
            _deleted(command, options, found)
        elif isinstance(result, Job):
            _started(command, options, result)
        else:
            found = find_schedule(user, found.pk)
            text = f"Schedule #{found.pk} is {state(found)}; next run {_local(found.next_run_at)}."
            _print(command, options, found, text)

    return Verb(action.name, action.help, _schedule_id, handle, group=GROUP)


def _deleted(command: Any, options: dict[str, Any], found: Schedule) -> None:
    if options["json"]:
        command.print_json({"deleted": found.pk})
    else:
        command.stdout.write(f"Schedule #{found.pk} deleted (its runs stay as jobs).")


def _started(command: Any, options: dict[str, Any], job: Job) -> None:
    if options["json"]:
        command.print_json({**job_as_dict(job), "deduplicated": False})
    else:
        command.stdout.write(str(job.pk))


for verb in [
    Verb("list", "List schedules.", _list_arguments, _list, group=GROUP),
    Verb("show", "Show a schedule.", _schedule_id, _show, group=GROUP),
    *[_action_verb(action) for action in SCHEDULES.values()],
]:
    register_verb(verb)
