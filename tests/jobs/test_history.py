"""The jobs' history (jobs/history/): finished jobs rolled up per kind by minute, hour,
day and in total, once each however many workers roll up; pruned to a bounded size;
read back as per-kind p50/p95 and long-range charts; exported to Prometheus as
counters and histograms that `promtool check metrics` accepts."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client

from jobs.history import rollup, stats
from jobs.history.rollup import HISTOGRAM_BOUNDS, roll_up
from jobs.models import HistoryMark, Job, KindStat
from jobs.web.metrics import metrics
from tests.conftest import require
from tests.jobs.factories import submit_demo

pytestmark = pytest.mark.django_db

S = Job.Status
NOW = datetime(2026, 12, 7, 10, 30, 40, tzinfo=UTC)


def finished_job(owner, *, ended: datetime, ran: float, waited: float, status=S.SUCCEEDED, **kw):
    """A job that waited `waited` s, ran `ran` s and ended at `ended`."""
    job = submit_demo(owner, n=1)
    started = ended - timedelta(seconds=ran)
    Job.objects.filter(pk=job.pk).update(
        status=status,
        created_at=started - timedelta(seconds=waited),
        started_at=started,
        finished_at=ended,
        run_seconds=ran,
        kind=kw.pop("kind", "demo.count"),
        **kw,
    )
    return job


def stat(period: str, kind: str = "demo.count") -> KindStat:
    return KindStat.objects.get(period=period, kind=kind)


def test_finished_jobs_are_rolled_up_once_per_minute_hour_day_and_total(user):
    HistoryMark.objects.create(rolled_to=NOW - timedelta(hours=1))
    ended = NOW - timedelta(minutes=5)
    finished_job(user, ended=ended, ran=3, waited=0.2, processed=10, failed=1)
    finished_job(user, ended=ended, ran=40, waited=7, status=S.FAILED, processed=4)
    spent = {"prompt_tokens": 100, "completion_tokens": 20, "cost_usd": 0.5}
    finished_job(user, ended=ended, ran=0.05, waited=0, kind="sheets.process", spent=spent)
    submit_demo(user, n=1)  # still queued: not history yet

    assert roll_up(NOW) == 3
    assert roll_up(NOW) == 0, "the same jobs are not counted again"
    for period in ("minute", "hour", "day", "total"):
        row = stat(period)
        assert (row.succeeded, row.failed, row.cancelled) == (1, 1, 0)
        assert (row.rows_processed, row.rows_failed) == (14, 1)
        assert row.duration_sum == 43 and row.wait_sum == pytest.approx(7.2)
    minute = stat("minute")
    assert minute.start == datetime(2026, 12, 7, 10, 25, tzinfo=UTC)
    assert stat("day").start == datetime(2026, 12, 7, tzinfo=UTC)
    assert minute.duration[HISTOGRAM_BOUNDS.index(5)] == 1  # 3 s: the "le 5" bucket
    assert minute.duration[HISTOGRAM_BOUNDS.index(60)] == 1  # 40 s
    assert (
        minute.wait[HISTOGRAM_BOUNDS.index(0.5)] == 1
        and minute.wait[HISTOGRAM_BOUNDS.index(10)] == 1
    )
    llm = stat("total", "sheets.process")
    assert (llm.tokens, llm.cost_usd) == (120, 0.5)


def test_a_job_ending_later_is_added_to_the_rows_already_there(user):
    HistoryMark.objects.create(rolled_to=NOW - timedelta(hours=1))
    finished_job(user, ended=NOW - timedelta(minutes=5), ran=1, waited=1)
    roll_up(NOW)
    finished_job(user, ended=NOW - timedelta(seconds=20), ran=1, waited=1)
    finished_job(user, ended=NOW, ran=1, waited=1)  # too recent for the next roll-up
    roll_up(NOW + timedelta(seconds=15))
    assert stat("hour").succeeded == 2 and stat("total").succeeded == 2
    roll_up(NOW + timedelta(minutes=1))
    assert stat("total").succeeded == 3


def test_two_workers_rolling_up_at_once_count_each_job_once(user):
    """The mark moves by compare-and-set: a second worker that read the same mark stores
    nothing (two real workers race exactly here)."""
    mark = HistoryMark.objects.create(rolled_to=NOW - timedelta(hours=1))
    finished_job(user, ended=NOW - timedelta(minutes=5), ran=1, waited=1)
    jobs = list(Job.objects.values(*rollup.JOB_FIELDS))
    upto = NOW - rollup.LAG
    assert rollup._store(mark.pk, mark.rolled_to, upto, jobs) == 1
    assert rollup._store(mark.pk, mark.rolled_to, upto, jobs) == 0
    assert stat("total").succeeded == 1


def test_the_first_roll_up_takes_every_finished_job_still_kept(user):
    finished_job(user, ended=NOW - timedelta(days=3), ran=1, waited=1)
    finished_job(user, ended=NOW - timedelta(minutes=3), ran=1, waited=1)
    roll_up(NOW)
    assert stat("total").succeeded == 2
    assert KindStat.objects.filter(period="day").count() == 2


def test_pruning_keeps_minutes_48_hours_hours_8_days_days_a_month_and_totals(user, settings):
    settings.CONVEYOR_HISTORY_DAYS = 30
    HistoryMark.objects.create(rolled_to=NOW - timedelta(days=60))
    for age in (timedelta(hours=1), timedelta(days=3), timedelta(days=10), timedelta(days=40)):
        finished_job(user, ended=NOW - age, ran=1, waited=1)
    roll_up(NOW)
    rollup.prune(NOW)
    kept = {
        p: KindStat.objects.filter(period=p).count() for p in ("minute", "hour", "day", "total")
    }
    assert kept == {"minute": 1, "hour": 2, "day": 3, "total": 1}
    assert stat("total").succeeded == 4, "totals are never pruned"


def test_percentiles_come_from_the_histograms():
    counts = [0] * (len(HISTOGRAM_BOUNDS) + 1)
    assert stats.quantile(counts, 0.5) is None
    counts[HISTOGRAM_BOUNDS.index(1)] = 50  # 50 jobs in (0.5, 1]
    counts[HISTOGRAM_BOUNDS.index(60)] = 50  # 50 jobs in (30, 60]
    assert stats.quantile(counts, 0.5) == 1.0
    assert stats.quantile(counts, 0.95) == pytest.approx(57.0)
    counts[-1] = 1000
    assert stats.quantile(counts, 0.95) == HISTOGRAM_BOUNDS[-1]


def test_performance_per_kind_and_the_month_chart(user):
    HistoryMark.objects.create(rolled_to=NOW - timedelta(days=20))
    for i in range(20):
        finished_job(user, ended=NOW - timedelta(days=2, minutes=i), ran=2, waited=0.3)
    for _ in range(3):
        finished_job(user, ended=NOW - timedelta(days=1), ran=200, waited=20, status=S.FAILED)
    roll_up(NOW)
    figures = {f.kind: f for f in stats.performance("month", NOW)}["demo.count"]
    assert (figures.finished, figures.failed, figures.failure_rate) == (23, 3, 13.0)
    assert 1 < figures.duration_p50 <= 2.5 and 120 < figures.duration_p95 <= 300
    assert figures.wait_p50 <= 0.5
    data = metrics("month", NOW)
    assert len(data["times"]) == 30 and data["bucket_seconds"] == 86400
    day = (int((NOW - timedelta(days=2)).timestamp()) - data["times"][0]) // 86400
    assert data["jobs"]["succeeded"][day] == pytest.approx(20 / 1440, abs=0.01)
    assert data["failure_rate"]["jobs"][day] == 0.0
    assert data["queue"]["p95"][day] is not None and "longest" not in data["queue"]
    assert data["performance"][0]["kind"] == "demo.count"


def test_the_week_and_month_pages_show_the_performance_table(staff_user):
    client = Client()
    client.force_login(staff_user)
    for window in ("week", "month"):
        page = client.get(f"/metrics/?window={window}").content.decode()
        assert 'id="kind-performance"' in page and "Run time p50 / p95" in page
        assert client.get(f"/metrics/data/?window={window}").status_code == 200


def test_prometheus_exports_histograms_and_counters_promtool_accepts(user, staff_user):
    HistoryMark.objects.create(rolled_to=NOW - timedelta(hours=1))
    finished_job(user, ended=NOW - timedelta(minutes=5), ran=3, waited=0.2, processed=7)
    finished_job(user, ended=NOW - timedelta(minutes=5), ran=3, waited=0.2, status=S.FAILED)
    roll_up(NOW)
    client = Client()
    client.force_login(staff_user)
    text = client.get("/metrics/prometheus").content.decode()
    assert 'conveyor_job_duration_seconds_bucket{kind="demo.count",le="5.0"} 2.0' in text
    assert 'conveyor_job_duration_seconds_count{kind="demo.count"} 2.0' in text
    assert 'conveyor_queue_wait_seconds_bucket{kind="demo.count",le="+Inf"} 2.0' in text
    assert 'conveyor_jobs_finished_total{kind="demo.count",status="failed"} 1.0' in text
    assert 'conveyor_rows_processed_total{kind="demo.count"} 7.0' in text
    promtool = shutil.which("promtool")
    require(promtool is not None, "promtool (apt-get install prometheus)")
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
