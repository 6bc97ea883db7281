"""Operational figures for the staff metrics page, computed from the jobs tables.

Everything comes from timestamps already stored, with a handful of aggregate queries
per call (no per-job query, no extra table), bucketed per minute over the last hour or
per 15 minutes over the last day. Rates are per minute in both windows. How each
series is measured (and where it is an approximation) is in METHODS, which the page
shows under its charts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.apps import apps
from django.db.models import Case, Count, DateTimeField, F, Q, QuerySet, Value, When
from django.db.models.functions import Coalesce, TruncHour, TruncMinute
from django.utils import timezone

from jobs.extensions import unit_tables
from jobs.history import stats
from jobs.models import Job, KindStat, Worker

Status = Job.Status

# window name -> (span, bucket size), both in seconds. The hour and the day are read
# from the jobs tables; the week and the month from the history (jobs/history/).
WINDOWS = {
    "hour": (3600, 60),
    "day": (86400, 900),
    "week": (7 * 86400, 3600),
    "month": (30 * 86400, 86400),
}
FROM_HISTORY = {"week": KindStat.Period.HOUR, "month": KindStat.Period.DAY}

METHODS = {
    "jobs": "Jobs submitted (created) and jobs finished, by outcome, per minute.",
    "rows": (
        "Units stored per minute, from the unit tables the kinds register (a sheet row's "
        "result counts when it is stored; a row redone by a failed-rows retry counts again)."
    ),
    "failure_rate": (
        "Failed jobs among jobs that finished as succeeded or failed, and failed rows "
        "among rows stored, in each interval."
    ),
    "queue": (
        "Jobs created but not yet started at the end of each interval (reconstructed from "
        "creation and first-start times: a job waiting again after a pause or retry is "
        "not counted there; 'queued now' counts it)."
    ),
    "wait": "Time from creation to first start of the jobs that started in each interval.",
    "running": (
        "Jobs of each kind that ran at some time during each interval (first start to "
        "finish, or to the last heartbeat of a job that stopped without finishing)."
    ),
    "workers": "Worker processes whose heartbeat is fresh, sampled while the page is open.",
    "history": (
        "Over a week or a month, jobs, rows, failure rates and waits come from the history: "
        "each job counted when it finished (its rows with it), kept 30 days "
        "(CONVEYOR_HISTORY_DAYS); waits show their average and 95th percentile."
    ),
    "performance": (
        "Per kind, over the window: jobs finished per minute, failure rate (failed among "
        "succeeded + failed), running time and wait before the first start (50th and 95th "
        "percentiles, from histograms: as fine as their buckets), rows, LLM tokens and cost; "
        "from the history, where a job counts within a minute or so of ending."
    ),
}


@dataclass(frozen=True)
class Buckets:
    """`count` consecutive intervals of `size` seconds, the last one containing `now`."""

    first: int  # epoch seconds of the first bucket's start
    size: int
    count: int
    now: datetime

    @classmethod
    def for_window(cls, window: str, now: datetime | None = None) -> Buckets:
        span, size = WINDOWS[window]
        now = now or timezone.now()
        epoch = int(now.timestamp())
        last = epoch - epoch % size
        count = span // size
        return cls(first=last - (count - 1) * size, size=size, count=count, now=now)

    @property
    def start(self) -> datetime:
        return datetime.fromtimestamp(self.first, tz=UTC)

    @property
    def times(self) -> list[int]:
        return [self.first + i * self.size for i in range(self.count)]

    def bounds(self, i: int) -> tuple[datetime, datetime]:
        """Start and end (capped at now) of bucket i."""
        start = datetime.fromtimestamp(self.first + i * self.size, tz=UTC)
        return start, min(start + timedelta(seconds=self.size), self.now)

    def index(self, when: datetime) -> int | None:
        i = (int(when.timestamp()) - self.first) // self.size
        return i if 0 <= i < self.count else None

    def per_minute(self, counts: list[int]) -> list[float]:
        minutes = self.size / 60
        return [round(n / minutes, 2) for n in counts]


def _per_bucket(
    queryset: QuerySet, field: str, buckets: Buckets, group: str | None = None
) -> dict[Any, list[int]]:
    """Counts of rows per bucket by `field`, grouped by `group` (one query).

    Grouped per minute in the database (TruncMinute works on SQLite and PostgreSQL),
    folded into the buckets here: at most 1,440 minute groups per series.
    """
    names = ["minute", group] if group else ["minute"]
    truncate = TruncMinute if buckets.size < 3600 else TruncHour  # a week: 168 groups, not 10k
    rows = (
        queryset.filter(**{f"{field}__gte": buckets.start, f"{field}__lte": buckets.now})
        .annotate(minute=truncate(field))
        .order_by()
        .values(*names)
        .annotate(n=Count("pk"))
    )
    series: dict[Any, list[int]] = {}
    for row in rows:
        i = buckets.index(row["minute"])
        if i is not None:
            key = row[group] if group else None
            series.setdefault(key, [0] * buckets.count)[i] += row["n"]
    return series


def _rate(part: list[int], whole: list[int]) -> list[float | None]:
    return [round(100 * p / w, 1) if w else None for p, w in zip(part, whole, strict=True)]


def job_series(buckets: Buckets) -> dict[str, list]:
    zero = [0] * buckets.count
    created = _per_bucket(Job.objects.all(), "created_at", buckets).get(None, zero)
    finished = _per_bucket(
        Job.objects.filter(status__in=Job.TERMINAL), "finished_at", buckets, group="status"
    )
    succeeded = finished.get(Status.SUCCEEDED, zero)
    failed = finished.get(Status.FAILED, zero)
    cancelled = finished.get(Status.CANCELLED, zero)
    outcomes = [s + f for s, f in zip(succeeded, failed, strict=True)]
    return {
        "created": buckets.per_minute(created),
        "succeeded": buckets.per_minute(succeeded),
        "failed": buckets.per_minute(failed),
        "cancelled": buckets.per_minute(cancelled),
        "failure_rate": _rate(failed, outcomes),
    }


def _unit_models():
    """The unit tables kinds registered (`jobs.extensions`), each once."""
    for table in dict.fromkeys(unit_tables()):
        try:
            model = apps.get_model(table.model)
        except LookupError:  # the app is not installed here
            continue
        yield model, table.job_field, table.time_field, table.failed_field


def row_series(buckets: Buckets) -> dict[str, list]:
    """Units stored per bucket, from the jobs that ran in the window only.

    Restricting to those jobs lets the databases use the (job, time) indexes instead
    of scanning every result ever stored.
    """
    recent_jobs = Job.objects.filter(started_at__isnull=False).filter(
        Q(finished_at__isnull=True) | Q(finished_at__gte=buckets.start)
    )
    processed = [0] * buckets.count
    failed = [0] * buckets.count
    for model, job_field, time_field, failed_field in _unit_models():
        units = model.objects.filter(**{f"{job_field}__in": recent_jobs.values("pk")})
        counts = _per_bucket(units, time_field, buckets, group=failed_field)
        for key, values in counts.items():
            for i, n in enumerate(values):
                processed[i] += n
                if failed_field and key:
                    failed[i] += n
    return {
        "processed": buckets.per_minute(processed),
        "failed": buckets.per_minute(failed),
        "failure_rate": _rate(failed, processed),
    }


def queue_series(buckets: Buckets) -> list[int]:
    """Jobs waiting for their first start at the end of each bucket (one query)."""
    start = buckets.start
    candidates = (
        Job.objects.filter(created_at__lte=buckets.now)
        .filter(Q(started_at__isnull=True) | Q(started_at__gte=start))
        .filter(Q(finished_at__isnull=True) | Q(finished_at__gte=start))
        .exclude(status=Status.PAUSED, started_at__isnull=True)
    )
    counts = {}
    for i in range(buckets.count):
        _, end = buckets.bounds(i)
        waiting = (
            Q(created_at__lte=end)
            & (Q(started_at__isnull=True) | Q(started_at__gt=end))
            & (Q(finished_at__isnull=True) | Q(finished_at__gt=end))
        )
        counts[f"b{i}"] = Count("pk", filter=waiting)
    totals = candidates.order_by().aggregate(**counts)
    return [totals[f"b{i}"] or 0 for i in range(buckets.count)]


def wait_series(buckets: Buckets) -> dict[str, list[float | None]]:
    """Average and longest wait (creation to first start) of jobs started per bucket."""
    total = [0.0] * buckets.count
    longest: list[float | None] = [None] * buckets.count
    count = [0] * buckets.count
    started = Job.objects.filter(started_at__gte=buckets.start, started_at__lte=buckets.now)
    for created_at, started_at in started.order_by().values_list("created_at", "started_at"):
        i = buckets.index(started_at)
        if i is None:
            continue
        wait = max(0.0, (started_at - created_at).total_seconds())
        total[i] += wait
        count[i] += 1
        longest[i] = max(longest[i] or 0.0, wait)
    average = [round(t / n, 2) if n else None for t, n in zip(total, count, strict=True)]
    return {"average": average, "longest": [None if w is None else round(w, 2) for w in longest]}


def running_series(buckets: Buckets) -> dict[str, list[int]]:
    """Jobs per kind that ran at some time during each bucket (one query)."""
    end_of_run = Case(
        When(status=Status.RUNNING, then=Value(buckets.now)),
        default=Coalesce(F("finished_at"), F("heartbeat_at"), F("started_at")),
        output_field=DateTimeField(),
    )
    runs = (
        Job.objects.filter(started_at__isnull=False, started_at__lte=buckets.now)
        .annotate(run_end=end_of_run)
        .filter(run_end__gte=buckets.start)
    )
    counts = {}
    for i in range(buckets.count):
        start, end = buckets.bounds(i)
        counts[f"b{i}"] = Count("pk", filter=Q(started_at__lte=end, run_end__gte=start))
    rows = runs.order_by().values("kind").annotate(**counts)
    return {row["kind"]: [row[f"b{i}"] for i in range(buckets.count)] for row in rows}


def current_figures(now: datetime | None = None) -> dict[str, Any]:
    """The state right now: queue, running jobs per kind, workers and their clusters."""
    now = now or timezone.now()
    by_status = dict(
        Job.objects.filter(status__in=Job.ACTIVE)
        .order_by()
        .values_list("status")
        .annotate(n=Count("pk"))
    )
    running_by_kind = dict(
        Job.objects.filter(status=Status.RUNNING)
        .order_by("kind")
        .values_list("kind")
        .annotate(n=Count("pk"))
    )
    oldest = (
        Job.objects.filter(status__in=[Status.QUEUED, Status.RETRYING])
        .order_by("created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    workers = list(
        Worker.objects.alive().order_by("cluster", "name").values("cluster", "host", "pid")
    )
    clusters: dict[str, int] = {}
    for worker in workers:
        clusters[worker["cluster"]] = clusters.get(worker["cluster"], 0) + 1
    return {
        "queued": by_status.get(Status.QUEUED, 0) + by_status.get(Status.RETRYING, 0),
        "running": by_status.get(Status.RUNNING, 0),
        "paused": by_status.get(Status.PAUSED, 0),
        "running_by_kind": running_by_kind,
        "oldest_wait_seconds": (
            round((now - oldest).total_seconds(), 1) if oldest is not None else None
        ),
        "workers": len(workers),
        "clusters": [{"name": name, "workers": n} for name, n in sorted(clusters.items())],
    }


def metrics(window: str = "hour", now: datetime | None = None) -> dict[str, Any]:
    """Everything the metrics page draws, as JSON-ready data (times in epoch seconds)."""
    if window not in WINDOWS:
        raise ValueError(f"window must be one of {', '.join(WINDOWS)}")
    now = now or timezone.now()
    buckets = Buckets.for_window(window, now)
    if window in FROM_HISTORY:
        past = _history_series(buckets, FROM_HISTORY[window])
    else:
        jobs, rows = job_series(buckets), row_series(buckets)
        past = {
            "jobs": {k: v for k, v in jobs.items() if k != "failure_rate"},
            "rows": {k: v for k, v in rows.items() if k != "failure_rate"},
            "failure_rate": {"jobs": jobs["failure_rate"], "rows": rows["failure_rate"]},
            "queue": wait_series(buckets),
        }
    past["queue"]["waiting"] = queue_series(buckets)
    return {
        "window": window,
        "bucket_seconds": buckets.size,
        "generated_at": now.timestamp(),
        "times": buckets.times,
        **past,
        "running": running_series(buckets),
        "performance": [f.as_dict() for f in stats.performance(window, now)],
        "now": current_figures(now),
        "methods": METHODS,
    }


def _history_series(buckets: Buckets, period: str) -> dict[str, Any]:
    """A week's or a month's charts from the history; submissions from the jobs table."""
    found = stats.series(buckets.times, buckets.size, period)
    created = _per_bucket(Job.objects.all(), "created_at", buckets).get(None, [0] * buckets.count)
    return {
        "jobs": {
            "created": buckets.per_minute(created),
            "succeeded": found["succeeded"],
            "failed": found["failed"],
            "cancelled": found["cancelled"],
        },
        "rows": {"processed": found["rows_processed"], "failed": found["rows_failed"]},
        "failure_rate": {"jobs": found["jobs_failure_rate"], "rows": found["rows_failure_rate"]},
        "queue": {"average": found["wait_average"], "p95": found["wait_p95"]},
    }
