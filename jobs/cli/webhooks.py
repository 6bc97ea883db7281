"""`manage.py conveyor webhook ...`: the acting user's webhooks.

`webhook add URL --events job.succeeded,job.failed [--global] [--json]` prints the id
and the signing secret (the one time it is shown), `webhook list [--json]`,
`webhook delete ID`, `webhook test ID` (a `webhook.test` delivery sent now; exit 1 if it
failed) and `webhook deliveries ID [--json]`. Every change goes through
`jobs.notices.services`; bad input is a CliError (exit code 2, one line).
"""

from __future__ import annotations

import argparse
from typing import Any

from django.utils import timezone

from jobs.cli.base import CliError, Verb, register_group, register_verb, text_table
from jobs.models import Webhook
from jobs.notices import delivery as sending
from jobs.notices import services
from jobs.serializers import delivery_as_dict, webhook_as_dict

GROUP = "webhook"

register_group(GROUP, "Add, list, test or delete webhooks (signed POSTs when jobs end).")


def _find(user: Any, raw: str) -> Webhook:
    text = raw.strip().lstrip("#")
    found = services.webhooks_of(user).filter(pk=int(text)).first() if text.isdigit() else None
    if found is None:
        raise CliError(f"No webhook {raw} of yours.")
    return found


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", metavar="URL", help="http(s) URL to POST events to.")
    parser.add_argument(
        "--events",
        required=True,
        metavar="EVENT[,EVENT]",
        help="job.succeeded, job.failed, job.cancelled, batch.finished, schedule.failed.",
    )
    parser.add_argument(
        "--global", dest="everyone", action="store_true", help="Staff: every user's jobs."
    )


def _add(command: Any, user: Any, options: dict[str, Any]) -> None:
    try:
        webhook, secret = services.webhook_create(
            user, options["url"], options["events"], for_everyone=options["everyone"]
        )
    except services.WebhookInvalid as exc:
        raise CliError(f"Invalid webhook: {exc}") from None
    if options["json"]:
        command.print_json({**webhook_as_dict(webhook), "secret": secret})
        return
    command.stdout.write(f"webhook {webhook.pk}")
    command.stdout.write(f"secret {secret}  (shown once: keep it with your receiver)")


def _list(command: Any, user: Any, options: dict[str, Any]) -> None:
    rows = list(services.webhooks_of(user).order_by("pk"))
    if options["json"]:
        command.print_json([webhook_as_dict(row) for row in rows])
        return
    header = ("ID", "URL", "EVENTS", "STATE")
    cells = [
        (
            str(row.pk),
            row.url + (" (global)" if row.owner_id is None else ""),
            ",".join(row.event_list),
            "active" if row.active else f"disabled: {row.disabled_reason}",
        )
        for row in rows
    ]
    command.stdout.write(text_table(header, cells))


def _id_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", metavar="ID")


def _delete(command: Any, user: Any, options: dict[str, Any]) -> None:
    webhook = _find(user, options["id"])
    services.webhook_delete(webhook)
    if options["json"]:
        command.print_json({"id": int(options["id"].strip().lstrip("#")), "deleted": True})
    else:
        command.stdout.write(f"Deleted webhook {webhook.url}.")


def _test(command: Any, user: Any, options: dict[str, Any]) -> None:
    webhook = _find(user, options["id"])
    if not webhook.active:
        raise CliError("The webhook is disabled; enable it first.")
    try:
        sent = sending.send_test(webhook)
    except sending.TooManyTests as exc:
        raise CliError(str(exc)) from None
    if options["json"]:
        command.print_json(delivery_as_dict(sent))
    elif not sent.error:
        command.stdout.write(f"Delivered (HTTP {sent.response_code}).")
    if sent.error:
        raise CliError(f"Test delivery failed: {sent.error}", 1)


def _deliveries(command: Any, user: Any, options: dict[str, Any]) -> None:
    rows = services.deliveries_of(_find(user, options["id"]))
    if options["json"]:
        command.print_json([delivery_as_dict(row) for row in rows])
        return
    header = ("ID", "EVENT", "ABOUT", "STATUS", "TRIES", "ANSWER", "LAST TRY")
    cells = [
        (
            str(row.pk),
            row.event,
            f"job {row.job_id}" if row.job_id else f"batch {row.batch_id}" if row.batch_id else "",
            row.status,
            str(row.attempts),
            row.error or (f"HTTP {row.response_code}" if row.response_code else ""),
            timezone.localtime(row.attempted_at).strftime("%H:%M:%S") if row.attempted_at else "",
        )
        for row in rows
    ]
    command.stdout.write(text_table(header, cells))


for verb in [
    Verb("add", "Add a webhook; prints its id and signing secret.", _add_arguments, _add),
    Verb("list", "List your webhooks (staff: and the global ones).", lambda p: None, _list),
    Verb("delete", "Delete a webhook and its delivery log.", _id_argument, _delete),
    Verb("test", "Send a test delivery now.", _id_argument, _test),
    Verb("deliveries", "A webhook's delivery log, newest first.", _id_argument, _deliveries),
]:
    register_verb(Verb(verb.name, verb.help, verb.add_arguments, verb.handle, group=GROUP))
