"""One "conveyor maintenance" schedule however many workers start at once
(jobs/recovery.py::ensure_schedule), and the migration that removes duplicates
an earlier race left behind."""

from __future__ import annotations

import importlib
import threading

import pytest
from django.apps import apps
from django.db import connection
from django_q.models import Schedule

from jobs.engine.recovery import SCHEDULE_NAME, ensure_schedule
from tests.support.processes import wait_for

cleanup = importlib.import_module("jobs.migrations.0004_one_maintenance_schedule")


def maintenance_schedules() -> list[int]:
    return list(Schedule.objects.filter(name=SCHEDULE_NAME).values_list("pk", flat=True))


def make_schedule(name: str = SCHEDULE_NAME) -> Schedule:
    return Schedule.objects.create(
        name=name, func="jobs.engine.maintenance.run_periodic", schedule_type=Schedule.MINUTES
    )


@pytest.mark.cluster
@pytest.mark.django_db(transaction=True)
def test_two_clusters_starting_at_once_create_one_schedule(cluster_factory):
    assert maintenance_schedules() == []
    clusters = [cluster_factory(workers=2, start=False) for _ in range(2)]
    for cluster in clusters:
        cluster.start(wait=False)
    for cluster in clusters:
        wait_for(lambda c=cluster: len(c.worker_pids()) >= 2, timeout=30, what="workers alive")
    assert len(maintenance_schedules()) == 1


@pytest.mark.django_db(transaction=True)
def test_many_threads_ensuring_the_schedule_at_once_create_one():
    start = threading.Barrier(6)

    def ensure() -> None:
        start.wait(timeout=10)
        try:
            ensure_schedule()
        finally:
            connection.close()

    threads = [threading.Thread(target=ensure) for _ in range(start.parties)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(maintenance_schedules()) == 1


@pytest.mark.django_db
def test_ensure_schedule_keeps_the_existing_schedule():
    existing = make_schedule()
    ensure_schedule()
    ensure_schedule()
    assert maintenance_schedules() == [existing.pk]


@pytest.mark.django_db
def test_migration_deletes_duplicate_schedules_keeping_the_oldest():
    oldest, *duplicates = [make_schedule() for _ in range(3)]
    other = make_schedule(name="someone else's schedule")
    twin = make_schedule(name="someone else's schedule")

    cleanup.delete_duplicate_schedules(apps, schema_editor=None)

    assert maintenance_schedules() == [oldest.pk]
    assert duplicates and not Schedule.objects.filter(pk__in=[d.pk for d in duplicates]).exists()
    assert Schedule.objects.filter(pk__in=[other.pk, twin.pk]).count() == 2, "not ours: kept"
