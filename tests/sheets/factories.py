"""Make sheets from in-memory rows, and run sheet jobs to the end in-process."""

from __future__ import annotations

import csv
import io

from django.core.files.uploadedfile import SimpleUploadedFile

from jobs.engine.runner import run_one_slice
from jobs.models import Job
from sheets.io.importing import sheet_from_upload
from sheets.models import Sheet


def csv_upload(rows: list[list[str]], name: str = "data.csv") -> SimpleUploadedFile:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return SimpleUploadedFile(name, buffer.getvalue().encode(), "text/csv")


def make_sheet(owner, rows: list[list[str]], name: str = "data.csv") -> Sheet:
    """A sheet from rows (the first is the header)."""
    return sheet_from_upload(upload=csv_upload(rows, name), owner=owner)


def run_to_end(job: Job, max_slices: int = 200) -> Job:
    for _ in range(max_slices):
        Job.objects.filter(pk=job.pk).update(run_after=None)
        run_one_slice(job.pk)
        job = Job.objects.get(pk=job.pk)
        if job.is_terminal or job.status == Job.Status.PAUSED:
            return job
    raise AssertionError(f"job still {job.status} after {max_slices} slices")
