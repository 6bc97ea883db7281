"""The fanout benchmark: one commit, 200 open pages on one web process.

The same set-up as bench/live.py (a real daphne subprocess, a cluster, a demo job
committing one unit at a time), watched first by one websocket client, then by 200
clients all subscribed to the same job's entity key (same user, as 200 open tabs of
it; each also receives its user group's badges and toasts). Per commit: the time until
the last of the clients has a frame showing it, against the one-client latency of the
same run. bench/README.md explains the method.
"""

from __future__ import annotations

from bench.common import Bench
from bench.live import LiveSite

DELAY = 0.2  # seconds between a job's commits: a busy sheet job's pace


def run(bench: Bench) -> None:
    clients = bench.size(200, 50)
    commits = bench.size(60, 20)
    site = LiveSite(bench, "fanout", sockets_per_user=clients + 10)
    site.watch(commits=5, delay=0.05)  # warm-up
    one = site.watch(commits=commits, delay=DELAY)
    bench.say(_text(one))
    many = site.watch(commits=commits, delay=DELAY, clients=clients)
    bench.say(_text(many))
    if many.missed:
        raise RuntimeError(f"{many.missed} (client, commit) pairs were never shown")
    bench.detail("one_client", one.as_dict())
    bench.detail("many_clients", many.as_dict())
    frames_per_client = many.frames / clients
    cpu_ms = many.cpu_seconds / max(1, many.frames) * 1000
    note = (
        f"{many.commits} commits of a demo job ({DELAY:g} s apart) watched by {clients} "
        "websocket clients on one daphne (the same user, all subscribed to the job's entity "
        "key, CONVEYOR_MAX_SOCKETS_PER_USER raised for it); per commit, until the LAST client "
        "has a frame showing it. Baseline: one client "
        "watching an identical job in the same run. The clients run on one event loop in "
        "the benchmark process, on the same 2 CPUs as daphne and the cluster."
    )
    for q in (50, 95):
        bench.figure(
            f"{clients} clients, last frame p{q}",
            many.p(q) * 1000,
            "ms",
            baseline=(f"1 client p{q}", one.p(q) * 1000, "ms"),
            better="lower",
            comment=(
                f"first client p{q} {many.p(q, first=True) * 1000:.0f} ms"
                if q == 50
                else f"daphne CPU {cpu_ms:.2f} ms a frame; {frames_per_client:.0f} frames "
                f"a client for {many.commits} commits"
            ),
            note=note,
        )


def _text(result) -> str:
    return (
        f"{result.clients} client(s), {result.commits} commits: last client p50 "
        f"{result.p(50) * 1000:.0f} ms, p95 {result.p(95) * 1000:.0f} ms; first client p50 "
        f"{result.p(50, first=True) * 1000:.0f} ms; daphne CPU {result.cpu_seconds:.2f} s "
        f"for {result.frames} frames"
    )
