"""What `manage.py conveyor` does besides parsing: act as a user, find their jobs, import
a file and submit a sheet job, wait for a job with a progress bar, export its results.

Everything goes through the same functions as the pages and the API (`jobs.engine.services`,
`sheets.services`, `sheets.io.importing`, `sheets.io.export`), with jobs scoped by
`Job.objects.visible_to(user)`. Expected problems raise `CliError`; the command turns
one into a single stderr line and its exit code (the EXIT_* values below).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import OutputWrapper
from django.db.models import QuerySet
from django.utils import timezone

from jobs import selectors
from jobs.actions.base import Registry
from jobs.engine.errors import InvalidChanges, JobActionError
from jobs.models import Job
from jobs.serializers import job_as_dict

EXIT_OK = 0
EXIT_JOB_FAILED = 1  # the awaited job failed or was cancelled
EXIT_BAD_INPUT = 2  # bad arguments, file, options, user or job id; an action that doesn't apply
EXIT_DEDUPLICATED = 3  # nothing new started: an active job already does this work
EXIT_INTERRUPTED = 130  # Ctrl-C while waiting; the job keeps running

POLL_SECONDS = 0.5
LOG_EVERY_SECONDS = 5.0
BAR_WIDTH = 20


class CliError(Exception):
    """Ends the command: `message` (if any) goes to stderr, the process exits with `code`."""

    def __init__(self, message: str = "", code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _plain(text: str) -> str:
    return text


# -- verbs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verb:
    """A `manage.py conveyor NAME ...` subcommand.

    `add_arguments(parser)` declares its arguments (`--user` and, with `json`, `--json`
    are added for it); `handle(command, user, options)` runs it, printing through
    `command.stdout` / `command.show(...)` and raising CliError for bad input.
    With `group`, it is `manage.py conveyor GROUP NAME ...` (e.g. `schedule add`):
    any app may add a verb to a group registered with `register_group`.
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    handle: Callable[[Any, Any, dict[str, Any]], None]
    json: bool = True
    group: str = ""

    @property
    def key(self) -> str:
        return f"{self.group} {self.name}" if self.group else self.name


VERBS: dict[str, Verb] = {}
GROUPS: dict[str, str] = {}  # group name -> its help line


def register_verb(verb: Verb) -> Verb:
    if verb.group:
        GROUPS.setdefault(verb.group, f"{verb.group.capitalize()} commands.")
    VERBS[verb.key] = verb
    return verb


def register_group(name: str, help: str) -> None:
    """A verb with subverbs (`schedule` → `schedule list`, `schedule add`, ...); its
    verbs may be registered before or after it."""
    GROUPS[name] = help


@contextlib.contextmanager
def quiet_queue_log() -> Iterator[None]:
    """Keep django-q2's "Enqueued ..." info lines off the CLI's stderr."""
    queue_log = logging.getLogger("django-q")
    level = queue_log.level
    queue_log.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        queue_log.setLevel(level)


# -- who and which job ---------------------------------------------------------------


def acting_user(username: str | None):
    """The user named by --user, else the first superuser (the CLI acts as them)."""
    User = get_user_model()
    if username:
        user = User.objects.filter(**{User.USERNAME_FIELD: username}).first()
        if user is None or not user.is_active:
            raise CliError(f"No active user named {username!r}.")
        return user
    user = User.objects.filter(is_superuser=True, is_active=True).order_by("pk").first()
    if user is None:
        raise CliError(
            "No superuser to act as: create one (manage.py createsuperuser) or pass --user NAME."
        )
    return user


def find_visible(rows: QuerySet, given: str | int, noun: str, user: Any) -> Any:
    """The row `given` (a number, or #number) among those `user` may see; anyone else's is
    "not found", like on the pages."""
    try:
        pk = int(str(given).strip().lstrip("#"))
    except ValueError:
        raise CliError(f"{given!r} is not a {noun.lower()} id (a number).") from None
    found = rows.filter(pk=pk).first()
    if found is None:
        raise CliError(f"{noun} #{pk} not found (acting as {user.get_username()}).")
    return found


def find_job(user, job_id: str | int) -> Job:
    return find_visible(Job.objects.visible_to(user), job_id, "Job", user)


