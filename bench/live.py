"""The live benchmark: how long a committed change takes to reach an open page.

A real daphne (subprocess) and a cluster run on the run's database. A websocket client
(bench/wsclient.py) logged in with a session cookie subscribes to an entity key, as a
sheet's page does, before a `demo.count` job with that key is submitted; the job then
commits one unit every ~0.1 s. Every commit's time is the unit's `finished_at`, taken
just before its transaction, so the figure is conservative by that transaction's length.
For each commit, latency = the arrival of the first frame showing that many units or
more, minus the commit time: commits the relay coalesces count too.
Baseline: SQLite, the relay's poll interval; PostgreSQL, a bare NOTIFY -> LISTEN round
trip (psycopg, no Django) measured on the same server in the same run.
bench/README.md explains the method.
"""

from __future__ import annotations

import re
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field

from bench.common import Bench, free_port, percentile, port_open, wait_for
from bench.wsclient import Recorder

LIVE_ID = 'id="current-job-live"'
PROCESSED = re.compile(r'class="processed">(\d+)')
BARS_MS = {"sqlite": 250, "postgres": 100}  # SPEC.md "Quality bars": p95 live latency


@dataclass
class Round:
    """One job watched by `clients` websocket clients: per-commit latencies in seconds."""

    clients: int
    commits: int
    latencies: list[float] = field(default_factory=list)  # slowest client, per commit
    first_latencies: list[float] = field(default_factory=list)  # fastest client, per commit
    frames: int = 0
    missed: int = 0  # (client, commit) pairs never shown to that client
    cpu_seconds: float = 0.0  # daphne's CPU time during the round

    def p(self, q: float, first: bool = False) -> float:
        return percentile(self.first_latencies if first else self.latencies, q)

    def as_dict(self) -> dict:
        return {
            "clients": self.clients,
            "commits": self.commits,
            "frames": self.frames,
            "missed": self.missed,
            "daphne_cpu_seconds": round(self.cpu_seconds, 3),
            "p50_ms": round(self.p(50) * 1000, 1),
            "p95_ms": round(self.p(95) * 1000, 1),
            "max_ms": round(max(self.latencies) * 1000, 1),
            "first_client_p50_ms": round(self.p(50, first=True) * 1000, 1),
            "latencies_ms": [round(x * 1000, 1) for x in self.latencies],
        }


class LiveSite:
    """daphne + a cluster on the run's database, and a logged-in user's session cookie."""

    def __init__(self, bench: Bench, name: str, sockets_per_user: int | None = None) -> None:
        from django.contrib.auth import get_user_model
        from django.test import Client

        self.bench = bench
        self.port = free_port()
        self.daphne = bench.service(
            f"{name}-daphne",
            [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                "config.asgi:application",
            ],
            ready=lambda: port_open("127.0.0.1", self.port),
            # One user's many clients (fanout): above CONVEYOR_MAX_SOCKETS_PER_USER's default.
            **(
                {"CONVEYOR_MAX_SOCKETS_PER_USER": str(sockets_per_user)} if sockets_per_user else {}
            ),
        )
        self.cluster = bench.cluster(name)
        self.user, _ = get_user_model().objects.get_or_create(username="bench-live")
        client = Client()
        client.force_login(self.user)
        self.cookie = f"sessionid={client.cookies['sessionid'].value}"

    def watch(self, commits: int, delay: float, clients: int = 1) -> Round:
        """Subscribe `clients` clients to a new entity key, run a demo job on it, measure."""
        from jobs.engine.services import job_submit
        from jobs.models import DemoUnit

        key = f"bench-live-{uuid.uuid4().hex[:10]}"
        recorder = Recorder(
            "127.0.0.1",
            self.port,
            f"/ws/live/?entity={key}",
            {"Cookie": self.cookie, "Origin": f"http://127.0.0.1:{self.port}"},
            _parse,
            clients=clients,
            ready_frames=1,  # the badges sent on connect; no job yet, so no snapshot
        )
        with recorder:
            cpu_before = _cpu_seconds(self.daphne.pid)
            job = job_submit(
                kind="demo.count",
                params={"n": commits, "batch": 1, "delay": delay},
                owner=self.user,
                entity_key=key,
            )[0]
            wait_for(
                lambda: _all_saw_the_end(recorder, clients, commits),
                timeout=60 + commits * (delay + 0.5),
                interval=0.05,
                what=f"{clients} client(s) to see job {job.pk} finish",
            )
            cpu = _cpu_seconds(self.daphne.pid) - cpu_before
        if recorder.closed_early:
            raise RuntimeError(f"{recorder.closed_early} websocket(s) closed during the round")
        committed = {
            number + 1: finished.timestamp()
            for number, finished in DemoUnit.objects.filter(job_id=job.pk).values_list(
                "number", "finished_at"
            )
        }
        return _latencies(recorder.records, committed, clients, cpu)


