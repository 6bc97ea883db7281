"""django-q2 task functions for the baselines: what plain django-q2 does with no Conveyor,
and the no-op Django task (`django_noop`) that Conveyor's Tasks backend runs against them.

Workers import these by dotted path (`bench.tasks.noop`); the repository root is on their
`sys.path` because `manage.py qcluster` runs from it.
"""

from __future__ import annotations

from django_q.brokers import Broker, get_broker
from django_q.tasks import async_task

from jobs.tasks_compat import task

_broker: Broker | None = None


def shared_broker() -> Broker:
    """One broker per process, as Conveyor's dispatch keeps (a fair baseline on Redis)."""
    global _broker
    if _broker is None:
        _broker = get_broker()
    return _broker


def noop(*args: object) -> None:
    """A task that does nothing: what is left is django-q2's own cost per task."""


@task
def django_noop(*args: object) -> None:
    """The same no-op as a Django task: run as a Conveyor job by jobs.tasks_backend."""


def relay(remaining: int, prefix: str) -> int:
    """Enqueue the next task of a chain, as a Conveyor slice enqueues the job's next slice.

    Task names are `<prefix>-<remaining>`, so the chain's end is the task `<prefix>-0`.
    """
    if remaining > 0:
        async_task(
            "bench.tasks.relay",
            remaining - 1,
            prefix,
            broker=shared_broker(),
            task_name=f"{prefix}-{remaining - 1}",
        )
    return remaining


def naive_row(job_id: int, sheet_id: int, number: int) -> None:
    """One spreadsheet row as a task of its own, as django-q2 alone invites: read the
    row, run the no-op `copy` processor on it, insert its result."""
    from sheets.models import RowResult, Sheet, SheetRow
    from sheets.processors import get_processor

    sheet = Sheet.objects.get(pk=sheet_id)
    values = SheetRow.objects.get(sheet=sheet, number=number).values
    outputs = get_processor("copy").fn(dict(zip(sheet.columns, values, strict=False)), {})
    RowResult.objects.create(job_id=job_id, sheet=sheet, row_number=number, outputs=outputs)
