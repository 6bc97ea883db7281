"""The actions on one job: pause, resume, cancel, force stop, run now, retry, retry
failed rows, delete. Each runs through `jobs.engine.services`; `JOBS` is what the job pages, the API
(`POST /api/jobs/<id>/<name>/`), the admin's job list and the CLI offer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.utils import timezone

from jobs.actions.base import Action, Option, Registry, plural, through
from jobs.engine import services
from jobs.engine.errors import InvalidChanges
from jobs.extensions import extension_for
from jobs.models import Job

Status = Job.Status


def _needs(rule: str) -> Callable[[Job], str]:
    """Why an action does not apply: the service's words, "Job #4 is queued; <rule>."."""
    return lambda job: f"Job #{job.pk} is {job.status}; {rule}."


def _stopped(status: str, done: str, pending: str) -> Callable[[list[Job]], list[str]]:
    """The admin's report of a stop: '2 jobs cancelled, 1 job asked to stop at the next
    checkpoint' (those a worker holds change when it acts on the request)."""

    def report(changed: list[Job]) -> list[str]:
        now = sum(1 for job in changed if job.status == status)
        lines = [f"{plural(now, 'job')} {done}"]
        if len(changed) > now:
            lines.append(f"{plural(len(changed) - now, 'job')} {pending}")
        return lines

    return report


def _no_failed_rows(job: Job) -> str:
    if job.is_terminal:
        return services.no_failed_rows(job)
    return _needs("only finished jobs can be retried")(job)


def resume(job: Job, *, by: Any, changes: dict[str, Any] | None = None) -> Job:
    """Resume a paused job; with `changes` (what its kind lets a resume change, such as
    a sheet job's budget) the job goes on with the params its kind makes of them."""
    params, note = None, ""
    if changes:
        make = extension_for(job.kind).resume_with
        if make is None:
            raise InvalidChanges(dict.fromkeys(changes, "this job's resume changes nothing"))
        params, note = make(job, changes)
    return services.job_resume(job=job, by=by, params=params, note=note)


def waits_for_its_time(job: Job) -> bool:
    """Scheduled for later (`run_after`) or waiting out a retry's backoff."""
    waiting = job.status in (Status.QUEUED, Status.RETRYING)
    return waiting and job.run_after is not None and job.run_after > timezone.now()


def _refusal(job: Job, action: Action[Job]) -> str:
    return f"Job #{job.pk} belongs to another user; you may not {action.name} it."


RETRIED = "queued to retry failed rows (and any rows never processed)"

JOBS: Registry[Job] = Registry(
    model="job",
    refusal=_refusal,
    entries=(
        Action(
            name="pause",
            label="Pause",
            help="Pause a job.",
            applies=lambda job: job.is_active and job.status != Status.PAUSED,
            why_not=_needs("only active jobs can be paused"),
            run=through(services.job_pause, "job"),
            done="paused",
            report=_stopped(Status.PAUSED, "paused", "asked to pause at the next checkpoint"),
        ),
        Action(
            name="resume",
            label="Resume",
            help="Resume a paused job.",
            applies=lambda job: job.status == Status.PAUSED or job.requested == Job.Request.PAUSE,
            why_not=_needs("only paused jobs can be resumed"),
            run=resume,
            done="resumed",
        ),
        Action(
            name="cancel",
            label="Cancel",
            help="Cancel a job (--force: stop its worker now).",
            applies=lambda job: job.is_active,
            why_not=_needs("there is nothing to cancel"),
            run=through(services.job_cancel, "job"),
            done="cancelled",
            report=_stopped(Status.CANCELLED, "cancelled", "asked to stop at the next checkpoint"),
            options=(
                Option(
                    "force",
                    "force-stop",
                    "Stop the worker running it at once (for a job that reaches no checkpoint).",
                ),
            ),
            danger=True,
        ),
        Action(
            name="force-stop",
            label="Force stop",
            description="Force stop selected running jobs (their workers are replaced)",
            help="Stop the worker running a job at once.",
            applies=lambda job: job.status == Status.RUNNING,
            why_not=_needs("only a running job's worker can be stopped"),
            run=through(services.job_cancel, "job", force=True),
            done="force-stopped",
            report=_stopped(Status.CANCELLED, "cancelled", "force-stopped within seconds"),
            danger=True,
            on_cli=False,  # `cancel --force`
        ),
        Action(
            name="run-now",
            label="Run now",
            description="Run selected waiting jobs now (scheduled, or waiting to retry)",
            help="Run a job now that waits for its time or for a retry.",
            applies=waits_for_its_time,
            why_not=_needs("only a job waiting for its time can run now"),
            run=through(services.job_run_now, "job"),
            done="due now",
        ),
        Action(
            name="retry",
            label="Retry",
            description="Retry selected jobs (whole job)",
            help="Run a finished job again.",
            applies=lambda job: job.is_terminal,
            why_not=_needs("only finished jobs can be retried"),
            run=through(services.job_retry, "job"),
            done="queued again",
            options=(
                Option(
                    "failed_rows",
                    "retry-failed",
                    "Redo the failed rows (and process any rows the job never reached).",
                ),
            ),
        ),
        Action(
            name="retry-failed",
            label="Retry failed rows",
            description="Retry the failed rows (and rows never processed) of selected jobs",
            help="Redo a finished job's failed rows (and any rows it never reached).",
            applies=lambda job: job.is_terminal and bool(job.failed),
            why_not=_no_failed_rows,
            run=through(services.job_retry, "job", failed_rows=True),
            done=RETRIED,
            admin_name="retry_failed_rows",
            on_cli=False,  # `retry --failed-rows`
            tells_plan=True,
        ),
        Action(
            name="delete",
            label="Delete",
            description="Delete selected finished jobs (with their results)",
            help="Delete a finished job with its results.",
            applies=lambda job: job.is_terminal,
            why_not=_needs("cancel it before deleting"),
            run=through(services.job_delete, "job"),
            done="deleted",
            permission="delete",
            danger=True,
        ),
    ),
)