def _parse(text: str) -> tuple[int, bool] | None:
    """(units shown, finished?) of a frame with the entity's live panel, else None."""
    if LIVE_ID not in text:
        return None
    match = PROCESSED.search(text)
    if match is None:
        return None
    return int(match[1]), 'data-status="succeeded"' in text


def _all_saw_the_end(recorder: Recorder, clients: int, commits: int) -> bool:
    done = {index for index, _, (units, _) in list(recorder.records) if units >= commits}
    return len(done) >= clients


def _cpu_seconds(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def _latencies(
    records: list[tuple[int, float, tuple[int, bool]]],
    committed: dict[int, float],
    clients: int,
    cpu: float,
) -> Round:
    """Per commit: when the first frame showing it (or later progress) reached each client."""
    shown: list[list[tuple[float, int]]] = [[] for _ in range(clients)]
    for index, arrived, (units, _) in records:
        shown[index].append((arrived, units))
    result = Round(clients=clients, commits=len(committed), frames=len(records), cpu_seconds=cpu)
    for units, at in sorted(committed.items()):
        arrivals = []
        for frames in shown:
            seen = [arrived for arrived, count in frames if count >= units]
            if seen:
                arrivals.append(min(seen) - at)
            else:
                result.missed += 1
        if len(arrivals) == clients:
            result.latencies.append(max(arrivals))
            result.first_latencies.append(min(arrivals))
    return result


def notify_round_trips(count: int, spacing: float) -> list[float]:
    """Seconds from just before a transaction with pg_notify until a LISTENing
    connection has the notification: the floor under the relay on PostgreSQL."""
    import psycopg
    from django.db import connection

    conf = connection.settings_dict
    params = {
        "dbname": conf["NAME"],
        "user": conf["USER"],
        "password": conf["PASSWORD"] or None,
        "host": conf["HOST"] or None,
        "port": conf["PORT"] or None,
        "autocommit": True,
    }
    channel = "conveyor_bench_rtt"
    received: dict[int, float] = {}
    sent: dict[int, float] = {}
    with psycopg.connect(**params) as listener, psycopg.connect(**params) as sender:
        listener.execute(f"LISTEN {channel}")

        def listen() -> None:
            for note in listener.notifies(timeout=spacing * count + 10, stop_after=count):
                received[int(note.payload)] = time.time()

        thread = threading.Thread(target=listen, daemon=True)
        thread.start()
        time.sleep(0.2)
        for i in range(count):
            sent[i] = time.time()
            with sender.transaction():
                sender.execute("SELECT pg_notify(%s, %s)", [channel, str(i)])
            time.sleep(spacing)
        thread.join(timeout=10)
    return [received[i] - sent[i] for i in sorted(received)]


def run(bench: Bench) -> None:
    from django.conf import settings

    commits = bench.size(150, 40)
    site = LiveSite(bench, "live")
    site.watch(commits=5, delay=0.05)  # warm-up: imports, templates, connections
    result = site.watch(commits=commits, delay=0.1)
    bench.say(
        f"1 client, {result.commits} commits: p50 {result.p(50) * 1000:.0f} ms, "
        f"p95 {result.p(95) * 1000:.0f} ms, max {max(result.latencies) * 1000:.0f} ms"
    )
    bench.detail("round", result.as_dict())
    database = bench.variant.database
    bar = BARS_MS[database]
    method = (
        f"{result.commits} commits of a demo job (one unit, ~0.1 s apart) watched by one "
        "websocket client through a real daphne; per commit, from the unit's finished_at "
        "(just before its transaction) to the arrival of the first frame showing it."
    )
    if database == "sqlite":
        poll = settings.CONVEYOR_RELAY_POLL_SECONDS
        baseline = ("relay poll interval (CONVEYOR_RELAY_POLL_SECONDS)", poll * 1000, "ms")
        baselines = {50: baseline, 95: baseline}
        method += " Baseline: the relay's poll interval, the wait a poll adds at most."
    else:
        trips = notify_round_trips(bench.size(200, 50), 0.01)
        bench.detail("notify_round_trips_ms", [round(t * 1000, 2) for t in trips])
        baselines = {
            q: (f"bare NOTIFY -> LISTEN, p{q}", percentile(trips, q) * 1000, "ms") for q in (50, 95)
        }
        bench.say(
            f"bare NOTIFY -> LISTEN: p50 {percentile(trips, 50) * 1000:.1f} ms, "
            f"p95 {percentile(trips, 95) * 1000:.1f} ms"
        )
        method += (
            " Baseline: a transaction with pg_notify on one psycopg connection until another "
            "LISTENing connection has it, on the same server in the same run."
        )
    for q in (50, 95):
        value = result.p(q) * 1000
        comment = ""
        if q == 95:
            verdict = "meets" if value <= bar else "misses"
            comment = f"{verdict} the bar of p95 ≤ {bar} ms"
        bench.figure(
            f"live latency p{q}",
            value,
            "ms",
            baseline=baselines[q],
            better="lower",
            comment=comment,
            note=method,
        )
