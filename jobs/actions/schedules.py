"""The actions on one schedule: pause, resume, run now, delete, through
`jobs.schedules.services`; `SCHEDULES` is what the Schedules page, the API
(`POST /api/schedules/<id>/<name>/`), the admin and `conveyor schedule ...` offer."""

from __future__ import annotations

from typing import Any

from jobs.actions.base import Action, Registry, plural
from jobs.models import Job, Schedule
from jobs.schedules import services


def _pause(schedule: Schedule, *, by: Any) -> Schedule:
    return services.schedule_pause(schedule=schedule, by=by)


def _resume(schedule: Schedule, *, by: Any) -> Schedule:
    return services.schedule_resume(schedule=schedule, by=by)


def _run_now(schedule: Schedule, *, by: Any) -> Job:
    return services.schedule_run_now(schedule=schedule, by=by)


def _delete(schedule: Schedule, *, by: Any) -> None:
    services.schedule_delete(schedule=schedule, by=by)


def _done(changed: list[Schedule]) -> list[str]:
    """The admin says "done" whatever the action."""
    return [f"{plural(len(changed), 'schedule')} done"]


def _refusal(schedule: Schedule, action: Action[Schedule]) -> str:
    return f"Schedule #{schedule.pk} belongs to another user; you may not change it."


SCHEDULES: Registry[Schedule] = Registry(
    model="schedule",
    refusal=_refusal,
    entries=(
        Action(
            name="pause",
            label="Pause",
            description="Pause selected schedules",
            help="Pause a schedule.",
            applies=lambda schedule: schedule.enabled,
            why_not=lambda schedule: f"Schedule #{schedule.pk} is already paused.",
            run=_pause,
            done="paused",
            report=_done,
        ),
        Action(
            name="resume",
            label="Resume",
            description="Resume selected schedules",
            help="Resume a paused schedule.",
            applies=lambda schedule: not schedule.enabled,
            why_not=lambda schedule: f"Schedule #{schedule.pk} is not paused.",
            run=_resume,
            done="resumed",
            report=_done,
        ),
        Action(
            name="run-now",
            label="Run now",
            description="Run selected schedules now",
            help="Start a run now; prints the job id.",
            applies=lambda schedule: True,
            why_not=lambda schedule: "",
            run=_run_now,
            done="started",
            message=lambda schedule, job: f"Schedule #{schedule.pk}: job #{job.pk} started.",
            report=_done,
            admin_name="run_schedules_now",
        ),
        Action(
            name="delete",
            label="Delete",
            description="Delete selected schedules (their jobs stay)",
            help="Delete a schedule (its jobs stay).",
            applies=lambda schedule: True,
            why_not=lambda schedule: "",
            run=_delete,
            done="deleted; its jobs stay",
            report=_done,
            permission="delete",
            admin_name="delete_selected",  # in place of Django's, whose confirmation it keeps
            danger=True,
        ),
    ),
)
