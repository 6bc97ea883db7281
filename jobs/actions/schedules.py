"""The actions on one schedule: pause, resume, run now, delete, through
`jobs.schedules.services`; `SCHEDULES` is what the Schedules page, the API
(`POST /api/schedules/<id>/<name>/`), the admin and `conveyor schedule ...` offer."""

from __future__ import annotations

from jobs.actions.base import Action, Registry, through
from jobs.models import Schedule
from jobs.schedules import services


def _refusal(schedule: Schedule, action: Action[Schedule]) -> str:
    return f"Schedule #{schedule.pk} belongs to another user; you may not change it."


SCHEDULES: Registry[Schedule] = Registry(
    model="schedule",
    refusal=_refusal,
    counted_as="done",
    entries=(
        Action(
            name="pause",
            label="Pause",
            help="Pause a schedule.",
            applies=lambda schedule: schedule.enabled,
            why_not=lambda schedule: f"Schedule #{schedule.pk} is already paused.",
            run=through(services.schedule_pause, "schedule"),
            done="paused",
        ),
        Action(
            name="resume",
            label="Resume",
            help="Resume a paused schedule.",
            applies=lambda schedule: not schedule.enabled,
            why_not=lambda schedule: f"Schedule #{schedule.pk} is not paused.",
            run=through(services.schedule_resume, "schedule"),
            done="resumed",
        ),
        Action(
            name="run-now",
            label="Run now",
            description="Run selected schedules now",
            help="Start a run now; prints the job id.",
            run=through(services.schedule_run_now, "schedule"),
            done="started",
            message=lambda schedule, job: f"Schedule #{schedule.pk}: job #{job.pk} started.",
            admin_name="run_schedules_now",
        ),
        Action(
            name="delete",
            label="Delete",
            description="Delete selected schedules (their jobs stay)",
            help="Delete a schedule (its jobs stay).",
            run=through(services.schedule_delete, "schedule"),
            done="deleted; its jobs stay",
            permission="delete",
            admin_name="delete_selected",  # in place of Django's, whose confirmation it keeps
            danger=True,
            confirm="Delete this schedule? Its jobs stay.",
        ),
    ),
)
