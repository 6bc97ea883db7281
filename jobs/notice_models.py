"""Out-of-app notices: webhook endpoints (and e-mail opt-ins) and their delivery log.

Imported by `jobs.models` (so `from jobs.models import Webhook` works); the journal
writes `WebhookDelivery` rows in the transaction that ends a job or a batch, and
`jobs.notices` sends them (see its docstring for how and why there).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

EVENTS = ("job.succeeded", "job.failed", "job.cancelled", "batch.finished", "schedule.failed")


class Webhook(models.Model):
    """Where a user's (or, without an owner, every job's: the operator's) events go.

    A `webhook` channel POSTs signed JSON to `url`; an `email` channel (one per user)
    mails the owner. `events` is stored as ",job.failed,job.succeeded," so that the
    journal matches it with one LIKE in SQL. `secret` signs the deliveries: sealed
    (Fernet, like job secrets), shown once when created. `failures` counts consecutive
    failed deliveries; at CONVEYOR_WEBHOOK_DISABLE_AFTER the hook is switched off
    (`active`) with the reason, and its owner notified."""

    class Channel(models.TextChoices):
        WEBHOOK = "webhook"
        EMAIL = "email"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="webhooks",
        help_text="Empty: the operator's, called for every user's jobs.",
    )
    channel = models.CharField(max_length=8, choices=Channel.choices, default=Channel.WEBHOOK)
    url = models.URLField(max_length=2000, blank=True)
    events = models.CharField(max_length=200)
    secret = models.TextField(blank=True, editable=False)
    active = models.BooleanField(default=True)
    failures = models.PositiveIntegerField(default=0, help_text="Consecutive failed deliveries.")
    disabled_reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["owner", "channel"], name="webhook_owner_idx")]

    def __str__(self) -> str:
        return self.url or f"e-mail to {self.owner}"

    @property
    def event_list(self) -> list[str]:
        return [event for event in EVENTS if f",{event}," in self.events]

    @staticmethod
    def stored_events(events: list[str]) -> str:
        return "," + ",".join(sorted(set(events))) + ","


class WebhookDelivery(models.Model):
    """One event for one webhook: pending until sent (2xx) or given up after
    CONVEYOR_WEBHOOK_ATTEMPTS tries. `body` is frozen at the first try, so retries send
    the same JSON (with a new signature time). `claimed_until`: a sender holds it until
    then (two workers never send one delivery at once; a dead sender's claim expires).
    Job and batch are plain ids: a delivery outlives a pruned job, and costs its delete
    nothing."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=32)
    job_id = models.BigIntegerField(null=True, blank=True)
    batch_id = models.BigIntegerField(null=True, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    claimed_until = models.DateTimeField(null=True, blank=True)
    response_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    body = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    attempted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="delivery_due_idx"),
            models.Index(fields=["webhook", "-id"], name="delivery_log_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event} → {self.webhook} ({self.status})"


class BatchCallback(models.Model):
    """A batch's `on_complete`: the job spec submitted once the batch has ended, whatever
    the outcome (by the upkeep, `jobs.notices.submit_batch_callbacks`), the outcome in
    its params. `job_id` is set when it was submitted (once, even if a job of the batch
    is retried later)."""

    batch = models.OneToOneField("jobs.Batch", on_delete=models.CASCADE, related_name="callback")
    spec = models.JSONField()
    job_id = models.BigIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"on_complete of batch #{self.batch_id}"