def list_jobs(user, *, status: str | None, kind: str | None, limit: int) -> list[Job]:
    if status and status not in Job.Status.values:
        raise CliError(f"Unknown status {status!r}; one of: {', '.join(Job.Status.values)}.")
    if limit < 1:
        raise CliError("--limit must be at least 1.")
    jobs = selectors.filter_jobs(
        selectors.visible_jobs(user), statuses=[status] if status else [], kind=kind or ""
    )
    return list(jobs.order_by("-created_at", "-id")[:limit])


# -- actions ------------------------------------------------------------------------------


def apply_action(registry: Registry, name: str, obj: Any, user: Any, **given: Any) -> Any:
    """An entry of an action registry (`jobs.actions`), run as `user` with what else it
    takes (`given`: a resume's changes); one that does not apply, or is not theirs to
    apply, is bad input, and so are changes its kind refuses (each named as `--set NAME`,
    the flag that gave it)."""
    try:
        return registry.act(name, obj, user, **given)
    except JobActionError as exc:
        raise CliError(str(exc)) from None
    except InvalidChanges as exc:
        raise CliError(changes_message(exc.fields)) from None


def changes_message(fields: dict[str, str]) -> str:
    """Refused changes as one line, each named as the flag that gave it."""
    return (
        "; ".join(f"--set {name}: {message.rstrip('.')}" for name, message in fields.items()) + "."
    )


def state_line(job: Job) -> str:
    """The job's state after an action, with a request a worker has yet to act on."""
    if job.requested == Job.Request.FORCE:
        return (
            f"Job #{job.pk} is {job.status}; force stop requested "
            "(its worker is stopped and replaced within seconds)."
        )
    if job.requested:
        return (
            f"Job #{job.pk} is {job.status}; {job.requested} requested "
            "(its worker acts on it at the next checkpoint)."
        )
    return f"Job #{job.pk} is {job.status}."


def deduplicated(command: Any, options: dict[str, Any], job: Job, where: str) -> None:
    """THE rule of every verb that may find its work already done by an active job
    (`submit`, `schedule run-now`): nothing new was started, and the command says so.
    With --json: that job's JSON with `"deduplicated": true`, exit 0 (the API's answer).
    Otherwise: its id on stdout, "Job #N (kind) is already running on this sheet;
    nothing new started." on stderr, exit EXIT_DEDUPLICATED (3). Never waits."""
    if options.get("json"):
        command.print_json({**job_as_dict(job), "deduplicated": True})
        return
    command.stdout.write(str(job.pk))
    command.stderr.write(
        f"Job #{job.pk} ({job_kind_text(job)}) is already {job.status} {where}; "
        f"nothing new started (manage.py conveyor status {job.pk}).",
        style_func=_plain,
    )
    raise CliError("", EXIT_DEDUPLICATED)


def job_kind_text(job: Job) -> str:
    """The job's kind, and its label when it has one ("sheets.process: leads.csv · Clean")."""
    return f"{job.kind}: {job.label}" if job.label else job.kind


# -- showing jobs ---------------------------------------------------------------------------


def bar(percent: int | None, width: int = BAR_WIDTH) -> str:
    if percent is None:
        return "[" + "?" * width + "]"
    filled = percent * width // 100
    return "[" + "#" * filled + "." * (width - filled) + "]"


def counts(job: Job) -> str:
    of_total = f"/{job.total:,}" if job.total is not None else ""
    return f"{job.processed:,}{of_total} done, {job.failed:,} failed"


def percent_text(job: Job) -> str:
    return "  ?%" if job.percent is None else f"{job.percent:>3}%"


def progress_line(job: Job) -> str:
    line = f"Job #{job.pk} {job.status:<9} {bar(job.percent)} {percent_text(job)}  {counts(job)}"
    return f"{line} · {job.message}" if job.message else line


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    return f"{minutes // 60} h {minutes % 60} min"


def final_line(job: Job) -> str:
    if job.status == Job.Status.SUCCEEDED:
        return f"Job #{job.pk} succeeded: {counts(job)} in {duration(job.duration_seconds)}."
    if job.status == Job.Status.CANCELLED:
        return f"Job #{job.pk} was cancelled: {counts(job)}."
    error = job.error.strip().splitlines()[0] if job.error.strip() else "no error message"
    return f"Job #{job.pk} failed: {error} ({counts(job)})."


