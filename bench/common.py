"""What every benchmark needs: a throwaway database, real `qcluster` processes, waiting
with deadlines, timing and RSS sampling of a process tree.

bench/run.py starts one child process per (benchmark, variant). The child enters
`workspace(variant)`, which creates a fresh database (a temp SQLite file, or a temp
PostgreSQL database), sets the environment, sets Django up on it and migrates; the
benchmark's `run(bench)` then starts clusters with `bench.cluster(...)` and records figures.
Everything is stopped, dropped and deleted on the way out.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psutil

from tests.support import processes
from tests.support.processes import (  # noqa: F401 - re-exported for the benchmarks
    ROOT,
    free_port,
    log_tail,
    port_open,
    spawn,
    stop_process_group,
)

RESULTS_DIR = ROOT / "bench" / "results"
LOG_DIR = RESULTS_DIR / "logs"

T = TypeVar("T")


class BenchTimeout(TimeoutError):
    pass


# --- waiting and timing -------------------------------------------------------


def wait_for(
    predicate: Callable[[], T], timeout: float, *, interval: float = 0.02, what: str = ""
) -> T:
    """Poll `predicate` until it returns something truthy; raise BenchTimeout after `timeout`.

    The shared `tests.support.processes.wait_for`, with a finer default interval (a wait
    is often part of what is timed) and the benchmarks' own exception."""
    return processes.wait_for(predicate, timeout, interval, what, error=BenchTimeout)


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (0-100) by linear interpolation, e.g. p50 / p95 of latencies."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


class Stopwatch:
    """Wall-clock seconds since creation (monotonic); `lap()` reads, `stop()` freezes."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.stopped: float | None = None

    @property
    def seconds(self) -> float:
        return (self.stopped or time.perf_counter()) - self.started

    def lap(self) -> float:
        return self.seconds

    def stop(self) -> float:
        self.stopped = time.perf_counter()
        return self.seconds

    def __enter__(self) -> Stopwatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- memory -------------------------------------------------------------------


def tree_rss(pid: int) -> dict[int, int]:
    """Resident set size in bytes of `pid` and each of its descendants (gone ones skipped)."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {}
    sizes: dict[int, int] = {}
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            sizes[process.pid] = process.memory_info().rss
    return sizes


class RssSampler:
    """Samples a process tree's RSS in a thread: peak of the sum, and peak of any one process.

    with RssSampler(cluster.pid) as rss:
        ...
    rss.peak_total, rss.peak_process, rss.samples  # bytes; samples: (seconds, total)
    rss.peaks[pid]  # bytes: each process's own peak (e.g. per worker: cluster.worker_pids())
    """

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_total = 0
        self.peak_process = 0
        self.peaks: dict[int, int] = {}
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._started = time.monotonic()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        sizes = tree_rss(self.pid)
        if not sizes:
            return
        total = sum(sizes.values())
        for pid, size in sizes.items():
            self.peaks[pid] = max(self.peaks.get(pid, 0), size)
        self.peak_total = max(self.peak_total, total)
        self.peak_process = max(self.peak_process, max(sizes.values()))
        self.samples.append((round(time.monotonic() - self._started, 3), total))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


# --- services and variants -------------------------------------------------------


def postgres_reachable(url: str) -> str:
    """'' when a PostgreSQL server answers at `url`, else why not."""
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=3).close()
    except Exception as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ""


def redis_reachable(url: str) -> str:
    """'' when a Redis server answers at `url`, else why not."""
    import redis

    try:
        redis.from_url(url, socket_connect_timeout=2).ping()
    except Exception as exc:
        return str(exc) or type(exc).__name__
    return ""


@dataclass(frozen=True)
class Variant:
    """Which database and broker a run uses. `postgres_url` names a server (any database
    the user may connect to); the run creates and drops its own database there."""

    name: str
    database: str  # "sqlite" | "postgres"
    broker: str  # "orm" | "redis"
    postgres_url: str = ""
    redis_url: str = ""

    @property
    def label(self) -> str:
        database = {"sqlite": "SQLite", "postgres": "PostgreSQL"}[self.database]
        broker = {"orm": "ORM broker", "redis": "Redis broker"}[self.broker]
        return f"{database}, {broker}"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Variant:
        return cls(**json.loads(text))


