"""The history roll-up: finished jobs folded into per-kind figures (`KindStat`) by
minute, hour and day, and a running total, so the metrics page can chart 30 days and
Prometheus can export counters and histograms without keeping jobs that long.

The upkeep (`maintenance.on_upkeep`, every worker's heartbeat and the minute schedule)
calls `roll_up()`: it reads the jobs that finished since `HistoryMark.rolled_to` (up to
a short lag, so a transition written at the same moment is not missed) and adds them to
their rows. The mark moves by compare-and-set in the same transaction as the rows, so
two workers rolling up at once never count a job twice; a job retried after it ended
counts again when it ends again (it ran twice). `prune()` keeps minutes for 48 hours,
hours for 8 days and days for CONVEYOR_HISTORY_DAYS: a bounded table whatever the load.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Min
from django.utils import timezone

from jobs.engine.db import atomic_retry
from jobs.models import HistoryMark, Job, KindStat

Period = KindStat.Period

# Upper bounds (seconds) of the duration and queue-wait histograms' buckets; a last
# bucket (+Inf) takes the rest. Prometheus' `le` labels are these.
HISTOGRAM_BOUNDS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
LAG = timedelta(seconds=30)  # a job that ended this recently may not be committed yet
PRUNE_EVERY = 3600.0  # seconds between prunes in one process
MAX_JOBS = 5_000  # jobs read per roll-up: a backlog is caught up over several upkeeps
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
KEEP = {Period.MINUTE: timedelta(hours=48), Period.HOUR: timedelta(days=8)}
ADDED = ("succeeded", "failed", "cancelled", "rows_processed", "rows_failed", "tokens")
ADDED_FLOATS = ("cost_usd", "duration_sum", "wait_sum")


def histogram_index(seconds: float) -> int:
    """The bucket of `seconds`: the first bound it does not exceed (len: +Inf)."""
    return bisect.bisect_left(HISTOGRAM_BOUNDS, seconds)


def period_start(period: str, when: datetime) -> datetime:
    when = when.astimezone(UTC)
    if period == Period.MINUTE:
        return when.replace(second=0, microsecond=0)
    if period == Period.HOUR:
        return when.replace(minute=0, second=0, microsecond=0)
    if period == Period.DAY:
        return when.replace(hour=0, minute=0, second=0, microsecond=0)
    return EPOCH


@dataclass
class Tally:
    """One KindStat row's additions from the jobs of one roll-up."""

    counts: dict[str, float] = field(default_factory=dict)
    duration: list[int] = field(default_factory=lambda: [0] * (len(HISTOGRAM_BOUNDS) + 1))
    wait: list[int] = field(default_factory=lambda: [0] * (len(HISTOGRAM_BOUNDS) + 1))

    def add(self, name: str, value: float) -> None:
        self.counts[name] = self.counts.get(name, 0) + value

    def observe(self, job: dict[str, Any]) -> None:
        if job["status"] in ("succeeded", "failed", "cancelled"):
            self.add(job["status"], 1)
        self.add("rows_processed", job["processed"] or 0)
        self.add("rows_failed", job["failed"] or 0)
        spent = job["spent"] if isinstance(job["spent"], dict) else {}
        tokens = sum(spent.get(k, 0) or 0 for k in ("prompt_tokens", "completion_tokens"))
        self.add("tokens", int(tokens))
        self.add("cost_usd", float(spent.get("cost_usd", 0) or 0))
        if job["started_at"] is None:
            return  # never ran: no duration, no wait
        run = max(0.0, job["run_seconds"] or 0.0)
        self.duration[histogram_index(run)] += 1
        self.add("duration_sum", run)
        wait = max(0.0, (job["started_at"] - job["created_at"]).total_seconds())
        self.wait[histogram_index(wait)] += 1
        self.add("wait_sum", wait)

    def apply(self, row: KindStat) -> None:
        for name in (*ADDED, *ADDED_FLOATS):
            setattr(row, name, getattr(row, name) + self.counts.get(name, 0))
        row.duration = _added(row.duration, self.duration)
        row.wait = _added(row.wait, self.wait)