def _when(value: datetime | None) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S %Z") if value else "–"


def status_text(job: Job) -> str:
    """The human form of `status`: a few labelled lines."""
    requested = f" ({job.get_requested_display().lower()} requested)" if job.requested else ""
    lines = [
        f"Job #{job.pk}  {job.title}  [{job.kind}]",
        f"Status    {job.status}{requested}, priority {job.priority_label}",
        f"Progress  {bar(job.percent)} {percent_text(job)}  {counts(job)}",
    ]
    if job.rate:
        eta = f", about {duration(job.eta_seconds)} left" if job.eta_seconds is not None else ""
        lines.append(f"Rate      {job.rate:,.1f}/s{eta}")
    if job.message:
        lines.append(f"Message   {job.message}")
    if job.error:
        lines.append(f"Error     {job.error.strip().splitlines()[0]}")
    lines.append(
        f"Times     created {_when(job.created_at)}, started {_when(job.started_at)}, "
        f"finished {_when(job.finished_at)}"
    )
    return "\n".join(lines)


def jobs_table(jobs: list[Job]) -> str:
    if not jobs:
        return "No jobs."
    header = ("ID", "STATUS", "PRIORITY", "PROGRESS", "FAILED", "CREATED", "TITLE")
    rows = [
        (
            str(job.pk),
            job.status,
            job.priority_label,
            f"{percent_text(job).strip()} {job.processed:,}"
            + (f"/{job.total:,}" if job.total is not None else ""),
            f"{job.failed:,}",
            timezone.localtime(job.created_at).strftime("%Y-%m-%d %H:%M"),
            job.title[:60],
        )
        for job in jobs
    ]
    return text_table(header, rows)


def text_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """Rows under a header in columns as wide as their widest cell, two spaces apart."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


# -- waiting ------------------------------------------------------------------------------


class ProgressDisplay:
    """Progress lines on a stream: redrawn in place on a terminal; elsewhere (logs, pipes)
    a new line only when the status changes or every `log_every` seconds."""

    def __init__(self, stream: OutputWrapper, log_every: float = LOG_EVERY_SECONDS) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.log_every = log_every
        self.line = ""
        self.status = ""
        self.logged_at = float("-inf")

    def show(self, job: Job) -> None:
        line = progress_line(job)
        if line == self.line:
            return
        if self.tty:
            width = shutil.get_terminal_size().columns - 1
            self._write("\r" + line[:width] + "\x1b[K", ending="")
        elif job.status != self.status or time.monotonic() - self.logged_at >= self.log_every:
            self._write(line)
            self.logged_at = time.monotonic()
        else:
            return
        self.line, self.status = line, job.status

    def end(self, job: Job | None = None) -> None:
        """Leave the in-place line (drawn last with `job`'s state) for what follows."""
        if not self.tty or not self.line:
            return
        if job is not None:
            self.show(job)
        self._write("")

    def _write(self, text: str, ending: str = "\n") -> None:
        self.stream.write(text, style_func=_plain, ending=ending)
        self.stream.flush()


def wait_for_job(
    job: Job,
    stream: OutputWrapper,
    *,
    poll: float = POLL_SECONDS,
    log_every: float = LOG_EVERY_SECONDS,
) -> Job:
    """Poll the job's row every `poll` seconds until it finishes, drawing progress on
    `stream`, then write the final status line. Ctrl-C stops waiting, not the job."""
    display = ProgressDisplay(stream, log_every)
    try:
        while True:
            current = Job.objects.filter(pk=job.pk).first()
            if current is None:
                display.end()
                raise CliError(f"Job #{job.pk} was deleted.", EXIT_JOB_FAILED)
            job = current
            if job.is_terminal:
                break
            display.show(job)
            time.sleep(poll)
    except KeyboardInterrupt:
        display.end()
        stream.write(
            f"Stopped waiting; job #{job.pk} keeps running in the background "
            f"(manage.py conveyor status {job.pk}).",
            style_func=_plain,
        )
        raise CliError("", EXIT_INTERRUPTED) from None
    display.end(job)
    stream.write(final_line(job), style_func=_plain)
    return job
