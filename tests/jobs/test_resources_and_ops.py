"""What operators read: each job's CPU and peak memory, each worker's memory, the
Prometheus exposition (staff or a staff token only) and JSON logs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from django.test import Client

from jobs.engine.services import job_submit
from jobs.models import Worker
from jobs.serializers import job_as_dict
from jobs.tokens import token_create
from tests.conftest import subprocess_env
from tests.jobs.factories import fresh, run_to_end, submit_demo
from tests.support.processes import ROOT, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_job_records_its_cpu_time_and_peak_memory(user):
    job, _ = job_submit(kind="plugin.spin", params={"seconds": 0.3}, owner=user)
    data = job_as_dict(fresh(run_to_end(job)))
    assert data["cpu_seconds"] >= 0.25 and data["peak_rss_mb"] > 20


@pytest.mark.cluster
def test_workers_report_their_memory(cluster):
    wait_for(
        lambda: all(w.rss_mb for w in Worker.objects.alive()) and Worker.objects.alive().exists(),
        timeout=15,
        what="workers to report their memory",
    )
    assert all(20 < w.rss_mb < 2000 for w in Worker.objects.alive())


def test_prometheus_is_for_staff_and_staff_tokens(user, staff_user):
    submit_demo(user, n=3)
    anonymous = Client().get("/metrics/prometheus")
    client = Client()
    client.force_login(user)
    assert (anonymous.status_code, client.get("/metrics/prometheus").status_code) == (401, 401)
    _, secret = token_create(user=staff_user)
    scraped = Client().get("/metrics/prometheus", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert scraped.status_code == 200
    text = scraped.content.decode()
    assert 'conveyor_jobs{kind="demo.count",status="queued"} 1.0' in text
    assert "conveyor_workers_alive 0.0" in text
    assert "conveyor_queue_oldest_wait_seconds" in text


def test_log_format_json_writes_one_json_object_per_line():
    code = (
        "import django, logging; django.setup(); "
        "logging.getLogger('jobs.test').warning('hello %s', 'there')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=subprocess_env(LOG_FORMAT="json", DJANGO_SETTINGS_MODULE="config.settings"),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    line = json.loads(result.stderr.strip().splitlines()[-1])
    assert line["message"] == "hello there" and line["level"] == "WARNING"
    assert line["logger"] == "jobs.test"
