"""Who rescues dead work: jobs whose worker died are put back to be resumed elsewhere.

A running job holds a lease that its worker's heartbeat renews. When the lease
expires (worker killed, machine lost) or the worker process is known dead (same host,
pid gone: what a restarted cluster finds at start-up), the job is released to resume
from its last checkpoint (a kind that cannot resume, such as a Django task, restarts
from the beginning, only as often as its retries allow). Each loss counts as an
attempt, so a "poison" job that kills every worker that runs it fails after its
attempt limit instead of looping forever.
"""

from __future__ import annotations

import logging
import socket
from datetime import UTC, datetime, timedelta

import psutil
from django.utils import timezone
from django_q.models import Schedule

from jobs.engine import transitions
from jobs.engine.db import atomic_retry, lock_scheduler
from jobs.engine.dispatch import release_stale_dispatches
from jobs.engine.errors import UnknownKind
from jobs.engine.kinds import get_kind, job_ended
from jobs.models import Job, Worker

log = logging.getLogger(__name__)
Status = Job.Status

SCHEDULE_NAME = "conveyor maintenance"
FORGET_WORKERS_AFTER = timedelta(minutes=10)


def recover() -> list[int]:
    """Recover every job whose lease expired; release stale dispatches."""
    now = timezone.now()
    expired = Job.objects.filter(status=Status.RUNNING, lease_expires_at__lt=now).exclude(
        lease_owner=""
    )
    recovered = [
        job_id
        for job_id, owner in expired.values_list("id", "lease_owner")
        if recover_job(job_id, owner, f"its worker {owner} stopped renewing the lease")
    ]
    release_stale_dispatches()
    Worker.objects.filter(last_seen_at__lt=now - FORGET_WORKERS_AFTER).delete()
    return recovered


def _process_alive(pid: int, started_at) -> bool:
    try:
        process = psutil.Process(pid)
        created = datetime.fromtimestamp(process.create_time(), tz=UTC)
    except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
        return False
    # A pid reused by a newer process is not our worker.
    return created <= started_at + timedelta(seconds=2)


def recover_dead_local_workers() -> list[int]:
    """At worker start-up: recover jobs leased by dead worker processes of this host."""
    host = socket.gethostname()
    recovered: list[int] = []
    for worker in Worker.objects.filter(host=host):
        if _process_alive(worker.pid, worker.started_at):
            continue
        for job_id in Job.objects.filter(lease_owner=worker.name).values_list("id", flat=True):
            if recover_job(job_id, worker.name, f"its worker {worker.name} died"):
                recovered.append(job_id)
        worker.delete()
    return recovered


def recover_job(job_id: int, lost_owner: str, reason: str) -> bool:
    """Put a job back to run again (from its last checkpoint, or from the beginning if
    its kind cannot resume), or fail it once its attempts are used up."""
    kind = Job.objects.filter(pk=job_id).values_list("kind", flat=True).first()
    try:
        resumable = get_kind(kind or "").resumable
    except UnknownKind:
        resumable = True
    status = atomic_retry(
        lambda: transitions.rescue(job_id, lost_owner, reason, resumable=resumable)
    )
    if status:
        log.warning("job %s recovered: %s", job_id, reason)
    if status in Job.TERMINAL:
        job_ended(kind, job_id)
    return bool(status)


def ensure_schedule() -> None:
    """The periodic backstop: maintenance every minute even when no worker is busy.

    Every worker calls this at start-up, often several at once. django-q2's
    Schedule.name is not unique, so get_or_create would race and create two rows;
    the check and the insert run under the scheduler lock instead (an advisory lock
    on PostgreSQL; SQLite's IMMEDIATE transactions already serialise writers).
    """

    def create_once() -> None:
        lock_scheduler()
        if Schedule.objects.filter(name=SCHEDULE_NAME).exists():
            return
        Schedule.objects.create(
            name=SCHEDULE_NAME,
            func="jobs.engine.maintenance.run_periodic",
            schedule_type=Schedule.MINUTES,
            minutes=1,
            repeats=-1,
        )

    atomic_retry(create_once)
