"""The upload benchmark: from a CSV file to its processing job queued, through a real
daphne and the pages, and how much the web process grows meanwhile.

Conveyor: the file is POSTed to /sheets/upload/ on a real daphne (streamed from disk
as a browser sends it), the sheet's page answers at once with an importing sheet; the
run form is POSTed to /sheets/<id>/start/ right away (a `clean` job that waits for the
import job); a cluster imports the rows. The clock stops when the import job succeeded,
i.e. the sheet is ready and the processing job is runnable. Baselines from the same file
in the same run: the database's own bulk load of the rows (COPY on PostgreSQL,
executemany on SQLite, after csv parsing) and csv parsing alone. bench/README.md
explains the method.
"""

from __future__ import annotations

import csv
import http.client
import json
import re
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import psutil

from bench import sheetdata
from bench.common import Bench, RssSampler, Stopwatch, free_port, port_open, wait_for

MB = 1024 * 1024
CSRF = "b" * 32  # any 32-character secret works as cookie and header alike
BOUNDARY = "ConveyorBenchBoundary"


def run(bench: Bench) -> None:
    from django.contrib.auth import get_user_model
    from django.test import Client

    rows = bench.size(1_000_000, 60_000)
    path = sheetdata.cached_contacts(rows)
    size = path.stat().st_size
    # The 1M-row file (~90 MB) is over the default 50 MB upload limit: this daphne
    # accepts up to 256 MB, which is what a deployment that wants such files sets.
    env = {"CONVEYOR_MAX_UPLOAD_BYTES": str(256 * MB)}
    port = free_port()
    daphne = bench.service(
        "upload-daphne",
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
        + ["config.asgi:application"],
        ready=lambda: port_open("127.0.0.1", port),
        **env,
    )
    bench.cluster("upload", **env)
    user, _ = get_user_model().objects.get_or_create(username="bench-upload")
    client = Client()
    client.force_login(user)
    site = Site(port, client.cookies["sessionid"].value)
    site.upload_to_queued(sheetdata.cached_contacts(60_000), user)  # warm-up: lazy imports
    parse_s = csv_parse(path, rows)
    load_s = bulk_load(path, rows, user)
    before = psutil.Process(daphne.pid).memory_info().rss
    with RssSampler(daphne.pid, 0.05) as web_rss:
        conveyor = site.upload_to_queued(path, user, rows)
    grown = web_rss.peak_process - before
    bench.say(
        f"{rows:,} rows ({size / MB:.0f} MB): csv {parse_s:.2f} s, bulk load {load_s:.2f} s, "
        f"upload to queued {conveyor['seconds']:.2f} s (upload {conveyor['upload']:.2f} s, "
        f"start {conveyor['start'] * 1000:.0f} ms, import {conveyor['import']:.2f} s); "
        f"daphne grew {grown / MB:.1f} MB"
    )
    bench.detail("round", {"csv": parse_s, "bulk_load": load_s, "conveyor": conveyor})
    report(bench, rows, size, conveyor, parse_s, load_s, grown)


def report(bench: Bench, rows, size, conveyor, parse_s, load_s, grown) -> None:
    rate = rows / conveyor["seconds"]
    load_kind = "COPY" if bench.variant.database == "postgres" else "executemany"
    method = (
        f"a {rows:,}-row, {size / MB:.0f} MB CSV POSTed to /sheets/upload/ on a real daphne, "
        "the run form POSTed to /sheets/<id>/start/ at once (a clean job after the import "
        "job), a 2-worker cluster imports; the clock stops when the import job succeeded "
        "(sheet ready, processing job runnable). One round after a warm-up."
    )
    split = (
        f"{conveyor['seconds']:.1f} s: upload {conveyor['upload']:.2f} s, start "
        f"{conveyor['start'] * 1000:.0f} ms, import job {conveyor['import']:.1f} s; goal <= 10 s"
    )
    bench.figure(
        "1M-row upload to queued vs bulk load" if rows >= 1_000_000 else "upload to queued",
        rate,
        "rows/s",
        baseline=(f"csv + {load_kind} into sheet rows", rows / load_s, "rows/s"),
        comment=split,
        note=method + f" Baseline: csv.reader over the file plus the database's own bulk "
        f"load ({load_kind}) of every row as JSON into the sheet-row table, one transaction.",
    )
    bench.figure(
        "upload to queued vs csv",
        rate,
        "rows/s",
        baseline=("csv module parse of the same file", rows / parse_s, "rows/s"),
        comment="the floor of any CSV import in Python",
        note=method + " Baseline: csv.reader over the same file, decoding included.",
    )
    bench.figure(
        "web RSS growth, 1M-row upload" if rows >= 1_000_000 else "web RSS growth, upload",
        grown / MB,
        "MB",
        baseline=("the body's size", size / MB, "MB"),
        better="lower",
        comment="goal <= 100 MB; the body streams to disk, the import runs in a worker",
        note="daphne's peak RSS (sampled every 0.05 s) during the upload, the start and "
        "the import, minus its RSS before.",
    )


