"""`/metrics/prometheus`: the operators' figures in Prometheus' text format.

Read from the jobs tables on each scrape (a handful of aggregate queries, no state kept
in the web process, so every web process answers the same): jobs by status and kind,
units processed, the queue's oldest wait, workers alive and their memory, process
restarts counted by `make run`'s supervisor, and from the history's totals: finished
jobs, rows, LLM tokens and cost by kind, and histograms of run time and queue wait. Staff (session) or an API token only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from django.conf import settings
from django.db.models import Count, Min, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from jobs.history.rollup import HISTOGRAM_BOUNDS
from jobs.models import Job, KindStat, Worker
from jobs.tokens import user_for_token

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class JobsCollector:
    def collect(self) -> Iterator[Metric]:
        yield from (self.jobs(), self.units(), self.queue(), *self.workers(), self.restarts())
        yield from self.history()

    def history(self) -> Iterator[Metric]:
        """Counters and histograms from the history's running totals (jobs/history/):
        monotonic, whatever the retention prunes."""
        totals = list(KindStat.objects.filter(period=KindStat.Period.TOTAL).order_by("kind"))
        duration = HistogramMetricFamily(
            "conveyor_job_duration_seconds", "Running time of finished jobs.", labels=["kind"]
        )
        wait = HistogramMetricFamily(
            "conveyor_queue_wait_seconds",
            "Time from submission to first start of finished jobs.",
            labels=["kind"],
        )
        finished = CounterMetricFamily(
            "conveyor_jobs_finished",
            "Jobs finished, by kind and status.",
            labels=["kind", "status"],
        )
        counters = {
            name: CounterMetricFamily(f"conveyor_{name}", text, labels=["kind"])
            for name, text in (
                ("rows_processed", "Rows (units) processed by finished jobs."),
                ("rows_failed", "Rows (units) that failed in finished jobs."),
                ("llm_tokens", "LLM prompt and completion tokens of finished jobs."),
                ("llm_cost_usd", "LLM cost of finished jobs at the operator's prices (USD)."),
            )
        }
        for row in totals:
            duration.add_metric([row.kind], _buckets(row.duration), sum_value=row.duration_sum)
            wait.add_metric([row.kind], _buckets(row.wait), sum_value=row.wait_sum)
            for status in ("succeeded", "failed", "cancelled"):
                finished.add_metric([row.kind, status], getattr(row, status))
            counters["rows_processed"].add_metric([row.kind], row.rows_processed)
            counters["rows_failed"].add_metric([row.kind], row.rows_failed)
            counters["llm_tokens"].add_metric([row.kind], row.tokens)
            counters["llm_cost_usd"].add_metric([row.kind], row.cost_usd)
        yield from (duration, wait, finished, *counters.values())

    def jobs(self) -> Metric:
        family = GaugeMetricFamily(
            "conveyor_jobs", "Jobs by status and kind.", labels=["status", "kind"]
        )
        rows = Job.objects.order_by().values_list("status", "kind").annotate(n=Count("pk"))
        for status, kind, count in rows:
            family.add_metric([status, kind], count)
        return family

    def units(self) -> Metric:
        family = CounterMetricFamily(
            "conveyor_units_processed", "Units (rows) processed by jobs, by kind.", labels=["kind"]
        )
        for kind, total in Job.objects.order_by().values_list("kind").annotate(n=Sum("processed")):
            family.add_metric([kind], total or 0)
        return family

    def queue(self) -> Metric:
        oldest = Job.objects.filter(status__in=[Job.Status.QUEUED, Job.Status.RETRYING]).aggregate(
            at=Min("created_at")
        )["at"]
        wait = (timezone.now() - oldest).total_seconds() if oldest else 0.0
        return GaugeMetricFamily(
            "conveyor_queue_oldest_wait_seconds",
            "Age of the oldest job waiting to run.",
            value=wait,
        )

    def workers(self) -> list[Metric]:
        alive = list(Worker.objects.alive().values_list("name", "rss_mb"))
        count = GaugeMetricFamily(
            "conveyor_workers_alive", "Worker processes alive.", value=len(alive)
        )
        memory = GaugeMetricFamily(
            "conveyor_worker_rss_bytes", "Memory of each worker process.", labels=["worker"]
        )
        for name, rss_mb in alive:
            memory.add_metric([name], (rss_mb or 0) * 1024 * 1024)
        return [count, memory]

    def restarts(self) -> Metric:
        family = CounterMetricFamily(
            "conveyor_process_restarts", "Restarts by make run's supervisor.", labels=["process"]
        )
        path = settings.DATA_DIR / "supervisor.json"
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            state = {}
        for name, entry in sorted(state.items()):
            if isinstance(entry, dict):
                family.add_metric([name], entry.get("restarts", 0))
        return family


def _buckets(counts: list[int]) -> list[tuple[str, float]]:
    """A stored histogram as Prometheus' cumulative buckets, `+Inf` last."""
    counts = list(counts) + [0] * (len(HISTOGRAM_BOUNDS) + 1 - len(counts))
    cumulative, running = [], 0
    bounds = [str(float(bound)) for bound in HISTOGRAM_BOUNDS] + ["+Inf"]
    for bound, count in zip(bounds, counts, strict=True):
        running += count
        cumulative.append((bound, running))
    return cumulative


def _allowed(request: HttpRequest) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() == "bearer" and secret.strip():
        user = user_for_token(secret.strip())
        return user is not None and user.is_staff
    user = request.user
    return user.is_authenticated and user.is_active and user.is_staff


@never_cache
@require_GET
def prometheus(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        return HttpResponse("Staff login or a staff user's API token required.\n", status=401)
    registry = CollectorRegistry()
    registry.register(JobsCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE)
