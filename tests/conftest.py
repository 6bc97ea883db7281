"""Shared fixtures: real services (a qcluster subprocess) and users. Process, port and
waiting helpers are in tests/support/processes.py (bench/ uses them too).

Everything a fixture starts it also stops. Tests needing PostgreSQL, Redis or Chromium
skip with a message when the service is missing, except with CI=true, where a missing
service fails the test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from django.conf import settings
from django.db import connection

from tests.support.processes import (
    descendants,
    forget_dead_runs,
    numbered_log_path,
    port_open,
    read_log,
    spawn,
    stop_process_group,
    wait_for,
)

pytest_plugins = [
    "tests.fakes.google_sheets",
    "tests.fakes.openai_api",
    "tests.fakes.openai_batch",
    "tests.fakes.website",
]

IN_CI = os.environ.get("CI", "").lower() == "true"
CHROMIUM = "/usr/bin/chromium"

# Engine timings for tests: short leases and slices so recovery and preemption show
# within seconds. The same values go to the worker subprocesses.
FAST_ENGINE = {
    "CONVEYOR_HEARTBEAT_SECONDS": "0.3",
    "CONVEYOR_LEASE_SECONDS": "3",
    "CONVEYOR_SLICE_SECONDS": "2",
    "CONVEYOR_RETRY_BASE_SECONDS": "0.4",
    "CONVEYOR_DISPATCH_STALE_SECONDS": "4",
    "CONVEYOR_BROKER_POLL": "0.05",
}


def require(available: bool, what: str) -> None:
    """Skip (or, in CI, fail) when a service the test needs is missing."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"CI=true but {what} is missing")
    pytest.skip(f"{what} is not available here")


def shared_database_url() -> str:
    """The URL of the test database, for subprocesses that must share it."""
    conf = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{conf['NAME']}"
    auth = conf["USER"] + (f":{conf['PASSWORD']}" if conf["PASSWORD"] else "")
    return f"postgres://{auth}@{conf['HOST'] or '127.0.0.1'}:{conf['PORT'] or 5432}/{conf['NAME']}"


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, **FAST_ENGINE}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # set for the browser tests' own thread only
    env["DATABASE_URL"] = shared_database_url()
    env["CONVEYOR_DATA_DIR"] = str(settings.DATA_DIR)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("REDIS_URL", "")
    env.update(extra)
    return env


@pytest.fixture(scope="session", autouse=True)
def fast_engine_settings() -> None:
    for name, value in FAST_ENGINE.items():
        setattr(settings, name, float(value))


@pytest.fixture(scope="session", autouse=True)
def flush_by_delete() -> Iterator[None]:
    """After each transactional test Django empties every table; on PostgreSQL it does
    so with one TRUNCATE of all of them, which recreates each table's files (~0.3 s a
    test, minutes a pass). The tables hold a few rows, so DELETE, with foreign keys
    checked at commit, empties them in a few milliseconds."""
    from django.db.backends.postgresql.operations import DatabaseOperations

    truncate = DatabaseOperations.sql_flush

    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        if reset_sequences or not tables:
            return truncate(
                self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade
            )
        deletes = "".join(f"; DELETE FROM {self.quote_name(table)}" for table in tables)
        return ["SET CONSTRAINTS ALL DEFERRED" + deletes]

    DatabaseOperations.sql_flush = sql_flush
    yield
    DatabaseOperations.sql_flush = truncate


@pytest.fixture(scope="session", autouse=True)
def close_leftover_connections(django_db_setup, django_db_blocker) -> Iterator[None]:
    """Before the test database is dropped, end sessions other threads left open
    (live relay threads, sync_to_async pools, killed subprocesses): PostgreSQL
    refuses to drop a database in use."""
    yield
    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )


@pytest.fixture(autouse=True)
def pace_in_memory_without_a_database(request) -> Iterator[None]:
    """Streams of llm rows in a test's own process share their pace in memory, unless
    the test's database is one other threads see (transactional): then through the
    database, as a deployment without Redis does (CONVEYOR_PACE_STORE), and as every
    cluster a test starts does. (Inside a test's transaction the pace's own thread
    would wait for SQLite's write lock, which that transaction holds.)"""
    marker = request.node.get_closest_marker("django_db")
    if marker and marker.kwargs.get("transaction") or "transactional_db" in request.fixturenames:
        yield
        return
    previous = settings.CONVEYOR_PACE_STORE
    settings.CONVEYOR_PACE_STORE = previous or "memory"
    yield
    settings.CONVEYOR_PACE_STORE = previous


@pytest.fixture(scope="session", autouse=True)
def forget_old_test_logs() -> None:
    """Drop subprocess logs of earlier test runs (their pid is gone)."""
    forget_dead_runs(settings.DATA_DIR / "test-logs")


def log_path(name: str) -> Path:
    """A fresh log file for a subprocess, kept under var/test-logs/<test run pid>/."""
    return numbered_log_path(settings.DATA_DIR / "test-logs" / str(os.getpid()), name)


class Cluster:
    """A real `manage.py qcluster` process tree on the test database."""

    def __init__(self, workers: int = 2, **env: str) -> None:
        self.workers = workers
        self.env = env
        self.log_path = log_path("qcluster")
        self.proc: subprocess.Popen | None = None

    def start(self, wait: bool = True) -> Cluster:
        self.proc = spawn(
            [sys.executable, "manage.py", "qcluster"],
            log_path=self.log_path,
            env=subprocess_env(CONVEYOR_WORKERS=str(self.workers), **self.env),
            append=True,
        )
        if wait:
            wait_for(
                lambda: len(self.worker_pids()) >= self.workers,
                timeout=30,
                what=f"{self.workers} workers of the cluster to report alive",
            )
        return self

    def descendants(self) -> list[psutil.Process]:
        return descendants(self.proc)

    def worker_pids(self) -> list[int]:
        """Pids of this cluster's worker processes that have reported in."""
        from jobs.models import Worker

        mine = {p.pid for p in self.descendants()}
        return [pid for pid in Worker.objects.alive().values_list("pid", flat=True) if pid in mine]

    def kill_workers(self, pids: list[int] | None = None) -> list[int]:
        """SIGKILL worker processes (the cluster's guard will start new ones)."""
        pids = pids if pids is not None else self.worker_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return pids

    def kill(self) -> None:
        """SIGKILL the whole cluster: what a lost machine looks like."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process_group(self.proc)

    def log(self) -> str:
        return read_log(self.log_path)


@pytest.fixture
def cluster_factory(transactional_db) -> Iterator[Callable[..., Cluster]]:
    started: list[Cluster] = []

    def make(workers: int = 2, start: bool = True, **env: str) -> Cluster:
        cluster = Cluster(workers=workers, **env)
        started.append(cluster)
        return cluster.start() if start else cluster

    yield make
    for cluster in started:
        cluster.stop()


@pytest.fixture
def cluster(cluster_factory) -> Cluster:
    """A running two-worker cluster on the test database."""
    return cluster_factory(workers=2)


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("alice", password="alice-password")


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user("bob", password="bob-password")


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user(
        "operator", password="operator-password", is_staff=True, is_superuser=True
    )


# The Redis database of this test run: scripts/run-tests.sh gives its two passes (SQLite,
# PostgreSQL), which run side by side, one each.
TEST_REDIS_DB = int(os.environ.get("CONVEYOR_TEST_REDIS_DB", "0"))


@pytest.fixture
def redis_url() -> str:
    require(port_open("127.0.0.1", 6379), "Redis on 127.0.0.1:6379")
    return f"redis://127.0.0.1:6379/{TEST_REDIS_DB}"
