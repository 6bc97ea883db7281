"""jobs/web/metrics.py and metrics_views.py, the staff metrics page: per-bucket figures from stored timestamps, staff-only access,
and data from a real cluster run (the chart updating in a browser: tests/browser)."""

from __future__ import annotations

import math
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs.models import DemoUnit, Job, Worker
from jobs.web.metrics import Buckets, metrics
from sheets.models import RowResult
from sheets.services import sheet_job_submit
from tests.jobs.factories import status_of, submit_demo
from tests.sheets.factories import make_sheet
from tests.support.processes import wait_for

S = Job.Status
DATA = "/metrics/data/"


@pytest.fixture
def staff_client(staff_user) -> Client:
    client = Client()
    client.force_login(staff_user)
    return client


def ago(now, minutes: float):
    return now - timedelta(minutes=minutes)


def dated_job(owner, now, *, created: float, started=None, finished=None, status=S.SUCCEEDED, **kw):
    """A job with its timestamps set `minutes` before `now`."""
    job = submit_demo(owner, kind=kw.pop("kind", "demo.count"), n=1)
    Job.objects.filter(pk=job.pk).update(
        status=status,
        created_at=ago(now, created),
        started_at=ago(now, started) if started is not None else None,
        finished_at=ago(now, finished) if finished is not None else None,
        heartbeat_at=ago(now, kw.pop("heartbeat", finished if finished is not None else 0))
        if started is not None
        else None,
        **kw,
    )
    return Job.objects.get(pk=job.pk)


def at(buckets: Buckets, now, minutes: float) -> int:
    index = buckets.index(ago(now, minutes))
    assert index is not None
    return index


# -- figures from stored timestamps -------------------------------------------------------


@pytest.mark.django_db
def test_buckets_cover_the_last_hour_per_minute_and_the_last_day_per_quarter_hour():
    now = timezone.now()
    hour = Buckets.for_window("hour", now)
    assert (hour.count, hour.size) == (60, 60)
    assert hour.index(now) == 59 and hour.index(ago(now, 59)) == 0
    assert hour.index(ago(now, 61)) is None
    day = Buckets.for_window("day", now)
    assert (day.count, day.size) == (96, 900)
    assert day.index(now) == 95 and day.index(ago(now, 24 * 60 + 20)) is None
    data = metrics("day", now)
    assert len(data["times"]) == 96 and data["times"][1] - data["times"][0] == 900


@pytest.mark.django_db
def test_jobs_per_minute_by_outcome_and_failure_rate(user):
    now = timezone.now()
    dated_job(user, now, created=30, started=29, finished=20)
    dated_job(user, now, created=25, started=24, finished=20, status=S.FAILED)
    dated_job(user, now, created=25, finished=20, status=S.CANCELLED)
    dated_job(user, now, created=90, started=89, finished=88)  # outside the hour
    data = metrics("hour", now)
    buckets = Buckets.for_window("hour", now)

    created = data["jobs"]["created"]
    assert created[at(buckets, now, 30)] == 1 and created[at(buckets, now, 25)] == 2
    assert sum(created) == 3
    i = at(buckets, now, 20)
    assert data["jobs"]["succeeded"][i] == 1
    assert data["jobs"]["failed"][i] == 1
    assert data["jobs"]["cancelled"][i] == 1
    assert data["failure_rate"]["jobs"][i] == 50.0, "failed among succeeded + failed"
    assert data["failure_rate"]["jobs"][i - 1] is None, "no finished jobs: no rate"


@pytest.mark.django_db
def test_rows_per_minute_count_stored_results_and_units(user):
    now = timezone.now()
    sheet = make_sheet(user, [["email"]] + [[f"r{i}@example.com"] for i in range(6)])
    sheet_job = sheet_job_submit(sheet=sheet, owner=user, processor="clean")[0]
    Job.objects.filter(pk=sheet_job.pk).update(
        status=S.SUCCEEDED, started_at=ago(now, 12), finished_at=ago(now, 5)
    )
    RowResult.objects.bulk_create(
        RowResult(
            job=sheet_job,
            sheet=sheet,
            row_number=n,
            failed=n > 4,
            updated_at=ago(now, 10 if n <= 3 else 6),
        )
        for n in range(1, 7)
    )
    demo = dated_job(user, now, created=10, started=10, finished=9)
    DemoUnit.objects.bulk_create(
        DemoUnit(job=demo, number=n, worker="w", started_at=now, finished_at=ago(now, 10))
        for n in range(4)
    )
    buckets = Buckets.for_window("hour", now)
    data = metrics("hour", now)

    processed, failed = data["rows"]["processed"], data["rows"]["failed"]
    assert processed[at(buckets, now, 10)] == 3 + 4
    assert processed[at(buckets, now, 6)] == 3 and failed[at(buckets, now, 6)] == 2
    assert sum(processed) == 10 and sum(failed) == 2
    assert data["failure_rate"]["rows"][at(buckets, now, 6)] == pytest.approx(66.7)

    day = metrics("day", now)
    assert math.fsum(day["rows"]["processed"]) * 15 == pytest.approx(10, abs=0.1), "per minute"