VARIANT_NAMES = ("sqlite", "sqlite+redis", "postgres", "postgres+redis")


def make_variant(name: str, postgres_url: str, redis_url: str) -> Variant:
    database, _, broker = name.partition("+")
    return Variant(
        name=name,
        database=database,
        broker=broker or "orm",
        postgres_url=postgres_url if database == "postgres" else "",
        redis_url=redis_url if broker == "redis" else "",
    )


# --- the throwaway workspace ---------------------------------------------------------


@dataclass
class Workspace:
    """One run's private world: data dir, database, queue name and the env for subprocesses."""

    variant: Variant
    data_dir: Path
    database_url: str
    queue: str
    env: dict[str, str] = field(default_factory=dict)


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _postgres_admin(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)


def _drop_postgres_database(admin_url: str, name: str) -> None:
    try:
        _postgres_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except Exception:  # PostgreSQL < 13 has no FORCE
        _postgres_admin(
            admin_url,
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'",
        )
        _postgres_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}"')


def _forget_redis_keys(url: str, queue: str) -> None:
    import redis

    client = redis.from_url(url)
    keys = list(client.scan_iter(match=f"django_q:{queue}:*"))
    if keys:
        client.delete(*keys)


@contextlib.contextmanager
def workspace(variant: Variant, workers: int) -> Iterator[Workspace]:
    """A fresh database with Django set up on it in this process; removed on exit.

    Call once per process, before anything imports Django models: settings are read
    from the environment this sets.
    """
    token = f"{os.getpid()}"
    data_dir = Path(tempfile.mkdtemp(prefix=f"conveyor-bench-{token}-"))
    queue = f"bench-{token}"
    pg_name = f"bench_conveyor_{token}"
    if variant.database == "postgres":
        _postgres_admin(variant.postgres_url, f'CREATE DATABASE "{pg_name}"')
        database_url = _with_database(variant.postgres_url, pg_name)
    else:
        database_url = f"sqlite:///{data_dir / 'conveyor.sqlite3'}"
    env = {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "CONVEYOR_DATA_DIR": str(data_dir),
        "DATABASE_URL": database_url,
        "REDIS_URL": variant.redis_url,
        "CONVEYOR_QUEUE": queue,
        "CONVEYOR_WORKERS": str(workers),
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update(env)
    space = Workspace(variant, data_dir, database_url, queue, {**os.environ, **env})
    try:
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0, interactive=False)
        yield space
    finally:
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        if variant.database == "postgres":
            _drop_postgres_database(variant.postgres_url, pg_name)
        if variant.redis_url:
            with contextlib.suppress(Exception):
                _forget_redis_keys(variant.redis_url, queue)
        shutil.rmtree(data_dir, ignore_errors=True)


# --- processes and clusters -------------------------------------------------------------------


class Service:
    """A subprocess of the repository (own process group) on the workspace's database.

    `argv` runs from the repository root with the workspace environment plus `env`;
    `ready()` says when it is up. Output goes to bench/results/logs/<variant>-<name>.log.
    Use it for daphne, a fake upstream server, a load generator; `Cluster` is one.
    """

    def __init__(
        self,
        space: Workspace,
        name: str,
        argv: list[str],
        *,
        ready: Callable[[], bool] | None = None,
        **env: str,
    ) -> None:
        self.space = space
        self.name = name
        self.argv = argv
        self.env = {**space.env, **env}
        self._ready = ready
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{space.variant.name}-{name}.log"
        self.proc: subprocess.Popen | None = None
        self._stopped = False

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} not started"
        return self.proc.pid

    def ready(self) -> bool:
        return self._ready() if self._ready else True

    def start(self, timeout: float = 60.0) -> Service:
        """Start the process and wait until `ready()` (or fail if it exits first)."""
        self.proc = spawn(self.argv, log_path=self.log_path, env=self.env)
        wait_for(
            lambda: self.proc.poll() is not None or self.ready(),
            timeout,
            interval=0.1,
            what=f"{self.name} to be ready",
        )
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited at start:\n{self.log_tail()}")
        return self

    def descendants(self) -> list[psutil.Process]:
        return processes.descendants(self.proc)

    def stop(self, grace: float = 5.0) -> None:
        """Stop the process group; calling it again does nothing."""
        if self.proc is not None and not self._stopped:
            stop_process_group(self.proc, grace)
            self._stopped = True

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Cluster(Service):
    """A real `manage.py qcluster` process tree, ready once all its workers have sent a
    heartbeat. `env` overrides the workspace environment (e.g. CONVEYOR_SLICE_SECONDS="0").
    """

    def __init__(self, space: Workspace, name: str, workers: int, **env: str) -> None:
        env = {"CONVEYOR_WORKERS": str(workers), **env}
        super().__init__(space, name, [sys.executable, "manage.py", "qcluster"], **env)
        self.workers = workers
        self._seen_workers: set[int] = set()

    def ready(self) -> bool:
        return len(self.worker_pids()) >= self.workers

    def worker_pids(self) -> list[int]:
        """Worker processes of this cluster that have reported through their heartbeat."""
        from jobs.models import Worker

        mine = {process.pid for process in self.descendants()}
        pids = [pid for pid in Worker.objects.alive().values_list("pid", flat=True) if pid in mine]
        self._seen_workers.update(pids)
        return pids

    def stop(self, grace: float = 5.0) -> None:
        """Stop the tree and forget its workers, so dispatch does not count them meanwhile."""
        super().stop(grace)
        from jobs.models import Worker

        Worker.objects.filter(pid__in=self._seen_workers).delete()


