"""Two workers committing batch after batch while the web side writes too: no
"database is locked" reaches a job, a worker or a request."""

from __future__ import annotations

import contextlib

import pytest
from django.db import connection

from jobs.engine.errors import JobActionError
from jobs.engine.services import job_pause, job_resume
from jobs.models import Job, Notification
from tests.jobs.factories import status_of, submit_demo
from tests.support.processes import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.django_db(transaction=True)]


def test_workers_and_web_writes_never_surface_database_is_locked(cluster, user, client):
    client.force_login(user)
    busy = [submit_demo(user, n=400, batch=1) for _ in range(2)]
    toggled = submit_demo(user, n=50, batch=1, delay=0.01)
    for round_ in range(60):
        submit_demo(user, n=1)
        Notification.objects.create(user=user, message=f"web write {round_}")
        with contextlib.suppress(JobActionError):  # it may end between the look and the click
            if status_of(toggled) in (Job.Status.QUEUED, Job.Status.RUNNING):
                job_pause(job=toggled, by=user)
            elif status_of(toggled) == Job.Status.PAUSED:
                job_resume(job=toggled, by=user)
        assert client.get("/jobs/").status_code == 200
    if status_of(toggled) == Job.Status.PAUSED:
        job_resume(job=toggled, by=user)
    wait_for(lambda: not Job.objects.active().exists(), timeout=120, what="every job to finish")
    assert set(Job.objects.values_list("status", flat=True)) == {Job.Status.SUCCEEDED}
    assert not Job.objects.filter(error__icontains="locked").exists()
    assert "database is locked" not in cluster.log()
    assert all(Job.objects.get(pk=job.pk).processed == 400 for job in busy)
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode")
            assert cursor.fetchone()[0] == "wal"
