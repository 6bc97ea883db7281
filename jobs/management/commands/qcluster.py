"""`manage.py qcluster`: django-q2's own command, run with Conveyor's resilient sentinel.

The jobs app is listed before django_q in INSTALLED_APPS, so this command takes the
name; options and behaviour are django-q2's (see jobs/cluster.py for the difference).
"""

from __future__ import annotations

from django_q import cluster
from django_q.management.commands.qcluster import Command as DjangoQClusterCommand

from jobs.engine.cluster import ResilientSentinel


class Command(DjangoQClusterCommand):
    help = "Starts a django-q2 cluster whose workers may be killed at any time without stalling it."

    def handle(self, *args, **options) -> None:
        # Cluster.start() builds its sentinel from this module attribute.
        cluster.Sentinel = ResilientSentinel
        super().handle(*args, **options)
