"""The memory benchmark: does a worker's memory stay flat as sheets grow?

For a small and a 10x larger contacts sheet: a fresh cluster, `manage.py conveyor
submit FILE --processor clean` (the CLI imports the file and queues the job, as a user
would), the job runs to the end. RSS is sampled every 0.1 s: each worker process's
peak (the figure: the busiest worker) and the importing CLI process's peak. The small
sheet's peaks are the baseline; a ratio near 1 means memory does not grow with the
sheet. bench/README.md explains the method.
"""

from __future__ import annotations

import subprocess
import sys

from bench import sheetdata
from bench.common import ROOT, Bench, RssSampler, Stopwatch, wait_for

MB = 1024 * 1024


def run(bench: Bench) -> None:
    small, big = bench.size((20_000, 200_000), (2_000, 20_000))
    user = sheetdata.owner()
    measured = {rows: measure(bench, rows, user.get_username()) for rows in (small, big)}
    bench.detail("by_rows", measured)
    little, large = measured[small], measured[big]
    bench.figure(
        "worker peak RSS",
        large["worker_peak"] / MB,
        "MB",
        baseline=(f"the same for {small:,} rows", little["worker_peak"] / MB, "MB"),
        better="lower",
        comment=(
            f"{big:,} rows at {large['rate']:,.0f} rows/s; the other worker of the "
            f"cluster: {large['idle_worker'] / MB:.0f} MB"
        ),
        note=(
            f"the busiest worker's peak RSS while `clean` processes a {big:,}-row sheet, "
            f"against a {small:,}-row one; a fresh cluster for each, RSS sampled every "
            "0.1 s. A ratio near 1: memory does not grow with the sheet."
        ),
    )
    for kind in ("csv", "xlsx"):
        imports(bench, kind, user)
    bench.figure(
        "CLI importer peak RSS",
        large["importer_peak"] / MB,
        "MB",
        baseline=(f"the same for {small:,} rows", little["importer_peak"] / MB, "MB"),
        better="lower",
        comment=(
            f"{large['file_mb']:.1f} MB file; the CLI ran {large['import_s']:.1f} s, "
            "Python and Django start-up included"
        ),
        note=(
            "peak RSS of `manage.py conveyor submit FILE --processor clean` (the CLI "
            f"reads, checks, spools and inserts the rows, then queues the job) for the "
            f"{big:,}-row file, against the {small:,}-row one."
        ),
    )


def measure(bench: Bench, rows: int, username: str) -> dict[str, float]:
    """Import `rows` contacts with the CLI and run `clean` on a fresh cluster."""
    path = sheetdata.write_contacts(bench, rows)
    with bench.cluster(f"memory-{rows}") as cluster, RssSampler(cluster.pid, 0.1) as rss:
        watch = Stopwatch()
        command = [
            sys.executable,
            "manage.py",
            "conveyor",
            "submit",
            str(path),
            "--processor",
            "clean",
            "--user",
            username,
        ]
        importer = subprocess.Popen(
            command, cwd=ROOT, env=bench.space.env, stdout=subprocess.PIPE, text=True
        )
        try:
            with RssSampler(importer.pid, 0.05) as importer_rss:
                output, _ = importer.communicate(timeout=300)
        finally:
            if importer.poll() is None:
                importer.kill()
                importer.wait()
        imported = watch.lap()
        if importer.returncode != 0:
            raise RuntimeError(f"conveyor submit exited {importer.returncode}: {output}")
        job = sheetdata.wait_done(int(output.split()[-1]), timeout=120 + rows / 100)
        seconds = watch.stop() - imported
        workers = cluster.worker_pids()
    peaks = sorted((rss.peaks.get(pid, 0) for pid in workers), reverse=True)
    result = {
        "rows": rows,
        "file_mb": round(path.stat().st_size / MB, 2),
        "import_s": round(imported, 2),
        "job_s": round(seconds, 2),
        "job_run_s": round(job.run_seconds, 2),
        "rate": round(job.processed / job.run_seconds, 1),
        "worker_peak": peaks[0],
        "idle_worker": peaks[-1],
        "cluster_peak_total": rss.peak_total,
        "importer_peak": importer_rss.peak_process,
    }
    bench.say(
        f"{rows:,} rows: importer peak {result['importer_peak'] / MB:.0f} MB "
        f"({result['import_s']:.1f} s); clean in {seconds:.1f} s, busiest worker peak "
        f"{result['worker_peak'] / MB:.0f} MB, the other {result['idle_worker'] / MB:.0f} MB"
    )
    return result


