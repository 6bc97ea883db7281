"""An upgrade with jobs in flight: tasks queued under the old dotted paths still run,
and the maintenance schedule is moved to the new path by a migration."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django_q.models import Schedule
from django_q.tasks import async_task

from jobs.engine.recovery import SCHEDULE_NAME
from jobs.models import Job
from tests.jobs.factories import fresh, submit_demo
from tests.support.processes import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.cluster
def test_a_task_queued_under_the_old_path_runs_its_job(cluster_factory, user):
    job = submit_demo(user, n=3)
    Job.objects.filter(pk=job.pk).update(dispatched_at=None)
    async_task("jobs.runner.run_slice", job.pk, task_name=f"job-{job.pk}")
    cluster_factory(workers=1)
    wait_for(lambda: fresh(job).status == Job.Status.SUCCEEDED, timeout=30, what="the job")
    assert fresh(job).processed == 3


def test_the_old_maintenance_path_is_importable_and_the_schedule_is_migrated():
    from jobs.maintenance import run_periodic

    assert callable(run_periodic)
    old = Schedule.objects.create(
        name=SCHEDULE_NAME, func="jobs.maintenance.run_periodic", schedule_type=Schedule.MINUTES
    )
    migration = importlib.import_module("jobs.migrations.0004_maintenance_task_path")
    migration.forward(apps, None)
    old.refresh_from_db()
    assert old.func == "jobs.engine.maintenance.run_periodic"
