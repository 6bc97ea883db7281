"""A sheet's chain of steps (clean -> llm on the cleaned column -> ...): jobs on one
sheet linked by `after`, shown on the sheet's page as one progress ("Step 2 of 3: llm
40 %"). Reads only; the steps are submitted by `sheets.services.sheet_chain_submit`.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q, QuerySet

from jobs.models import Job, JobDependency
from sheets.models import Sheet
from sheets.names import KIND, entity_key

MAX_STEPS = 10  # how far a chain is followed (a page shows its own steps, not a graph)


def sheet_jobs(sheet: Sheet) -> QuerySet[Job]:
    """The sheet's processing jobs: its own, and the later steps of its chains (whose
    entity key is the sheet's plus `:after:<ids>`)."""
    key = entity_key(sheet)
    return Job.objects.filter(kind=KIND, owner=sheet.owner_id).filter(
        Q(entity_key=key) | Q(entity_key__startswith=f"{key}:after:")
    )


def _neighbour(job: Job, upstream: bool) -> Job | None:
    """The one step before (or after) this one on the same sheet, if there is exactly one."""
    if upstream:
        ids = JobDependency.objects.filter(job=job).values_list("depends_on_id", flat=True)
    else:
        ids = JobDependency.objects.filter(depends_on=job).values_list("job_id", flat=True)
    found = list(Job.objects.filter(pk__in=ids, kind=KIND)[:2])
    if len(found) != 1:
        return None
    same_sheet = found[0].params.get("sheet_id") == job.params.get("sheet_id")
    return found[0] if same_sheet else None


def chain_of(job: Job) -> list[Job]:
    """The steps of the job's chain in order (just [job] when it is not in one)."""
    steps = [job]
    while len(steps) < MAX_STEPS and (before := _neighbour(steps[0], upstream=True)):
        steps.insert(0, before)
    while len(steps) < MAX_STEPS and (after := _neighbour(steps[-1], upstream=False)):
        steps.append(after)
    return steps


@dataclass(frozen=True)
class ChainProgress:
    steps: list[Job]
    current: Job  # the first step that has not succeeded (else the last)

    @property
    def number(self) -> int:
        return self.steps.index(self.current) + 1

    @property
    def percent(self) -> int:
        """The chain as one: each step an equal share, the current one by its progress."""
        done = self.number - 1 + (self.current.percent or 0) / 100
        return int(100 * done / len(self.steps))


def chain_progress(job: Job) -> ChainProgress | None:
    """The progress of the job's chain; None for a job that is not a chain's step."""
    if not job.has_dependents and ":after:" not in job.entity_key:
        return None  # neither waited for nor waiting (a later step's key says `after`)
    steps = chain_of(job)
    if len(steps) < 2:
        return None
    current = next((step for step in steps if step.status != Job.Status.SUCCEEDED), steps[-1])
    return ChainProgress(steps, current)


@dataclass(frozen=True)
class LatestStep:
    """What a list shows of a sheet's latest work: the job its page follows (the latest,
    or its chain's current step) and, in a chain, which step that is."""

    job: Job
    number: int = 1
    of: int = 1


LIST_FIELDS = ("id", "kind", "owner", "entity_key", "status", "processed", "total", "created_at")


def latest_steps(sheets: list[Sheet]) -> dict[int, LatestStep]:
    """The latest step of each sheet, in one query for all of them: a later step's key
    names the step before it (`sheet:N:after:M`), so chains are followed in memory."""
    keys = {entity_key(sheet): sheet.pk for sheet in sheets}
    if not keys:
        return {}
    match = Q(entity_key__in=keys)
    for key in keys:
        match |= Q(entity_key__startswith=f"{key}:after:")
    owners = {sheet.owner_id for sheet in sheets}
    jobs = Job.objects.filter(kind=KIND, owner__in=owners).filter(match).only(*LIST_FIELDS)
    known: dict[int, dict[int, Job]] = {}
    latest: dict[int, Job] = {}
    for job in jobs.order_by("created_at", "id"):
        sheet_id = keys[job.entity_key.partition(":after:")[0]]
        known.setdefault(sheet_id, {})[job.pk] = job
        latest[sheet_id] = job
    return {sheet_id: _step_of(job, known[sheet_id]) for sheet_id, job in latest.items()}


def _step_of(last: Job, known: dict[int, Job]) -> LatestStep:
    steps = [last]
    while len(steps) < MAX_STEPS and (before := _step_before(steps[0], known)):
        steps.insert(0, before)
    current = next((step for step in steps if step.status != Job.Status.SUCCEEDED), steps[-1])
    return LatestStep(current, steps.index(current) + 1, len(steps))


def _step_before(job: Job, known: dict[int, Job]) -> Job | None:
    _, after, ids = job.entity_key.partition(":after:")
    return known.get(int(ids)) if after and ids.isdigit() else None


def with_new_results(sheets: list[Sheet]) -> set[int]:
    """Ids of those sheets with results that came in since their owner last opened them
    (`seen_at`; never opened: since the import): a job of theirs (a chain's steps too)
    that ended after that, having processed rows. One query for all of them."""
    seen = {sheet.pk: sheet.seen_at or sheet.created_at for sheet in sheets}
    keys = {entity_key(sheet): sheet.pk for sheet in sheets}
    if not keys:
        return set()
    match = Q(entity_key__in=keys)
    for key in keys:
        match |= Q(entity_key__startswith=f"{key}:after:")
    ended = Job.objects.filter(
        kind=KIND,
        owner__in={sheet.owner_id for sheet in sheets},
        status__in=Job.TERMINAL,
        processed__gt=0,
        finished_at__gt=min(seen.values()),
    ).filter(match)
    new: set[int] = set()
    for key, finished_at in ended.values_list("entity_key", "finished_at"):
        sheet_id = keys.get(key.partition(":after:")[0])
        if sheet_id is not None and finished_at > seen[sheet_id]:
            new.add(sheet_id)
    return new
