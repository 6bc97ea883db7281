"""Imported spreadsheets: one Sheet per upload or Google Sheet, one SheetRow per data row.

Rows are copied in once by `sheets.io.importing` and never change afterwards, so a job
can read any slice of them by row number (`sheet.rows.filter(number__gte=a,
number__lt=b)`) and redo a slice after a crash against exactly the same input.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from jobs.models import OwnedQuerySet


class Sheet(models.Model):
    class Source(models.TextChoices):
        CSV = "csv", "CSV file"
        XLSX = "xlsx", "Excel workbook"
        GSHEET = "gsheet", "Google Sheet"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sheets"
    )
    name = models.CharField(max_length=255)
    source = models.CharField(max_length=8, choices=Source.choices)
    google_id = models.CharField(max_length=200, blank=True, help_text="Google spreadsheet id.")
    worksheet = models.CharField(
        max_length=255, blank=True, help_text="Worksheet (tab) read from an XLSX or Google Sheet."
    )
    encoding = models.CharField(max_length=40, blank=True, help_text="Detected CSV encoding.")
    delimiter = models.CharField(max_length=4, blank=True, help_text="Detected CSV delimiter.")
    columns = models.JSONField(default=list, help_text="Header names, in column order.")
    row_count = models.PositiveIntegerField(default=0, help_text="Data rows (header excluded).")
    status = models.CharField(
        max_length=10,
        choices=[("ready", "ready"), ("importing", "importing"), ("failed", "import failed")],
        default="ready",
        help_text="Large uploads are imported by a background job: rows appear only when "
        "all are stored.",
    )
    import_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    seen_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When its owner last opened its page (or its results): later results "
        "are marked new on the sheets list. Never opened: since its import.",
    )

    objects = OwnedQuerySet.as_manager()  # visible_to(user): own sheets; staff all

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["owner", "-created_at"], name="sheet_owner_created_idx")]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("sheets:detail", args=[self.pk])

    @property
    def is_ready(self) -> bool:
        return self.status == "ready"


class SheetRow(models.Model):
    """One data row; `values` is aligned with `sheet.columns` (same length, strings)."""

    # No separate index on sheet_id: the unique (sheet, number) index leads with it.
    sheet = models.ForeignKey(Sheet, on_delete=models.CASCADE, related_name="rows", db_index=False)
    number = models.PositiveIntegerField(help_text="1-based data row number (header excluded).")
    values = models.JSONField(default=list)

    class Meta:
        ordering = ["sheet", "number"]
        constraints = [
            models.UniqueConstraint(fields=["sheet", "number"], name="sheetrow_unique_number")
        ]

    def __str__(self) -> str:
        return f"row {self.number} of sheet {self.sheet_id}"


class RowResult(models.Model):
    """The outcome of one row in one job: its outputs, or the error that failed it.

    Unique per (job, row_number) and written with an upsert in the same transaction
    as the job's cursor, so a slice redone after a crash never duplicates a result.
    """

    job = models.ForeignKey("jobs.Job", on_delete=models.CASCADE, related_name="row_results")
    sheet = models.ForeignKey(Sheet, on_delete=models.CASCADE, related_name="results")
    row_number = models.PositiveIntegerField()
    outputs = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    failed = models.BooleanField(default=False)
    attempts = models.PositiveSmallIntegerField(default=1)
    duration = models.FloatField(default=0.0, help_text="Seconds spent on the row.")
    dedupe_key = models.CharField(max_length=255, blank=True)
    reuse_key = models.CharField(
        max_length=64,
        blank=True,
        help_text="Hash of the processor, its options (secrets excluded) and the row's inputs: "
        "a later row with the same key, of the same owner, takes this answer without a request.",
    )
    reused = models.BooleanField(default=False, help_text="Answer taken from an earlier row.")
    usage = models.JSONField(
        null=True,
        blank=True,
        help_text="What the answer cost (e.g. prompt_tokens, completion_tokens, cost_usd); "
        "a reused row keeps the cost of the answer it took, which this job did not pay.",
    )
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["job", "row_number"]
        constraints = [
            models.UniqueConstraint(fields=["job", "row_number"], name="rowresult_unique_row")
        ]
        indexes = [
            models.Index(fields=["job", "failed", "row_number"], name="rowresult_failed_idx"),
            models.Index(fields=["job", "dedupe_key"], name="rowresult_dedupe_idx"),
            models.Index(fields=["job", "-updated_at"], name="rowresult_latest_idx"),
            models.Index(fields=["reuse_key"], name="rowresult_reuse_idx"),
        ]

    def __str__(self) -> str:
        return f"row {self.row_number} of job {self.job_id}"
