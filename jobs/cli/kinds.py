"""`manage.py conveyor kind ...`: operators' holds on whole kinds of work.

`kind list [--json]`, `kind pause NAME [--reason TEXT]`, `kind resume NAME`,
`kind cap NAME N|default`. NAME is a job kind, a Tasks queue (`tasks.<queue>`) or a
sheet processor (`llm`). Changes are staff only (`jobs.actions.kinds`); bad input is a
CliError (exit code 2, one line).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from jobs.actions.kinds import kind_cap, kind_list, kind_pause, kind_resume
from jobs.cli.base import CliError, Verb, register_group, register_verb, text_table
from jobs.engine.errors import ControlError, JobActionError

GROUP = "kind"

register_group(GROUP, "Pause, resume or cap a job kind, a Tasks queue or a processor.")


def _json(command: Any, data: Any) -> None:
    """Dates as ISO 8601 (the API's shape)."""
    command.print_json(json.loads(json.dumps(data, cls=DjangoJSONEncoder)))


def _row(name: str) -> dict[str, Any]:
    return next(row for row in kind_list() if row["name"] == name)


def _state(row: dict[str, Any]) -> str:
    if row["paused"]:
        since = timezone.localtime(row["paused_at"]).strftime("%Y-%m-%d %H:%M")
        by = f" by {row['paused_by']}" if row["paused_by"] else ""
        return f"paused{by} since {since}"
    return "running"


def _cap(row: dict[str, Any]) -> str:
    if row["cap"]:
        return str(row["cap"])
    return f"{row['default_cap']} (default)" if row["default_cap"] else "-"


def _list(command: Any, user: Any, options: dict[str, Any]) -> None:
    rows = kind_list()
    if options["json"]:
        _json(command, rows)
        return
    header = ("NAME", "TYPE", "STATE", "CAP", "REASON")
    cells = [(r["name"], r["type"], _state(r), _cap(r), r["reason"]) for r in rows]
    command.stdout.write(text_table(header, cells))


def _name(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="A job kind, tasks.<queue> or a processor.")


def _pause_arguments(parser: argparse.ArgumentParser) -> None:
    _name(parser)
    parser.add_argument("--reason", default="", help="Why (shown with its jobs).")


def _cap_arguments(parser: argparse.ArgumentParser) -> None:
    _name(parser)
    parser.add_argument("cap", metavar="N", help="Jobs running at once, or 'default'.")


def _changed(command: Any, options: dict[str, Any], name: str) -> None:
    row = _row(name)
    if options["json"]:
        _json(command, row)
    else:
        command.stdout.write(f"{name}: {_state(row)}; cap {_cap(row)}.")


def _acting(change: Any) -> Any:
    def handle(command: Any, user: Any, options: dict[str, Any]) -> None:
        try:
            change(user, options)
        except (ControlError, JobActionError) as exc:
            raise CliError(str(exc)) from None
        _changed(command, options, options["name"].strip())

    return handle


def _pause(user: Any, options: dict[str, Any]) -> None:
    kind_pause(options["name"], by=user, reason=options["reason"])


def _resume(user: Any, options: dict[str, Any]) -> None:
    kind_resume(options["name"], by=user)


def _set_cap(user: Any, options: dict[str, Any]) -> None:
    cap = options["cap"].strip()
    kind_cap(options["name"], None if cap.lower() == "default" else cap, by=user)


for verb in [
    Verb(
        "list",
        "List kinds, queues and processors with their state and cap.",
        lambda p: None,
        _list,
        group=GROUP,
    ),
    Verb(
        "pause",
        "Pause a kind, queue or processor on every cluster.",
        _pause_arguments,
        _acting(_pause),
        group=GROUP,
    ),
    Verb(
        "resume", "Resume a paused kind, queue or processor.", _name, _acting(_resume), group=GROUP
    ),
    Verb(
        "cap",
        "Cap how many of its jobs run at once (or 'default').",
        _cap_arguments,
        _acting(_set_cap),
        group=GROUP,
    ),
]:
    register_verb(verb)
