"""A django-q2 cluster that survives workers killed while idle, and stops gracefully.

An idle django-q2 worker waits for tasks inside `task_queue.get()`, holding the
queue's read lock. If that worker is killed (OOM killer, SIGKILL), the lock stays
held forever and the whole cluster stops taking tasks (django-q2#23, still open).
This sentinel watches for that state: task data waiting in the pipe while the read
lock stays held for seconds means the holder is dead (a live holder would be reading
it). It then releases the lock once so a live worker can read again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time

from django_q.cluster import Sentinel

log = logging.getLogger(__name__)

STUCK_AFTER_SECONDS = 2.0
CHECK_EVERY_SECONDS = 0.25


def _lock_is_held(lock) -> bool:
    return lock._semlock._get_value() == 0


def watch_task_queue(sentinel: Sentinel) -> None:
    """Release the task queue's read lock when a dead worker left it held."""
    queue = sentinel.task_queue
    stuck_since: float | None = None
    while not sentinel.stop_event.is_set():
        try:
            stuck = queue._reader.poll(0) and _lock_is_held(queue._rlock)
        except (OSError, ValueError):
            return  # the queue was closed: the cluster is stopping
        if not stuck:
            stuck_since = None
        elif stuck_since is None:
            stuck_since = time.monotonic()
        elif time.monotonic() - stuck_since >= STUCK_AFTER_SECONDS:
            log.warning("task queue read lock was left held by a killed worker; releasing it")
            with contextlib.suppress(ValueError):  # released meanwhile
                queue._rlock.release()
            stuck_since = None
        sentinel.stop_event.wait(CHECK_EVERY_SECONDS)


class ResilientSentinel(Sentinel):
    """django-q2's sentinel, plus a watchdog for the task queue's lock and a graceful stop:
    workers are told to end their slices (SIGUSR1) before the sentinel waits for them."""

    def stop(self) -> None:
        for process in list(self.pool):
            with contextlib.suppress(ProcessLookupError, TypeError):
                os.kill(process.pid, signal.SIGUSR1)
        super().stop()

    def spawn_cluster(self) -> None:
        super().spawn_cluster()
        if getattr(self, "_queue_watchdog", None) is None:
            self._queue_watchdog = threading.Thread(
                target=watch_task_queue, args=(self,), name="queue-watchdog", daemon=True
            )
            self._queue_watchdog.start()
