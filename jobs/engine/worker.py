"""Life inside a django-q2 worker process: its identity, its heartbeat thread, and how it
stops.

On `post_spawn` each worker process starts a daemon thread that, every
CONVEYOR_HEARTBEAT_SECONDS, marks the worker alive, renews the lease of the job it
runs (and tells that job to stop soon if it was cancelled, paused or ran out of
time), starts the runs of due schedules, and now and then runs recovery and dispatch.
When the process dies the heartbeat stops with it, so its lease expires and the job is
recovered.

Force stop: a handler that reaches no checkpoint cannot be stopped from inside its
process, so when its job is force-stopped, or was cancelled (or, for a kind that
cannot resume, ran past its time limit) CONVEYOR_CANCEL_GRACE_SECONDS ago, the
heartbeat writes the job's outcome (the runner's `stop_by_force`, conditional on the
lease) and then SIGKILLs its own process; django-q2's guard starts a new worker. The
job ends once, by that write: its lease is released with it, so recovery never sees it.

Stopping is graceful: on SIGTERM (or SIGUSR1, which the cluster's sentinel sends its
workers when the cluster is asked to stop) the job in hand ends its slice at once
(in-flight work may finish for STOP_GRACE_SECONDS, then it is cancelled), commits what
is done and goes back to the queue unleased; the worker takes no new job.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import psutil
from django.conf import settings
from django.db import close_old_connections, connection
from django.dispatch import receiver
from django.utils import timezone
from django_q.signals import post_spawn

from jobs.engine import maintenance, recovery, transitions
from jobs.models import Job, Worker

if TYPE_CHECKING:
    from jobs.engine.context import JobContext

log = logging.getLogger(__name__)

MAINTENANCE_EVERY_BEATS = 3
STOP_GRACE_SECONDS = 5.0

_stopping = threading.Event()
_PROCESS = psutil.Process()


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class _Current:
    """The job context this process is running now (one slice at a time), how to end
    it by force, and since when (monotonic) its heartbeat has seen it asked to stop."""

    ctx: JobContext | None = None
    force: Callable[[str], bool] | None = None
    stop_seen_at: float | None = None
    lock = threading.Lock()


class _Interrupt:
    """The KeyboardInterrupt that a real SIGINT raised while a handler ran, if any."""

    raised: BaseException | None = None


def stopping() -> bool:
    """This worker process was asked to stop: finish the slice in hand, take no more."""
    return _stopping.is_set()


def begin_stop(signum: int | None = None, frame: object = None) -> None:
    """Signal handler: end the current slice now (gracefully, then forcefully)."""
    _stopping.set()
    with _Current.lock:
        ctx = _Current.ctx
    if ctx is not None:
        _wind_down(ctx)


def _wind_down(ctx: JobContext) -> None:
    ctx.end_slice_now()
    timer = threading.Timer(STOP_GRACE_SECONDS, ctx.stop_event.set)
    timer.daemon = True
    timer.start()


@contextlib.contextmanager
def running(ctx: JobContext, force: Callable[[str], bool] | None = None) -> Iterator[None]:
    """`ctx`'s slice runs in this process; `force(cause)` ends it without the handler
    (see `_enforce_stop`)."""
    with _Current.lock:
        _Current.ctx, _Current.force, _Current.stop_seen_at = ctx, force, None
    if stopping():
        _wind_down(ctx)
    try:
        with _interrupts_marked():
            yield
    finally:
        with _Current.lock:
            _Current.ctx, _Current.force = None, None


def _raise_interrupt(signum: int, frame: object) -> None:
    _Interrupt.raised = KeyboardInterrupt()
    raise _Interrupt.raised


@contextlib.contextmanager
def _interrupts_marked() -> Iterator[None]:
    """Where Python's own SIGINT handler is installed (a process run from a terminal,
    not a cluster's worker, which ignores SIGINT), remember the KeyboardInterrupt a
    real Ctrl-C raises, so the runner lets it stop the process instead of failing the
    job with it (`raised_by_signal`). SIGTERM never raises: `begin_stop` handles it."""
    main = threading.current_thread() is threading.main_thread()
    if not main or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    _Interrupt.raised = None
    signal.signal(signal.SIGINT, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def raised_by_signal(exc: BaseException) -> bool:
    """Whether `exc` is the interrupt of a real signal, not one the job's code raised."""
    return exc is _Interrupt.raised


