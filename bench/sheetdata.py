"""Spreadsheets for the sheet benchmarks: a deterministic contacts CSV of any size, its
import, and running a `sheets.process` job over it from submit to stored results.

The rows look like a real contact list (name, e-mail, phone, website, company, city),
with a few per cent duplicate e-mails and invalid values, so `clean` does its real work.
"""

from __future__ import annotations

import csv
import io
import os
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench.common import Bench, Stopwatch, wait_for

COLUMNS = ["name", "email", "phone", "website", "company", "city"]
FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Ken", "Frances", "John", "Lin"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Thompson", "Allen"]
CITIES = ["  Paris", "Berlin ", "new york", "São Paulo", "Zürich", "Tokyo", "Lagos", "Lima"]
COMPANIES = ["Acme Corp", "  Globex", "Initech", "Umbrella  Ltd", "Hooli", "Vandelay"]


def contact_rows(count: int, seed: int = 1) -> Iterator[list[str]]:
    """`count` data rows (no header), the same for the same seed."""
    pick = random.Random(seed)
    for number in range(1, count + 1):
        first, last = pick.choice(FIRST), pick.choice(LAST)
        # ~3 % repeat an earlier e-mail (duplicates), ~2 % are invalid.
        who = pick.randrange(1, number + 1) if pick.random() < 0.03 else number
        roll = pick.random()
        email = f"{first}.{last}{who}@Example.com" if roll > 0.02 else f"{first}{who}@@bad"
        phone = f"+1 415 555 {number % 10000:04d}" if roll > 0.01 else "12"
        website = f"www.{last.lower()}{number % 997}.example.org"
        yield [
            f" {first}  {last} ",
            email,
            phone,
            website,
            pick.choice(COMPANIES),
            pick.choice(CITIES),
        ]


def contacts_csv(count: int, seed: int = 1) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(contact_rows(count, seed))
    return buffer.getvalue().encode()


def write_contacts(bench: Bench, count: int) -> Path:
    """The CSV of `count` rows as a file in the run's data directory."""
    path = bench.space.data_dir / f"contacts-{count}.csv"
    if not path.exists():
        path.write_bytes(contacts_csv(count))
    return path


# Files kept between runs: a 1,000,000-row XLSX takes minutes to write with openpyxl.
CACHE_DIR = Path(tempfile.gettempdir()) / "conveyor-bench-cache"


def cached_contacts(count: int, kind: str = "csv") -> Path:
    """The contacts file of `count` rows as CSV or XLSX (openpyxl write-only, shared
    strings as Excel writes them), generated once into CACHE_DIR and reused by later runs."""
    CACHE_DIR.mkdir(exist_ok=True)
    path = CACHE_DIR / f"contacts-{count}.{kind}"
    if path.exists():
        return path
    partial = path.with_suffix(f".{os.getpid()}.part")
    if kind == "csv":
        with open(partial, "w", newline="") as out:
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(COLUMNS)
            writer.writerows(contact_rows(count))
    else:
        import openpyxl

        book = openpyxl.Workbook(write_only=True)
        sheet = book.create_sheet("contacts")
        sheet.append(COLUMNS)
        for row in contact_rows(count):
            sheet.append(row)
        book.save(partial)
    partial.rename(path)  # whole files only, even if a run is interrupted
    return path


def owner():
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(username="bench")
    return user


def import_contacts(bench: Bench, count: int, user=None):
    """A Sheet of `count` contact rows, imported as an upload would be."""
    from sheets.io.importing import sheet_import
    from sheets.io.sources import open_upload

    path = write_contacts(bench, count)
    table = open_upload(path, path.name)
    with Stopwatch() as watch:
        sheet = sheet_import(table=table, owner=user or owner(), name=path.name)
    bench.say(f"imported {count:,} rows in {watch.seconds:.1f} s")
    return sheet


def submit(sheet, processor: str, options: dict | None = None, user=None):
    from sheets.services import sheet_job_submit

    return sheet_job_submit(
        sheet=sheet, owner=user or owner(), processor=processor, options=options or {}
    )[0]


def wait_done(job_id: int, timeout: float, interval: float = 0.05):
    """Wait until the job ends; raise unless it succeeded with no row errors unexpected."""
    from jobs.models import Job

    wait_for(
        lambda: Job.objects.filter(pk=job_id, status__in=Job.TERMINAL).exists(),
        timeout,
        interval=interval,
        what=f"job {job_id} to finish",
    )
    job = Job.objects.get(pk=job_id)
    if job.status != Job.Status.SUCCEEDED:
        raise RuntimeError(f"job {job_id} ended {job.status}: {job.error or job.message}")
    return job


def run_job(
    sheet, processor: str, options: dict | None = None, *, timeout: float, user=None
) -> tuple[float, object]:
    """Submit a job over the whole sheet; seconds from submit until it succeeded, with
    every row's result stored (checked), and the finished Job."""
    from sheets.models import RowResult

    watch = Stopwatch()
    job = submit(sheet, processor, options, user)
    job = wait_done(job.pk, timeout)
    seconds = watch.stop()
    stored = RowResult.objects.filter(job_id=job.pk).count()
    if stored != sheet.row_count:
        raise RuntimeError(f"job {job.pk} stored {stored} results for {sheet.row_count} rows")
    return seconds, job
