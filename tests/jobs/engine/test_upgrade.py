"""An upgrade: the maintenance schedule is moved to the new dotted path by a migration."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django_q.models import Schedule

from jobs.engine.recovery import SCHEDULE_NAME

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_maintenance_schedule_is_migrated_to_the_new_path():
    old = Schedule.objects.create(
        name=SCHEDULE_NAME, func="jobs.maintenance.run_periodic", schedule_type=Schedule.MINUTES
    )
    migration = importlib.import_module("jobs.migrations.0004_maintenance_task_path")
    migration.forward(apps, None)
    old.refresh_from_db()
    assert old.func == "jobs.engine.maintenance.run_periodic"
