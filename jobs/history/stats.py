"""Reading the history (`KindStat`): each kind's performance over a range (throughput,
failure rate, duration and queue-wait p50/p95, rows, tokens and cost), and the series
the metrics page charts over a week or a month.

Percentiles come from the histograms as Prometheus' `histogram_quantile` computes them:
linear within the bucket holding the rank, so they are as fine as HISTOGRAM_BOUNDS.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone

from jobs.history.rollup import HISTOGRAM_BOUNDS, Tally, period_start
from jobs.models import KindStat

Period = KindStat.Period

# range name -> (span, the rows it reads)
RANGES = {
    "hour": (timedelta(hours=1), Period.MINUTE),
    "day": (timedelta(days=1), Period.MINUTE),
    "week": (timedelta(days=7), Period.HOUR),
    "month": (timedelta(days=30), Period.DAY),
}


def quantile(counts: list[int], q: float) -> float | None:
    """The q-quantile of a histogram over HISTOGRAM_BOUNDS (None when it is empty); in
    the +Inf bucket, the last bound (as Prometheus does)."""
    total = sum(counts)
    if not total:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(counts):
        if seen + count >= rank and count:
            if i >= len(HISTOGRAM_BOUNDS):
                return float(HISTOGRAM_BOUNDS[-1])
            lower = HISTOGRAM_BOUNDS[i - 1] if i else 0.0
            upper = HISTOGRAM_BOUNDS[i]
            return round(lower + (upper - lower) * (rank - seen) / count, 3)
        seen += count
    return float(HISTOGRAM_BOUNDS[-1])


@dataclass
class KindFigures:
    kind: str
    finished: int
    succeeded: int
    failed: int
    cancelled: int
    per_minute: float
    failure_rate: float | None  # % of succeeded + failed
    rows_processed: int
    rows_failed: int
    tokens: int
    cost_usd: float
    duration_p50: float | None
    duration_p95: float | None
    wait_p50: float | None
    wait_p95: float | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _summed(rows: list[KindStat]) -> KindStat:
    total = KindStat()
    for row in rows:
        tally = Tally()
        tally.counts = {name: getattr(row, name) for name in ("succeeded", "failed", "cancelled")}
        tally.counts.update(
            rows_processed=row.rows_processed,
            rows_failed=row.rows_failed,
            tokens=row.tokens,
            cost_usd=row.cost_usd,
            duration_sum=row.duration_sum,
            wait_sum=row.wait_sum,
        )
        tally.duration, tally.wait = list(row.duration), list(row.wait)
        tally.apply(total)
    return total


def performance(range_name: str, now: datetime | None = None) -> list[KindFigures]:
    """Each kind's figures over the range, busiest first."""
    span, period = RANGES[range_name]
    now = now or timezone.now()
    since = period_start(period, now - span)
    rows = KindStat.objects.filter(period=period, start__gte=since).order_by("kind")
    by_kind: dict[str, list[KindStat]] = {}
    for row in rows:
        by_kind.setdefault(row.kind, []).append(row)
    minutes = span.total_seconds() / 60
    figures = []
    for kind, kind_rows in by_kind.items():
        total = _summed(kind_rows)
        finished = total.succeeded + total.failed + total.cancelled
        judged = total.succeeded + total.failed
        figures.append(
            KindFigures(
                kind=kind,
                finished=finished,
                succeeded=total.succeeded,
                failed=total.failed,
                cancelled=total.cancelled,
                per_minute=round(finished / minutes, 2),
                failure_rate=round(100 * total.failed / judged, 1) if judged else None,
                rows_processed=total.rows_processed,
                rows_failed=total.rows_failed,
                tokens=total.tokens,
                cost_usd=round(total.cost_usd, 6),
                duration_p50=quantile(total.duration, 0.5),
                duration_p95=quantile(total.duration, 0.95),
                wait_p50=quantile(total.wait, 0.5),
                wait_p95=quantile(total.wait, 0.95),
            )
        )
    return sorted(figures, key=lambda f: (-f.finished, f.kind))


def series(times: list[int], size: int, period: str) -> dict[str, list]:
    """Per bucket (`times`: epoch starts, `size` seconds): jobs finished by outcome and
    rows per minute, failure rates, and the queue wait's average and p95."""
    count = len(times)
    first = times[0]
    grouped: list[list[KindStat]] = [[] for _ in range(count)]
    rows = KindStat.objects.filter(period=period, start__gte=datetime.fromtimestamp(first, tz=UTC))
    for row in rows:
        i = (int(row.start.timestamp()) - first) // size
        if 0 <= i < count:
            grouped[i].append(row)
    buckets = [_summed(group) for group in grouped]
    minutes = size / 60

    def rate(values: list[float]) -> list[float]:
        return [round(v / minutes, 2) for v in values]

    def share(part: list[int], whole: list[int]) -> list[float | None]:
        return [round(100 * p / w, 1) if w else None for p, w in zip(part, whole, strict=True)]

    succeeded = [b.succeeded for b in buckets]
    failed = [b.failed for b in buckets]
    started = [sum(b.wait) for b in buckets]
    rows_done = [b.rows_processed for b in buckets]
    rows_failed = [b.rows_failed for b in buckets]
    return {
        "succeeded": rate(succeeded),
        "failed": rate(failed),
        "cancelled": rate([b.cancelled for b in buckets]),
        "rows_processed": rate(rows_done),
        "rows_failed": rate(rows_failed),
        "jobs_failure_rate": share(failed, [s + f for s, f in zip(succeeded, failed, strict=True)]),
        "rows_failure_rate": share(rows_failed, rows_done),
        "wait_average": [
            round(b.wait_sum / n, 2) if n else None for b, n in zip(buckets, started, strict=True)
        ],
        "wait_p95": [quantile(list(b.wait), 0.95) for b in buckets],
    }