def _added(stored: list[int], more: list[int]) -> list[int]:
    stored = list(stored or []) + [0] * (len(more) - len(stored or []))
    return [a + b for a, b in zip(stored, more, strict=False)]


JOB_FIELDS = (
    "kind",
    "status",
    "created_at",
    "started_at",
    "finished_at",
    "run_seconds",
    "processed",
    "failed",
    "spent",
)


def tallies(jobs: Iterable[dict[str, Any]]) -> dict[tuple[str, datetime, str], Tally]:
    """Each job added to its minute, hour, day and total row."""
    found: dict[tuple[str, datetime, str], Tally] = {}
    for job in jobs:
        for period in Period.values:
            key = (period, period_start(period, job["finished_at"]), job["kind"])
            found.setdefault(key, Tally()).observe(job)
    return found


def roll_up(now: datetime | None = None) -> int:
    """Fold the jobs that finished since the last roll-up into their rows; the number
    of jobs read (0 when another worker was rolling up the same jobs)."""
    upto = (now or timezone.now()) - LAG
    mark = _mark(upto)
    since = mark.rolled_to
    ended = Job.objects.filter(status__in=Job.TERMINAL, finished_at__gt=since)
    cutoff = list(
        ended.filter(finished_at__lte=upto)
        .order_by("finished_at")
        .values_list("finished_at", flat=True)[MAX_JOBS : MAX_JOBS + 1]
    )
    if cutoff:
        upto = cutoff[0]
    if upto <= since:
        return 0
    jobs = list(ended.filter(finished_at__lte=upto).order_by().values(*JOB_FIELDS))
    return atomic_retry(lambda: _store(mark.pk, since, upto, jobs))


def _mark(upto: datetime) -> HistoryMark:
    """The one mark; the first starts at the oldest finished job still kept."""
    mark = HistoryMark.objects.order_by("pk").first()
    if mark is not None:
        return mark
    oldest = Job.objects.filter(status__in=Job.TERMINAL).aggregate(at=Min("finished_at"))["at"]
    start = min(upto, oldest - timedelta(microseconds=1)) if oldest else upto
    mark, _ = HistoryMark.objects.get_or_create(pk=1, defaults={"rolled_to": start})
    return mark


def _store(mark_id: int, since: datetime, upto: datetime, jobs: list[dict[str, Any]]) -> int:
    with transaction.atomic():
        moved = HistoryMark.objects.filter(pk=mark_id, rolled_to=since).update(rolled_to=upto)
        if not moved:
            return 0  # another worker took these jobs
        found = tallies(jobs)
        existing = {
            (row.period, row.start, row.kind): row
            for row in KindStat.objects.filter(
                kind__in={kind for _, _, kind in found},
                start__in={start for _, start, _ in found},
            )
        }
        new, changed = [], []
        for key, tally in found.items():
            row = existing.get(key)
            if row is None:
                row = KindStat(period=key[0], start=key[1], kind=key[2])
                new.append(row)
            else:
                changed.append(row)
            tally.apply(row)
        KindStat.objects.bulk_create(new)
        KindStat.objects.bulk_update(changed, [*ADDED, *ADDED_FLOATS, "duration", "wait"])
    return len(jobs)


_last_prune = 0.0


def upkeep() -> None:
    """The upkeep hook: roll up what finished; prune at most once every PRUNE_EVERY s."""
    global _last_prune
    roll_up()
    if time.monotonic() - _last_prune >= PRUNE_EVERY:
        _last_prune = time.monotonic()
        prune()


def prune(now: datetime | None = None) -> int:
    """Drop minute rows after 48 h, hour rows after 8 days, day rows after
    CONVEYOR_HISTORY_DAYS; totals stay."""
    now = now or timezone.now()
    keep = {**KEEP, Period.DAY: timedelta(days=settings.CONVEYOR_HISTORY_DAYS + 1)}
    deleted = 0
    for period, age in keep.items():
        count, _ = KindStat.objects.filter(period=period, start__lt=now - age).delete()
        deleted += count
    return deleted
