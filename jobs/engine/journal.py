"""Announce that a job changed, inside the transaction that changed it.

PostgreSQL: `pg_notify` (delivered only if the transaction commits). SQLite: a row
in the `JobChange` feed that the relay polls. Either way the live relay learns of a
change only once it is committed, so pages never show uncommitted work.
"""

from __future__ import annotations

from django.db import connection

from jobs.models import JobChange

CHANNEL = "conveyor_jobs"


def announce(job_id: int) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, str(job_id)])
    else:
        JobChange.objects.create(job_id=job_id)
