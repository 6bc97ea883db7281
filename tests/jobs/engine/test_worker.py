"""A worker process's identity and heartbeat (jobs/engine/worker.py). Real workers are
exercised by the cluster tests (test_dispatch, test_recovery, tests/reliability)."""

from __future__ import annotations

import signal
import threading

import pytest
from django_q.tasks import async_task

from jobs.models import Worker

pytestmark = pytest.mark.django_db


def test_a_task_run_in_the_callers_process_does_not_make_it_a_worker():
    """django-q2 runs a `sync=True` task through its worker loop in the calling process
    (a web server, a script): that process must not start beating as a worker, nor lose
    its own SIGTERM handling."""
    handler = signal.getsignal(signal.SIGTERM)

    async_task("math.floor", 1.5, sync=True)

    assert "conveyor-heartbeat" not in [thread.name for thread in threading.enumerate()]
    assert signal.getsignal(signal.SIGTERM) == handler
    assert not Worker.objects.exists()