def beat(first: bool = False) -> None:
    """One heartbeat: presence, lease renewal, stop signals; maintenance if due."""
    now = timezone.now()
    name = worker_name()
    with _Current.lock:
        ctx = _Current.ctx
    Worker.objects.update_or_create(
        name=name,
        defaults={
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "cluster": f"{socket.gethostname()}:{os.getppid()}",
            "last_seen_at": now,
            "current_job_id": ctx.job_id if ctx else None,
            "rss_mb": round(_PROCESS.memory_info().rss / (1024 * 1024), 1),
        },
    )
    if ctx is not None:
        requested = transitions.renew_lease(ctx.job_id, ctx.worker)
        if requested is not None:
            _enforce_stop(ctx, requested)
    if first:
        recovery.recover_dead_local_workers()
        recovery.ensure_schedule()


def _enforce_stop(ctx: JobContext, requested: str) -> None:
    """Tell the running job to stop at its next checkpoint when it was asked to (or ran
    out of time); end it by force, and this process with it: at once on a force stop,
    and when a cancel (or, for a kind that cannot resume, its time limit) has not been
    acted on within CONVEYOR_CANCEL_GRACE_SECONDS. A pause waits for a checkpoint, as
    does a resumable job past its time limit (its rows in flight are paid for)."""
    over_time = ctx.time_limit_exceeded()
    if not requested and not over_time:
        _Current.stop_seen_at = None
        return
    ctx.stop_event.set()
    if requested in (Job.Request.FORCE, Job.Request.CANCEL):
        cause = "force" if requested == Job.Request.FORCE else "cancel"
    elif over_time and not ctx.kind.resumable:
        cause = "time limit"
    else:
        return
    now = time.monotonic()
    if _Current.stop_seen_at is None:
        _Current.stop_seen_at = now
    if cause != "force" and now - _Current.stop_seen_at < settings.CONVEYOR_CANCEL_GRACE_SECONDS:
        return
    with _Current.lock:
        force = _Current.force if _Current.ctx is ctx else None
    if force is not None and force(cause):
        Worker.objects.filter(name=ctx.worker).delete()  # not a free worker for dispatch
        log.warning("worker %s: stopping itself to end job %s (%s)", ctx.worker, ctx.job_id, cause)
        os.kill(os.getpid(), signal.SIGKILL)


def _heartbeat_loop() -> None:
    interval = settings.CONVEYOR_HEARTBEAT_SECONDS
    beats = 0
    while True:
        try:
            beat(first=beats == 0)
            if beats % MAINTENANCE_EVERY_BEATS == 0:
                maintenance.maintain()  # due schedules included
            else:
                maintenance.run_upkeep_hooks()
        except Exception:  # noqa: BLE001 - the heartbeat must outlive DB hiccups
            log.exception("heartbeat failed")
            close_old_connections()
            connection.close()
        beats += 1
        time.sleep(interval)


_heartbeat_started = threading.Event()


@receiver(post_spawn)
def start_heartbeat(sender, proc_name: str = "", **kwargs) -> None:
    """Runs in each freshly spawned django-q2 worker process.

    django-q2 sends the same signal when it runs a task in the caller's own process
    (`async_task(..., sync=True)`, or from inside a worker): that process is not a
    cluster's worker. A heartbeat there would count it as a free worker for good, and
    would take over its SIGTERM.
    """
    if multiprocessing.parent_process() is None or _heartbeat_started.is_set():
        return
    _heartbeat_started.set()
    signal.signal(signal.SIGTERM, begin_stop)
    signal.signal(signal.SIGUSR1, begin_stop)
    thread = threading.Thread(target=_heartbeat_loop, name="conveyor-heartbeat", daemon=True)
    thread.start()
