"""The actions on a batch: each job action (`jobs.actions.jobs.JOBS`) applied to every
job of the batch it applies to, each job in its own transaction and checked on its own
(the user's own jobs, or the model permission), as from the jobs page's bulk form.
`BATCHES` is what the batch page, the API (`POST /api/batches/<id>/<name>/`), the
admin's batch list and `conveyor batch ...` offer; a job action is a batch action."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobs.actions.base import Action, Registry
from jobs.actions.jobs import JOBS
from jobs.engine.errors import JobActionError, UnknownKind
from jobs.models import Batch, Job


@dataclass(frozen=True)
class Outcome:
    """How many jobs of the batch changed and, for each that did not, why."""

    changed: int
    skipped: list[str]

    def lines(self, done: str) -> list[str]:
        """'3 jobs cancelled.', '2 skipped: Job #4 is succeeded; ...'."""
        said = [f"{self.changed} job{'s' if self.changed != 1 else ''} {done}."]
        if self.skipped:
            said.append(f"{len(self.skipped)} skipped: " + " ".join(self.skipped[:5]))
        return said


def each_job(jobs: Any, name: str, user: Any) -> Outcome:
    """Apply the job action `name` to each of `jobs` that it applies to, as `user`."""
    action = JOBS[name]
    changed, skipped = 0, []
    for job in jobs:
        if not action.applies(job):
            skipped.append(action.why_not(job))
            continue
        try:
            JOBS.act(name, job, user)
            changed += 1
        except (JobActionError, UnknownKind) as exc:
            skipped.append(str(exc))
    return Outcome(changed, skipped)


def _on_each_job(job_action: Action[Job]) -> Action[Batch]:
    def run(batch: Batch, *, by: Any) -> Outcome:
        return each_job(batch.jobs.order_by("pk"), job_action.name, by)

    return Action(
        name=job_action.name,
        label=job_action.label,
        help=f"{job_action.label}: every job of a batch it applies to.",
        run=run,
        done=job_action.done,
        message=lambda batch, outcome: " ".join(outcome.lines(job_action.done)),
        permission=job_action.permission,
        danger=job_action.danger,
    )


BATCHES: Registry[Batch] = Registry(
    model="batch",
    refusal=lambda batch, action: "",
    entries=tuple(_on_each_job(action) for action in JOBS.values()),
    rule=lambda user, batch, action: True,  # each job is checked on its own
)
