"""The reads every front end shares: which jobs a user sees, the job-list filters, the
badge counts, a job's recent events, who may act on a job (or in another user's name)
and which priorities a user may choose.

Pages, the JSON API, the CLI and the live relay all read through these, so a filter
or a permission means the same everywhere.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Count, Prefetch, Q, QuerySet
from django.db.models.functions import Left

from jobs.engine.errors import JobActionError
from jobs.engine.kinds import searchable_params
from jobs.models import (
    Batch,
    Job,
    JobDependency,
    JobEvent,
    Notification,
    Priority,
    Schedule,
    Worker,
    parse_priority,
)

Status = Job.Status

# Names a user filters by (tabs, `?status=`): a group of statuses, or one status.
STATUS_GROUPS: dict[str, list[str]] = {
    "active": list(Job.ACTIVE),
    "running": [Status.RUNNING],
    "queued": [Status.QUEUED, Status.RETRYING],
    "paused": [Status.PAUSED],
    "succeeded": [Status.SUCCEEDED],
    "failed": [Status.FAILED],
    "cancelled": [Status.CANCELLED],
}
# Older names still accepted in `?status=` and the CLI; pages show the names above, the
# words of the job states (SPEC: succeeded, not "completed").
STATUS_ALIASES = {"completed": "succeeded"}


def status_group(name: str) -> str:
    """The filter name `name` stands for ("" when it is none)."""
    name = STATUS_ALIASES.get(name, name)
    return name if name in STATUS_GROUPS else ""


MAX_SEARCH = 200


def status_counts(jobs: QuerySet[Job]) -> dict[str, int]:
    """How many of `jobs` each filter tab holds ("" is all), from one grouped query."""
    rows = jobs.order_by().values("status").annotate(n=Count("id"))
    per_status = {row["status"]: row["n"] for row in rows}
    counts = {
        name: sum(per_status.get(s, 0) for s in group) for name, group in STATUS_GROUPS.items()
    }
    counts[""] = sum(per_status.values())
    return counts


# The jobs dashboard's sortable columns: the `sort` parameter (a leading "-" for
# descending) to the fields ordered by.
JOB_SORTS: dict[str, tuple[str, ...]] = {
    "created": ("created_at",),
    "status": ("status",),
    "kind": ("kind",),
    "progress": ("processed",),
    "priority": ("priority",),
    "title": ("label", "kind"),
}


def sort_key(
    asked: str, allowed: dict[str, tuple[str, ...]], default: str
) -> tuple[str, list[str]]:
    """The sort a list page shows: `asked` when it names a column of `allowed` (a leading
    "-" for descending), else `default`; with the fields to order by. A key that is not
    a column is ignored, never passed to the database."""
    name = asked if asked.removeprefix("-") in allowed else default
    descending = name.startswith("-")
    fields = allowed[name.removeprefix("-")]
    return name, [f"-{f}" if descending else f for f in fields]


def visible_jobs(user: Any) -> QuerySet[Job]:
    upstream = JobDependency.objects.select_related("depends_on").only(
        "job_id", "depends_on__id", "depends_on__status"
    )
    return (
        Job.objects.visible_to(user)
        .select_related("owner")
        .prefetch_related(Prefetch("upstream_links", queryset=upstream))
    )


def dependencies(user: Any, job: Job) -> dict[str, list[Job]]:
    """The jobs it waits for and the jobs waiting for it, those the user may see."""
    visible = Job.objects.visible_to(user)
    return {
        "upstream": list(visible.filter(downstream_links__job=job).order_by("pk")),
        "downstream": list(visible.filter(upstream_links__depends_on=job).order_by("pk")),
    }


def missing_jobs(user: Any, ids: list[int]) -> list[int]:
    """Those of `ids` the user may not see (or that do not exist)."""
    found = set(Job.objects.visible_to(user).filter(pk__in=ids).values_list("pk", flat=True))
    return [job_id for job_id in ids if job_id not in found]


def statuses_named(names: list[str]) -> list[str]:
    """The statuses behind filter names ("queued" is queued and retry-waiting); raises
    ValueError naming what is unknown."""
    found: list[str] = []
    unknown = []
    for name in names:
        name = STATUS_ALIASES.get(name, name)
        if name in STATUS_GROUPS:
            found += STATUS_GROUPS[name]
        elif name in Status.values:
            found.append(name)
        else:
            unknown.append(name)
    if unknown:
        known = sorted(set(STATUS_GROUPS) | set(Status.values))
        raise ValueError(f"unknown status {', '.join(unknown)}; use {', '.join(known)}")
    return list(dict.fromkeys(found))


def filter_jobs(
    jobs: QuerySet[Job],
    *,
    statuses: list[str] | None = None,
    kind: str = "",
    text: str = "",
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    keys_of: Any = None,
) -> QuerySet[Job]:
    """The job-list filters: status names, kind, text (label, kind, entity or session
    key, message, error, or #id, and `path=value` terms on the kinds' searchable params:
    `search_terms`), created in [created_after, created_before).

    `keys_of`: the user whose keys the text may match (a staff list of everyone's jobs
    matches other users' labels, never their keys); None for a list already narrowed to
    one owner."""
    if statuses:
        jobs = jobs.filter(status__in=statuses_named(statuses))
    if kind := kind.replace("\x00", ""):  # PostgreSQL refuses NUL characters
        jobs = jobs.filter(kind=kind)
    if created_after is not None:
        jobs = jobs.filter(created_at__gte=created_after)
    if created_before is not None:
        jobs = jobs.filter(created_at__lt=created_before)
    terms, text = search_terms(text.replace("\x00", "").strip()[:MAX_SEARCH])
    for path, value in terms:
        jobs = jobs.filter(param_match(path, value))
    if text:
        keys = Q(entity_key__icontains=text) | Q(session_key__icontains=text)
        if keys_of is not None:
            keys &= Q(owner=keys_of)
        match = (
            Q(label__icontains=text)
            | Q(kind__icontains=text)
            | keys
            | Q(message__icontains=text)
            | Q(error__icontains=text)
        )
        number = text.lstrip("#")
        if number.isdecimal() and len(number) < 19:
            match |= Q(pk=int(number))
        jobs = jobs.filter(match)
    return jobs


PARAM_TERM = re.compile(r"([A-Za-z_][\w.]*)=(.+)", re.DOTALL)


def search_terms(text: str) -> tuple[list[tuple[str, str]], str]:
    """A search's `path=value` terms (`processor=llm`, `options.model="gpt 4o"`) and
    the rest of its text; ValueError naming a path no kind lets users search by."""
    try:
        words = shlex.split(text)
    except ValueError:  # an unclosed quote: words as typed
        words = text.split()
    terms, rest = [], []
    for word in words:
        found = PARAM_TERM.fullmatch(word)
        (terms if found else rest).append((found[1], found[2]) if found else word)
    searchable = searchable_params()
    if unknown := [path for path, _ in terms if path not in searchable]:
        offered = ", ".join(sorted(searchable)) or "none"
        raise ValueError(f"jobs cannot be searched by {', '.join(unknown)}; by: {offered}")
    return terms, " ".join(rest) if terms else text


def param_match(path: str, value: str) -> Q:
    """Jobs of the kinds declaring `path` whose param at it equals `value` (as text, or
    as the number or yes/no it spells: params hold ids as numbers, flags as booleans)."""
    lookup = "params__" + "__".join(path.split("."))
    match = Q(**{lookup: value})
    if re.fullmatch(r"-?\d{1,18}", value):
        match |= Q(**{lookup: int(value)})
    if value.lower() in ("true", "false"):
        match |= Q(**{lookup: value.lower() == "true"})
    return match & Q(kind__in=searchable_params()[path])


def owned_by(jobs: QuerySet[Job], username: str) -> QuerySet[Job]:
    """Narrow to one owner's jobs by username ("": no narrowing)."""
    if not username:
        return jobs
    return jobs.filter(**{f"owner__{get_user_model().USERNAME_FIELD}": username})


KEY_FIELDS = ("entity_key", "session_key")


def with_key(jobs: QuerySet[Job], field: str, key: str, *, prefix: bool = False) -> QuerySet[Job]:
    """`jobs` whose entity or session key (`field`) is `key`, or starts with it. Keys
    are compared exactly on every database: SQLite's LIKE (Django's `startswith` there)
    ignores ASCII case, so the prefix is checked again by equality."""
    if field not in KEY_FIELDS:
        raise ValueError(f"not a key field: {field}")
    if not prefix:
        return jobs.filter(**{field: key})
    head = f"{field}_head"
    return (
        jobs.filter(**{f"{field}__startswith": key})
        .alias(**{head: Left(field, len(key))})
        .filter(**{head: key})
    )


def keyed_jobs(user: Any, owner: str = "") -> QuerySet[Job]:
    """The jobs a lookup by key searches: keys belong to a user, so the user's own;
    staff look among someone else's with `owner` (a username)."""
    jobs = visible_jobs(user)
    return owned_by(jobs, owner) if owner else jobs.filter(owner=user)


def job_with_key(user: Any, field: str, key: str, *, kind: str = "", owner: str = "") -> Job | None:
    """The user's active job with this entity or session key, else their latest one.

    Keys belong to a user; staff look up someone else's with `owner`.
    """
    jobs = with_key(keyed_jobs(user, owner), field, key)
    if kind:
        jobs = jobs.filter(kind=kind)
    return jobs.active().first() or jobs.first()


def jobs_with_key_prefix(
    user: Any, field: str, prefix: str, *, kind: str = "", owner: str = ""
) -> QuerySet[Job]:
    """The user's jobs whose entity or session key starts with `prefix`
    (`grading-assign7-`), newest first; staff look among someone else's with `owner`."""
    jobs = with_key(keyed_jobs(user, owner), field, prefix, prefix=True)
    if kind:
        jobs = jobs.filter(kind=kind)
    return jobs.order_by("-created_at", "-id")


def notifications_with_keys(user: Any, keys: dict[str, tuple[str, bool]]) -> QuerySet[Notification]:
    """The user's notifications about jobs of theirs with these keys: `keys` maps
    "entity_key" / "session_key" to (key, is_prefix). A batch's one notification counts
    for each of its jobs. Another user's jobs never match, whatever their keys."""
    mine = Notification.objects.filter(user=user)
    if not keys:
        return mine
    jobs = Job.objects.filter(owner=user)
    for field, (key, prefix) in keys.items():
        jobs = with_key(jobs, field, key, prefix=prefix)
    batches = jobs.filter(batch__isnull=False).values("batch_id")
    return mine.filter(Q(job__in=jobs.values("pk")) | Q(batch__in=batches))


def running_count(user_id: int) -> int:
    """What the navigation badge counts: the user's running jobs."""
    return Job.objects.filter(owner_id=user_id, status=Status.RUNNING).count()


WAITING_FOR_WORKERS = (Status.QUEUED, Status.RUNNING, Status.RETRYING)


def workers_alive() -> bool:
    """Some worker beat recently: the same test as /healthz."""
    return Worker.objects.alive().exists()


def waiting_without_workers(user_id: int) -> bool:
    """The user has jobs to run (queued, running, retrying) and no worker is alive to run
    them. Pages say so instead of showing a frozen ETA."""
    jobs = Job.objects.filter(owner_id=user_id, status__in=WAITING_FOR_WORKERS)
    return jobs.exists() and not workers_alive()


def owners_of_waiting_jobs() -> list[int]:
    """Users whose jobs need a worker: told when the workers stop or come back."""
    jobs = Job.objects.filter(status__in=WAITING_FOR_WORKERS, owner__isnull=False)
    return sorted(set(jobs.values_list("owner_id", flat=True)))


def unread_count(user_id: int) -> int:
    return Notification.objects.filter(user_id=user_id, read_at__isnull=True).count()


def recent_events(job: Job, limit: int = 50) -> list[JobEvent]:
    """The newest `limit` events of a job, oldest first."""
    events = list(job.events.order_by("-id")[:limit])
    events.reverse()
    return events


def last_state_message(job: Job) -> str:
    """What the job's latest change of state said: why it is as it is ("Paused:
    Budget reached: …", "Paused by alice", "Resumed by bob: budget_usd set to 5")."""
    event = job.events.filter(kind=JobEvent.Kind.STATE).order_by("-id").first()
    return event.message if event is not None else ""


def may_act_for(user: Any, owner_id: int | None, permission: str, model: str = "job") -> bool:
    """THE rule for acting on someone's work, on every front end: a user acts on what is
    their own; on another user's (or nobody's) it takes the model permission
    `jobs.<permission>_<model>`, for staff too. Starting work in another user's name or
    on their sheet is `add` (jobs.add_job); changing their job `change`, deleting it
    `delete`; their schedules the same with `schedule`."""
    if owner_id is not None and owner_id == getattr(user, "pk", None):
        return True
    return bool(user.has_perm(f"jobs.{permission}_{model}"))


def may_submit_for(user: Any, owner_id: int | None) -> bool:
    """Whether `user` may start a job in the name of (or on the work of) `owner_id`."""
    return may_act_for(user, owner_id, "add")


MAX_PRIORITY = 2**31 - 1  # the priority column's range


def priority_for(user: Any, value: Any) -> int:
    """The priority `value` (high, normal, low or an integer) if `user` may choose it:
    high, normal and low for everyone; any integer in the column's range for staff, who
    may jump the queue. The one rule of the pages, the API and the CLI (for the user it
    acts as); raises ValueError saying what to choose instead."""
    try:
        priority = parse_priority(value)
    except (ValueError, TypeError):
        raise ValueError("must be high, normal, low or an integer") from None
    if not getattr(user, "is_staff", False) and priority not in Priority.values:
        raise ValueError("must be high, normal or low (other values are for staff)")
    if abs(priority) > MAX_PRIORITY:
        raise ValueError(f"must be between {-MAX_PRIORITY} and {MAX_PRIORITY}")
    return priority


def visible_schedules(user: Any) -> QuerySet[Schedule]:
    """The user's schedules (staff: all), with their owner and last run."""
    return Schedule.objects.visible_to(user).select_related("owner", "last_job")


def may_act_on_schedule(user: Any, schedule: Schedule, permission: str = "change") -> bool:
    """`may_act_for` on a schedule: the owner may, others need the model permission
    (`change`, or `delete` to delete)."""
    return may_act_for(user, schedule.owner_id, permission, "schedule")


def check_may_act_on_schedule(user: Any, schedule: Schedule, permission: str = "change") -> None:
    if not may_act_on_schedule(user, schedule, permission):
        raise JobActionError(
            f"Schedule #{schedule.pk} belongs to another user; you may not change it."
        )


def visible_batches(user: Any) -> QuerySet[Batch]:
    """The user's batches (staff: all), with their owner."""
    return Batch.objects.visible_to(user).select_related("owner")


@dataclass(frozen=True)
class BatchProgress:
    """A batch's one progress: its jobs, how many are in each status, and a percentage
    (the mean of its jobs' progress, a job that ended counting as whole)."""

    batch: Batch
    jobs: list[Job]
    counts: dict[str, int]
    percent: int

    @property
    def ended(self) -> int:
        return sum(self.counts.get(status, 0) for status in Job.TERMINAL)

    @property
    def status(self) -> str:
        """active while a job is; else succeeded when all did, else finished."""
        if self.ended < len(self.jobs):
            return "active"
        return "succeeded" if self.counts.get(Status.SUCCEEDED) == len(self.jobs) else "finished"


def batch_progress(batch: Batch) -> BatchProgress:
    """One query: the batch's jobs (owner prefetched) and what they add up to."""
    jobs = list(batch.jobs.select_related("owner").order_by("pk"))
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.status] = counts.get(job.status, 0) + 1
    shares = [100 if job.is_terminal else (job.percent or 0) for job in jobs]
    percent = int(sum(shares) / len(shares)) if shares else 0
    return BatchProgress(batch, jobs, counts, percent)
