"""Every page says when the user's jobs wait for workers that are not there (a stopped
cluster would otherwise show "Running, ETA 47 s" forever)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.models import Job, Worker
from tests.jobs.factories import submit_demo

pytestmark = pytest.mark.django_db

BANNER = 'data-down="1"'


def test_a_banner_says_no_worker_runs_the_users_waiting_jobs(client, user):
    client.force_login(user)
    assert BANNER not in client.get("/jobs/").content.decode(), "no jobs, nothing to say"

    job = submit_demo(user, n=5)
    Job.objects.filter(pk=job.pk).update(status=Job.Status.RUNNING)
    Worker.objects.create(
        name="gone:1", host="gone", pid=1, last_seen_at=timezone.now() - timedelta(hours=1)
    )
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert BANNER in page and "No worker is running" in page

    Worker.objects.create(name="here:2", host="here", pid=2)
    assert BANNER not in client.get(f"/jobs/{job.pk}/").content.decode()


def test_no_banner_when_the_users_jobs_are_all_finished(client, user):
    client.force_login(user)
    job = submit_demo(user, n=5)
    Job.objects.filter(pk=job.pk).update(status=Job.Status.SUCCEEDED)
    assert BANNER not in client.get("/").content.decode()
