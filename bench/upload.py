"""The upload benchmark: from the bytes of a CSV file to a queued job, through the pages.

Conveyor: POST the file to /sheets/upload/ (multipart parsing, the upload spooled to a
temporary file, encoding and dialect detection, row checks, the import) and POST
/sheets/<id>/start/ (a queued `clean` job), with django.test.Client in this process.
Baselines from the same bytes in the same run: Python's csv module alone, and csv
plus one executemany of the rows into the sheet-row table (what any importer that
stores rows must at least do). bench/README.md explains the method.
"""

from __future__ import annotations

import csv
import io
import re
from statistics import median

from bench import sheetdata
from bench.common import Bench, Stopwatch

BOUNDARY = "ConveyorBenchBoundary"


def run(bench: Bench) -> None:
    from django.conf import settings
    from django.test import Client

    rows = bench.size(100_000, 10_000)
    data = sheetdata.contacts_csv(rows)
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    user = sheetdata.owner()
    client = Client()
    client.force_login(user)
    upload_to_queued(client, sheetdata.contacts_csv(200))  # warm-up: imports, templates
    parse_seconds, insert_seconds, conveyor = [], [], []
    for _ in range(bench.size(3, 1)):
        parse_seconds.append(csv_parse(data, rows))
        insert_seconds.append(csv_insert(data, rows, user))
        conveyor.append(upload_to_queued(client, data, rows))
        bench.say(
            f"{rows:,} rows ({len(data) / 1e6:.1f} MB): csv {parse_seconds[-1]:.2f} s, "
            f"csv + insert {insert_seconds[-1]:.2f} s, upload to queued job "
            f"{conveyor[-1]['seconds']:.2f} s (upload {conveyor[-1]['upload']:.2f} s, "
            f"start {conveyor[-1]['start'] * 1000:.0f} ms)"
        )
    bench.detail(
        "rounds", {"csv": parse_seconds, "csv_insert": insert_seconds, "conveyor": conveyor}
    )
    seconds = median(r["seconds"] for r in conveyor)
    upload = median(r["upload"] for r in conveyor)
    start = median(r["start"] for r in conveyor)
    rate = rows / seconds
    rounds = len(conveyor)
    method = (
        f"a {rows:,}-row, {len(data) / 1e6:.1f} MB CSV posted to /sheets/upload/ and a clean "
        "job started with /sheets/<id>/start/ (django.test.Client, in process; no cluster, "
        f"so the job stays queued); median of {rounds} round(s), alternating with the baseline."
    )
    bench.figure(
        "upload to queued vs csv",
        rate,
        "rows/s",
        baseline=("csv module parse of the same bytes", rows / median(parse_seconds), "rows/s"),
        comment=f"{seconds:.2f} s: upload and import {upload:.2f} s, start the job "
        f"{start * 1000:.0f} ms",
        note=method + " Baseline: csv.reader over the same bytes, decoding included.",
    )
    bench.figure(
        "upload to queued vs insert",
        rate,
        "rows/s",
        baseline=("csv + executemany into sheet rows", rows / median(insert_seconds), "rows/s"),
        comment="the rest is detection, checks, spooling and the HTTP request",
        note=method + " Baseline: csv.reader plus one executemany of the rows into the "
        "sheet-row table in one transaction, as JSON: what storing the rows costs at least.",
    )


def upload_to_queued(client, data: bytes, rows: int | None = None) -> dict[str, float]:
    """POST the file, then start a job on the new sheet; seconds of each step."""
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.test.client import MULTIPART_CONTENT, encode_multipart

    from jobs.models import Job
    from sheets.models import Sheet

    # Encoded beforehand: building the request body is the browser's work, not ours.
    body = encode_multipart(
        BOUNDARY, {"file": SimpleUploadedFile("contacts.csv", data, "text/csv")}
    )
    content_type = MULTIPART_CONTENT.replace("BoUnDaRyStRiNg", BOUNDARY)
    watch = Stopwatch()
    response = client.post("/sheets/upload/", body, content_type=content_type)
    uploaded = watch.lap()
    if response.status_code != 302:
        raise RuntimeError(f"upload answered {response.status_code}: {response.content[:300]!r}")
    sheet_id = int(re.search(r"/sheets/(\d+)/", response["Location"])[1])
    response = client.post(f"/sheets/{sheet_id}/start/", {"processor": "clean"})
    seconds = watch.stop()
    if response.status_code != 302:
        raise RuntimeError(f"start answered {response.status_code}: {response.content[:300]!r}")
    sheet = Sheet.objects.get(pk=sheet_id)
    if rows is not None and sheet.row_count != rows:
        raise RuntimeError(f"the upload stored {sheet.row_count} rows, not {rows}")
    job = Job.objects.filter(entity_key=f"sheet:{sheet_id}").get()
    if job.status != Job.Status.QUEUED:
        raise RuntimeError(f"the started job is {job.status}, not queued")
    return {"seconds": seconds, "upload": uploaded, "start": seconds - uploaded}


def _reader(data: bytes):
    return csv.reader(io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", newline=""))


def csv_parse(data: bytes, rows: int) -> float:
    with Stopwatch() as watch:
        count = sum(1 for _ in _reader(data)) - 1
    if count != rows:
        raise RuntimeError(f"csv read {count} rows, not {rows}")
    return watch.seconds


def csv_insert(data: bytes, rows: int, user) -> float:
    """csv.reader plus one executemany of every row as JSON into a new sheet's rows."""
    from django.db import connection, transaction

    from sheets.models import Sheet, SheetRow

    values_field = SheetRow._meta.get_field("values")
    quote = connection.ops.quote_name
    sql = (
        f"INSERT INTO {quote(SheetRow._meta.db_table)} "
        f"({quote('sheet_id')}, {quote('number')}, {quote('values')}) VALUES (%s, %s, %s)"
    )
    with Stopwatch() as watch:
        reader = _reader(data)
        columns = next(reader)
        with transaction.atomic():
            sheet = Sheet.objects.create(
                owner=user, name="baseline", source="csv", columns=columns, row_count=rows
            )
            params = [
                (sheet.pk, number, values_field.get_db_prep_save(values, connection))
                for number, values in enumerate(reader, start=1)
            ]
            with connection.cursor() as cursor:
                cursor.executemany(sql, params)
    Sheet.objects.filter(pk=sheet.pk).delete()
    return watch.seconds