def imports(bench: Bench, kind: str, user) -> None:
    """The import job's worker: peak RSS for a 10x larger file of the same rows."""
    small, big = bench.size((100_000, 1_000_000), (2_000, 20_000))
    measured = {rows: measure_import(bench, kind, rows, user) for rows in (small, big)}
    bench.detail(f"import_{kind}", measured)
    little, large = measured[small], measured[big]
    bench.figure(
        f"import worker peak RSS, {kind.upper()}",
        large["worker_peak"] / MB,
        "MB",
        baseline=(f"the same for {small:,} rows", little["worker_peak"] / MB, "MB"),
        better="lower",
        comment=(
            f"{big:,} rows, {large['file_mb']:.0f} MB file, imported in {large['seconds']:.0f} s "
            f"({big / large['seconds']:,.0f} rows/s); {small:,}: {little['seconds']:.1f} s"
        ),
        note=(
            f"the busiest worker's peak RSS while the background import job (`sheets.import`, "
            f"as a large upload gets) reads, checks, spools and stores a {big:,}-row "
            f"{kind.upper()} file, against a {small:,}-row one; a fresh cluster for each, RSS "
            "sampled every 0.1 s. XLSX written once by openpyxl (write-only) into "
            "/tmp/conveyor-bench-cache."
        ),
    )


def measure_import(bench: Bench, kind: str, rows: int, user) -> dict[str, float]:
    from django.conf import settings
    from django.core.files import File

    from sheets.models import Sheet
    from sheets.services import sheet_upload

    settings.CONVEYOR_INLINE_IMPORT_BYTES = 0  # every size through the import job
    # The 1M-row CSV (~100 MB) is over the default 50 MB limit: a deployment that takes
    # such files raises it, as this run does for itself and its cluster.
    limit = 256 * MB
    settings.CONVEYOR_MAX_UPLOAD_BYTES = limit
    path = sheetdata.cached_contacts(rows, kind)
    cluster_env = {"CONVEYOR_MAX_UPLOAD_BYTES": str(limit)}
    with (
        bench.cluster(f"import-{kind}-{rows}", **cluster_env) as cluster,
        RssSampler(cluster.pid, 0.1) as rss,
    ):
        # Read now: on SQLite, heartbeats wait for a long import's insert to commit,
        # so the workers may look stale at the end.
        workers = cluster.worker_pids()
        watch = Stopwatch()
        with open(path, "rb") as handle:
            sheet = sheet_upload(upload=File(handle, name=path.name), owner=user)
        wait_for(
            lambda: Sheet.objects.filter(pk=sheet.pk, status__in=["ready", "failed"]).exists(),
            900,
            interval=0.1,
            what=f"the import of {path.name}",
        )
        seconds = watch.stop()
    sheet.refresh_from_db()
    if sheet.status != "ready" or sheet.row_count != rows:
        raise RuntimeError(f"{path.name}: {sheet.status}, {sheet.row_count} rows")
    peak = max(rss.peaks.get(pid, 0) for pid in workers)
    bench.say(f"import {path.name}: {seconds:.1f} s, worker peak {peak / MB:.0f} MB")
    return {
        "rows": rows,
        "file_mb": path.stat().st_size / MB,
        "seconds": seconds,
        "worker_peak": peak,
    }
