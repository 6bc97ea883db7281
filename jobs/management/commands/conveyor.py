"""`manage.py conveyor`: list, show and control jobs, plus the verbs apps register
(sheets: submit and export).

Parsing and printing only: the verbs live in `jobs/cli/verbs.py` and in each app's
`cli` module (found with `autodiscover_modules("cli")`) and work through the same
services as the pages. Exit codes: 0 done, 1 the awaited job failed or was cancelled,
2 bad input or an action that does not apply to the job, 3 nothing new started (an
active job already does the work: `jobs.cli.base.deduplicated`, the rule of every verb
that may deduplicate), 130 Ctrl-C. From the shell an
error is one "Error: ..." line on stderr; through `call_command` it is raised as
`jobs.cli.base.CliError` (`.code`, `.message`).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, NoReturn

from django.core.management.base import BaseCommand, CommandParser
from django.utils.module_loading import autodiscover_modules

from jobs.cli import base as cli
from jobs.cli import kinds, schedules, verbs, webhooks  # noqa: F401  (register the generic verbs)
from jobs.models import Job
from jobs.serializers import job_as_dict

autodiscover_modules("cli")


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
        groups = {}
        for name, help_text in cli.GROUPS.items():
            group = actions.add_parser(name, help=help_text)
            groups[name] = group.add_subparsers(
                dest="subaction", required=True, metavar="ACTION", parser_class=OneLineErrorParser
            )
        for verb in cli.VERBS.values():
            parent = groups[verb.group] if verb.group else actions
            sub = parent.add_parser(
                verb.name, parents=[_flags(json_output=verb.json)], help=verb.help
            )
            verb.add_arguments(sub)

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
        key = f"{action} {options['subaction']}" if options.get("subaction") else action
        verb = cli.VERBS[key]
        with cli.quiet_queue_log():
            verb.handle(self, user, {**options, "action": verb.name})

    def show(self, job: Job, options: dict[str, Any], text: str) -> None:
        if options["json"]:
            self.print_json(job_as_dict(job))
        else:
            self.stdout.write(text)

    def print_json(self, data: Any) -> None:
        self.stdout.write(json.dumps(data, indent=2, ensure_ascii=False))