# --- what a benchmark gets ---------------------------------------------------------


@dataclass
class Figure:
    """One measured value next to its baseline from the same run; ratio = value / baseline."""

    name: str
    value: float
    unit: str
    baseline_name: str
    baseline_value: float
    baseline_unit: str
    better: str = "higher"  # which direction of `value` is good: "higher" | "lower"
    note: str = ""  # how it was measured: the same text for every variant
    comment: str = ""  # a short reading of this variant's numbers, shown in the table

    @property
    def ratio(self) -> float | None:
        return self.value / self.baseline_value if self.baseline_value else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


class Bench:
    """Handed to a benchmark's `run(bench)`: its variant, size, clusters and recorder."""

    def __init__(
        self, space: Workspace, *, quick: bool, workers: int, env: dict[str, str] | None = None
    ) -> None:
        self.space = space
        self.env = env or {}  # given on the command line (--env): applies to every cluster
        self.variant = space.variant
        self.quick = quick
        self.workers = workers
        self.figures: list[Figure] = []
        self.details: dict[str, Any] = {}
        self._clusters: list[Service] = []

    def size(self, full: T, quick: T) -> T:
        """The full-run or the --quick value of a parameter."""
        return quick if self.quick else full

    def cluster(self, name: str, *, workers: int | None = None, **env: str) -> Cluster:
        """Start a cluster (stopped by the caller, or at the end of the run at the latest)."""
        env = {**env, **self.env}
        cluster = Cluster(self.space, name, workers or self.workers, **env)
        self._clusters.append(cluster)
        self.say(f"starting cluster {name} ({cluster.workers} workers{_env_text(env)})")
        return cluster.start()

    def service(
        self, name: str, argv: list[str], *, ready: Callable[[], bool] | None = None, **env: str
    ) -> Service:
        """Start any other process (daphne, a fake server) on this run's database."""
        service = Service(self.space, name, argv, ready=ready, **env)
        self._clusters.append(service)
        self.say(f"starting {name}: {' '.join(argv)}")
        return service.start()

    def stop_clusters(self) -> None:
        """Stop every cluster and service still running (the runner calls this at the end)."""
        for service in reversed(self._clusters):
            service.stop()

    def figure(
        self,
        name: str,
        value: float,
        unit: str,
        *,
        baseline: tuple[str, float, str],
        better: str = "higher",
        note: str = "",
        comment: str = "",
    ) -> Figure:
        """Record a figure with its baseline (label, value, unit) measured in this run."""
        figure = Figure(name, value, unit, *baseline, better=better, note=note, comment=comment)
        self.figures.append(figure)
        return figure

    def detail(self, key: str, value: Any) -> None:
        """Extra numbers for the JSON file (samples, counts), not shown in the table."""
        self.details[key] = value

    def say(self, message: str) -> None:
        print(f"  [{self.variant.name}] {message}", flush=True)


def _env_text(env: dict[str, str]) -> str:
    return "".join(f", {key}={value}" for key, value in env.items())