@pytest.mark.django_db
def test_queue_depth_wait_times_and_running_jobs_per_kind(user):
    now = timezone.now()
    dated_job(user, now, created=20, started=12, finished=2)  # waited 8 min, ran 12 -> 2
    dated_job(user, now, created=4, status=S.QUEUED)  # still waiting
    dated_job(
        user, now, created=6, started=5, status=S.RUNNING, kind="demo.serial", heartbeat=0
    )  # waited 1 min, running now
    dated_job(user, now, created=3, status=S.PAUSED)  # paused before starting: not queued
    buckets = Buckets.for_window("hour", now)
    data = metrics("hour", now)

    waiting = data["queue"]["waiting"]
    assert waiting[at(buckets, now, 30)] == 0
    assert waiting[at(buckets, now, 15)] == 1, "the first job, created 20 min ago, not started"
    assert waiting[at(buckets, now, 11)] == 0
    assert waiting[-1] == 1, "the queued job now"

    average, longest = data["queue"]["average"], data["queue"]["longest"]
    assert longest[at(buckets, now, 12)] == pytest.approx(8 * 60, abs=1)
    assert average[at(buckets, now, 5)] == pytest.approx(60, abs=1)
    assert average[at(buckets, now, 30)] is None

    running = data["running"]
    assert running["demo.count"][at(buckets, now, 15)] == 0
    assert running["demo.count"][at(buckets, now, 8)] == 1
    assert running["demo.count"][-1] == 0, "finished two minutes ago"
    assert running["demo.serial"][-1] == 1 and running["demo.serial"][at(buckets, now, 8)] == 0

    current = data["now"]
    assert current["queued"] == 1 and current["running"] == 1 and current["paused"] == 1
    assert current["running_by_kind"] == {"demo.serial": 1}
    assert current["oldest_wait_seconds"] == pytest.approx(4 * 60, abs=1)


@pytest.mark.django_db
def test_workers_alive_come_from_fresh_heartbeats(user):
    now = timezone.now()
    for pid, seen in ((1, now), (2, now), (3, now - timedelta(minutes=5))):
        Worker.objects.create(
            name=f"h:{pid}", host="h", pid=pid, cluster="h:100", last_seen_at=seen
        )
    current = metrics("hour")["now"]
    assert current["workers"] == 2
    assert current["clusters"] == [{"name": "h:100", "workers": 2}]


# -- the page -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_only_staff_see_the_metrics(client, user, staff_client):
    for path in ("/metrics/", DATA):
        response = client.get(path)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    client.force_login(user)
    for path in ("/metrics/", DATA):
        response = client.get(path)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
        assert staff_client.get(path).status_code == 200


OFF_SITE = re.compile(
    r'(?:src|href)="(?:https?:)?//'
)  # not `"cdn" in page`: CSRF tokens are random


@pytest.mark.django_db
def test_page_loads_the_vendored_chart_library_and_polls_the_data(staff_client):
    page = staff_client.get("/metrics/?window=day").content.decode()
    assert "/static/vendor/uplot/uPlot.iife.min.js" in page
    assert not OFF_SITE.findall(page), "every script and stylesheet is served by us"
    assert 'data-url="/metrics/data/?window=day"' in page and 'data-every="60"' in page
    assert 'data-every="2"' in staff_client.get("/metrics/?every=2").content.decode()
    assert staff_client.get(DATA + "?window=year").json()["window"] == "hour"


@pytest.mark.django_db
def test_data_takes_a_fixed_number_of_queries(staff_client, user):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert staff_client.get(DATA).status_code == 200
        return len(captured)

    now = timezone.now()
    dated_job(user, now, created=5, started=4, finished=3)
    few = queries()
    for minutes in range(20):
        dated_job(user, now, created=minutes + 2, started=minutes + 1, finished=minutes)
    assert queries() == few


# -- a real run ------------------------------------------------------------------------------


@pytest.mark.cluster
@pytest.mark.django_db(transaction=True)
def test_metrics_show_a_real_run_on_a_cluster(cluster, staff_user, staff_client, user):
    sheet = make_sheet(user, [["email"]] + [[f"p{i}@Example.com"] for i in range(25)])
    sheet_job = sheet_job_submit(sheet=sheet, owner=user, processor="clean")[0]
    demo = submit_demo(user, n=40, batch=5)
    for job in (sheet_job, demo):
        wait_for(lambda j=job: status_of(j) == S.SUCCEEDED, timeout=60, what=f"job #{job.pk}")

    data = staff_client.get(DATA).json()

    minutes = data["bucket_seconds"] / 60
    assert math.fsum(data["rows"]["processed"]) * minutes == pytest.approx(25 + 40, abs=0.5)
    assert sum(data["jobs"]["created"]) == 2 and sum(data["jobs"]["succeeded"]) == 2
    assert sum(data["failure_rate"]["rows"][i] or 0 for i in range(60)) == 0
    assert max(data["running"]["sheets.process"]) == 1
    assert any(w is not None for w in data["queue"]["longest"])
    assert data["now"]["workers"] == 2 and data["now"]["queued"] == 0
    page = staff_client.get("/metrics/")
    assert page.status_code == 200 and b'id="chart-rows"' in page.content