class Site:
    """A logged-in browser of a real daphne, speaking HTTP/1.1 with http.client."""

    def __init__(self, port: int, session: str) -> None:
        self.port = port
        self.cookie = f"sessionid={session}; csrftoken={CSRF}"

    def upload_to_queued(self, path: Path, user, rows: int | None = None) -> dict[str, float]:
        """Upload, start a clean job at once, wait for the import; seconds of each step."""
        from jobs.models import Job
        from sheets.models import Sheet

        watch = Stopwatch()
        location = self.upload(path)
        uploaded = watch.lap()
        sheet_id = int(re.search(r"/sheets/(\d+)/", location)[1])
        self.post(f"/sheets/{sheet_id}/start/", {"processor": "clean", "mode": "background"})
        started = watch.lap()
        wait_for(
            lambda: Sheet.objects.filter(pk=sheet_id, status__in=["ready", "failed"]).exists(),
            600,
            what=f"sheet {sheet_id} to be imported",
        )
        seconds = watch.stop()
        sheet = Sheet.objects.get(pk=sheet_id)
        if sheet.status != "ready" or (rows is not None and sheet.row_count != rows):
            raise RuntimeError(f"sheet {sheet_id}: {sheet.status}, {sheet.row_count} rows")
        runs = Job.objects.filter(kind="sheets.process", params__sheet_id=sheet_id)
        if not runs.exists():
            raise RuntimeError(f"no processing job was queued for sheet {sheet_id}")
        _cancel(runs)
        return {
            "seconds": seconds,
            "upload": uploaded,
            "start": started - uploaded,
            "import": seconds - started,
        }

    def upload(self, path: Path) -> str:
        head = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{path.name}"\r\nContent-Type: text/csv\r\n\r\n'
        ).encode()
        tail = f"\r\n--{BOUNDARY}--\r\n".encode()

        def body() -> Iterator[bytes]:
            yield head
            with open(path, "rb") as source:
                while chunk := source.read(MB):
                    yield chunk
            yield tail

        size = len(head) + path.stat().st_size + len(tail)
        headers = {
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
            "Content-Length": str(size),
        }
        return self._request("/sheets/upload/", body(), headers)

    def post(self, url: str, fields: dict[str, str]) -> str:
        body = urllib.parse.urlencode(fields).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        return self._request(url, iter([body]), {**headers, "Content-Length": str(len(body))})

    def _request(self, url: str, body: Iterator[bytes], headers: dict[str, str]) -> str:
        """POST; the redirect's Location, or RuntimeError for anything but a 302."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        try:
            headers = {**headers, "Cookie": self.cookie, "X-CSRFToken": CSRF}
            conn.request("POST", url, body=body, headers=headers)
            response = conn.getresponse()
            text = response.read()
        finally:
            conn.close()
        if response.status != 302:
            raise RuntimeError(f"POST {url} answered {response.status}: {text[:300]!r}")
        return response.getheader("Location", "")


def _cancel(jobs) -> None:
    """Stop the processing job: its run is not what is measured."""
    from jobs.engine.services import job_cancel

    for job in jobs:
        if not job.is_terminal:
            job_cancel(job=job)


def _reader(source):
    return csv.reader(source)


def csv_parse(path: Path, rows: int) -> float:
    with Stopwatch() as watch, open(path, encoding="utf-8", newline="") as source:
        count = sum(1 for _ in _reader(source)) - 1
    if count != rows:
        raise RuntimeError(f"csv read {count} rows, not {rows}")
    return watch.seconds


def bulk_load(path: Path, rows: int, user) -> float:
    """csv.reader plus the database's own bulk load of every row, as JSON, into a new
    sheet's rows in one transaction: COPY on PostgreSQL, executemany on SQLite."""
    from django.db import connection, transaction

    from sheets.models import Sheet, SheetRow

    quote = connection.ops.quote_name
    table = (
        f"{quote(SheetRow._meta.db_table)} "
        f"({quote('sheet_id')}, {quote('number')}, {quote('values')})"
    )
    with Stopwatch() as watch, open(path, encoding="utf-8", newline="") as source:
        reader = _reader(source)
        columns = next(reader)
        with transaction.atomic(), connection.cursor() as cursor:
            sheet = Sheet.objects.create(
                owner=user, name="baseline", source="csv", columns=columns, row_count=rows
            )
            numbered = enumerate(reader, start=1)
            if connection.vendor == "postgresql":
                with cursor.copy(f"COPY {table} FROM STDIN") as copy:
                    for number, values in numbered:
                        copy.write_row((sheet.pk, number, json.dumps(values)))
            else:
                cursor.executemany(
                    f"INSERT INTO {table} VALUES (%s, %s, %s)",
                    ((sheet.pk, number, json.dumps(values)) for number, values in numbered),
                )
    with connection.cursor() as cursor:  # not the ORM's cascade: it would load every row
        cursor.execute(
            f"DELETE FROM {quote(SheetRow._meta.db_table)} WHERE sheet_id = %s", [sheet.pk]
        )
    Sheet.objects.filter(pk=sheet.pk).delete()
    return watch.seconds
