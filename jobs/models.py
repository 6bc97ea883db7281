"""Jobs, their event timeline, user notifications, and the worker presence table.

The Job row is the source of truth for everything a user sees: status, progress,
the handler's cursor and the lease that says which worker runs it now. Its state is
written by `jobs.engine.transitions` only, never by saving models ad hoc.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Self

from django.conf import settings
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.urls import reverse
from django.utils import timezone


class Priority(models.IntegerChoices):
    HIGH = 10, "high"
    NORMAL = 0, "normal"
    LOW = -10, "low"


def parse_priority(value: str | int | None) -> int:
    """Accept 'high' / 'normal' / 'low' or an integer (higher runs first)."""
    if value is None or value == "":
        return Priority.NORMAL
    if isinstance(value, bool):
        raise ValueError("priority must be high, normal, low or an integer")
    if isinstance(value, int):
        return value
    text = str(value).strip().lower()
    names = {label: int(v) for v, label in Priority.choices}
    if text in names:
        return names[text]
    try:
        return int(text)
    except ValueError:
        raise ValueError("priority must be high, normal, low or an integer") from None


def priority_label(value: int) -> str:
    names = {int(v): label for v, label in Priority.choices}
    return names.get(value, str(value))


class ReturnedIntegerField(models.IntegerField):
    """An integer the database computes on insert (an expression) and hands back in the
    INSERT's RETURNING clause, so reading it costs no extra query."""

    db_returning = True


def owner_field(related_name: str, **options: Any) -> models.ForeignKey:
    """The user a job, batch or schedule belongs to (none for a system one); deleting
    the user deletes their rows."""
    return models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name=related_name,
        **options,
    )


class OwnedQuerySet(models.QuerySet):
    """Rows with an `owner` (jobs, batches, schedules, sheets)."""

    def visible_to(self, user) -> Self:
        """What a user may see: their own rows; staff every row; anonymous none. Every
        page, API call, export and websocket scopes such rows through this."""
        if not user or not user.is_authenticated:
            return self.none()
        if user.is_staff:
            return self
        return self.filter(owner=user)


class JobQuerySet(OwnedQuerySet):
    def active(self) -> JobQuerySet:
        return self.filter(status__in=Job.ACTIVE)

    def claimable(self, now=None) -> JobQuerySet:
        """Jobs a worker may take now: not leased, not waiting for a retry time.

        A job already handed to the broker is claimable too: a worker that is free
        first may run it, and the broker's task then finds nothing to do.
        """
        now = now or timezone.now()
        return (
            self.filter(
                status__in=[Job.Status.QUEUED, Job.Status.RETRYING, Job.Status.RUNNING],
                lease_owner="",
                upstream_pending=0,
            )
            .filter(Q(run_after__isnull=True) | Q(run_after__lte=now))
            .exclude(held_back_condition())
        )

    def held_back(self) -> JobQuerySet:
        """Active jobs whose kind or sub-kind an operator has paused (`KindControl`)."""
        return self.filter(status__in=Job.ACTIVE).filter(held_back_condition())

    def runnable(self, now=None) -> JobQuerySet:
        """Claimable jobs not yet handed to the broker: what dispatch may enqueue."""
        return self.claimable(now).filter(dispatched_at__isnull=True)


class Batch(models.Model):
    """Jobs submitted together (several files, several sheets): one progress, one
    notification when the last of them ends, and controls that act on all of them.

    `unfinished` counts its jobs that have not ended: the transition that ends one (or
    queues it again) moves the counter in its own transaction (`jobs.engine.journal`),
    so the one that brings it to 0 notifies the owner, once, with no scan of the jobs.
    """

    owner = owner_field("job_batches")
    label = models.CharField(max_length=200, blank=True)
    job_count = models.PositiveIntegerField(default=0)
    unfinished = models.PositiveIntegerField(default=0, help_text="Jobs not yet ended.")
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(
        null=True, blank=True, help_text="When its last job ended (None while one is active)."
    )

    objects = OwnedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "batches"
        indexes = [models.Index(fields=["owner", "-created_at"], name="batch_owner_created_idx")]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("jobs:batch", args=[self.pk])

    @property
    def title(self) -> str:
        return self.label or f"Batch #{self.pk}"

    @property
    def is_finished(self) -> bool:
        return self.unfinished == 0


class Job(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        PAUSED = "paused"
        RETRYING = "retrying", "Retry waiting"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    class Request(models.TextChoices):
        NONE = "", "none"
        PAUSE = "pause"
        CANCEL = "cancel"
        # Cancel by stopping the worker that runs it (terminated and replaced): for a
        # handler that reaches no checkpoint. Its heartbeat acts on it within a beat.
        FORCE = "force", "Force stop"

    ACTIVE = (Status.QUEUED, Status.RUNNING, Status.PAUSED, Status.RETRYING)
    TERMINAL = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    kind = models.CharField(max_length=100)
    label = models.CharField(max_length=200, blank=True)
    # No index of its own: job_owner_status_idx and job_owner_created_idx start with it.
    owner = owner_field("jobs", db_index=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    priority = models.IntegerField(default=Priority.NORMAL)
    turn = ReturnedIntegerField(
        default=0,
        help_text="Active jobs its owner had when it was submitted: among jobs of equal "
        "priority, owners take turns (a user's tenth job waits behind others' first).",
    )
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)

    total = models.BigIntegerField(null=True, blank=True)
    processed = models.BigIntegerField(default=0, help_text="Units finished, failed ones included.")
    failed = models.BigIntegerField(default=0)
    worked_units = models.BigIntegerField(
        default=0,
        help_text="Units processed by doing the work (answers reused from earlier jobs "
        "apart), across retries; the rate is these over the running time.",
    )
    message = models.CharField(max_length=500, blank=True)

    subkind = models.CharField(
        max_length=100,
        blank=True,
        help_text="What its kind says the job runs (a sheet job: its processor), so that "
        "operators can pause that work alone (`KindControl`).",
    )
    entity_key = models.CharField(max_length=200, blank=True, db_index=True)
    session_key = models.CharField(max_length=200, blank=True)

    attempts = models.PositiveIntegerField(
        default=0, help_text="Attempts that ended in a transient error or a lost worker."
    )
    max_attempts = models.PositiveIntegerField(default=5)
    time_limit = models.FloatField(null=True, blank=True, help_text="Seconds of running time.")
    run_seconds = models.FloatField(default=0.0, help_text="Running time used so far.")
    run_seconds_at_retry = models.FloatField(
        default=0.0, help_text="Running time before the last retry: the time limit counts from it."
    )
    cpu_seconds = models.FloatField(default=0.0, help_text="CPU time its workers spent on it.")
    peak_rss_mb = models.FloatField(
        null=True, blank=True, help_text="Highest memory (RSS) of a worker while running it."
    )
    spent = models.JSONField(
        default=dict,
        blank=True,
        help_text="What its work cost, in its kind's own units (e.g. LLM prompt_tokens, "
        "completion_tokens, cost_usd): summed per committed batch, kept across retries.",
    )
    cursor = models.JSONField(null=True, blank=True)
    requested = models.CharField(max_length=8, choices=Request.choices, blank=True)

    lease_owner = models.CharField(max_length=200, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    run_after = models.DateTimeField(null=True, blank=True)
    upstream_pending = models.PositiveIntegerField(
        default=0, help_text="Jobs it waits for (`after`) that have not succeeded yet."
    )
    has_dependents = models.BooleanField(
        default=False, help_text="Other jobs wait for this one: settle them when it ends."
    )
    schedule = models.ForeignKey(
        "jobs.Schedule",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="runs",
        help_text="The schedule that started it (a scheduled or run-now run).",
        db_index=False,  # job_unique_schedule_run starts with it
    )
    scheduled_for = models.DateTimeField(
        null=True, blank=True, help_text="The due time of the schedule this job is the run of."
    )
    batch = models.ForeignKey(
        Batch,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="jobs",
        help_text="The batch it was submitted in: notified with it, not on its own.",
    )

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True, db_index=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        # Only what queries need: each claim and finish rewrites a job's index entries
        # (on PostgreSQL all of them), and no index holds a column that a batch's commit
        # writes (progress, lease, heartbeat), so those updates touch no index at all.
        # Recovery finds expired leases through job_turns_idx (few jobs are running).
        indexes = [
            models.Index(
                fields=["status", "-priority", "turn", "created_at"], name="job_turns_idx"
            ),
            models.Index(fields=["owner", "status"], name="job_owner_status_idx"),
            models.Index(fields=["owner", "-created_at"], name="job_owner_created_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "kind", "entity_key"],
                condition=Q(status__in=["queued", "running", "paused", "retrying"])
                & ~Q(entity_key=""),
                name="job_unique_active_entity",
            ),
            models.UniqueConstraint(
                fields=["owner", "kind", "session_key"],
                condition=Q(status__in=["queued", "running", "paused", "retrying"])
                & ~Q(session_key=""),
                name="job_unique_active_session",
            ),
            # One job per due time of a schedule, however many workers claim it.
            models.UniqueConstraint(
                fields=["schedule", "scheduled_for"], name="job_unique_schedule_run"
            ),
        ]

    def __str__(self) -> str:
        return f"Job #{self.pk} {self.kind} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse("jobs:detail", args=[self.pk])

    @property
    def entity_name(self) -> str:
        """What the job works on, in a word ("sheet" for "sheet:12")."""
        return self.entity_key.partition(":")[0]

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def is_terminal(self) -> bool:
        return self.status in self.TERMINAL

    @property
    def percent(self) -> int | None:
        if not self.total:
            return 100 if self.status == self.Status.SUCCEEDED else None
        return min(100, int(self.processed * 100 / self.total))

    @property
    def succeeded_count(self) -> int:
        return self.processed - self.failed

    @property
    def priority_label(self) -> str:
        return priority_label(self.priority)

    @property
    def title(self) -> str:
        return self.label or f"{self.kind} #{self.pk}"

    @property
    def duration_seconds(self) -> float | None:
        if not self.started_at:
            return None
        end = self.finished_at or timezone.now()
        return (end - self.started_at).total_seconds()

    @property
    def rate(self) -> float | None:
        """Units worked per second of running time (not wall time: pauses don't count;
        units reused from earlier jobs came at no time, so they don't count either)."""
        if self.run_seconds < 0.5 or not self.worked_units:
            return None
        return self.worked_units / self.run_seconds

    @property
    def eta_seconds(self) -> float | None:
        rate = self.rate
        if not rate or self.total is None or self.status != self.Status.RUNNING:
            return None
        return max(0.0, (self.total - self.processed) / rate)


class JobDependency(models.Model):
    """`job` runs only after `depends_on` succeeded (and is cancelled if it does not);
    with `any_outcome` (`after_any`), after it ended, whatever the outcome."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="upstream_links")
    depends_on = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="downstream_links")
    any_outcome = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "depends_on"], name="jobdependency_unique")
        ]
        indexes = [models.Index(fields=["depends_on", "job"], name="jobdependency_up_idx")]

    def __str__(self) -> str:
        return f"job {self.job_id} after job {self.depends_on_id}"


_now = timezone.now  # `Schedule.timezone` is a field: the module is out of reach in its body


class ScheduleQuerySet(OwnedQuerySet):
    def due(self, now) -> ScheduleQuerySet:
        """Enabled schedules whose next run is due (one range scan of `schedule_due_idx`)."""
        return self.filter(enabled=True, next_run_at__lte=now)


class Schedule(models.Model):
    """A job submitted again and again: on a cron expression or every N seconds.

    Each run is a Job with `schedule` and `scheduled_for` (its due time). Workers claim a
    due time by moving `next_run_at` on with a conditional UPDATE, so one run starts per
    due time however many clusters look. Written by `jobs.schedules.services` only.
    """

    class Overlap(models.TextChoices):
        SKIP = "skip", "skip while the previous run is active"
        QUEUE = "queue", "queue another run"

    owner = owner_field("job_schedules")
    name = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=100)
    params = models.JSONField(default=dict, blank=True, help_text="Secrets sealed.")
    priority = models.IntegerField(default=Priority.NORMAL)
    cron = models.CharField(max_length=200, blank=True, help_text="5-field cron expression.")
    every_seconds = models.PositiveIntegerField(null=True, blank=True)
    timezone = models.CharField(max_length=64, default="UTC", help_text="IANA time zone.")
    overlap = models.CharField(max_length=8, choices=Overlap.choices, default=Overlap.SKIP)
    enabled = models.BooleanField(default=True, help_text="False: paused.")
    paused_reason = models.CharField(
        max_length=200,
        blank=True,
        help_text="Why the system paused it (e.g. its owner was deactivated); empty if a "
        "person paused it or it runs.",
    )
    next_run_at = models.DateTimeField(null=True, blank=True, help_text="None while paused.")
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_job = models.ForeignKey(
        Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    run_count = models.PositiveIntegerField(default=0)
    last_skipped_at = models.DateTimeField(null=True, blank=True)
    skipped_count = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, help_text="Why the last due run was not started.")
    created_at = models.DateTimeField(default=_now)
    updated_at = models.DateTimeField(default=_now)

    objects = ScheduleQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]
        indexes = [
            # Paused schedules have no next run: the due query is a range scan of this.
            models.Index(fields=["next_run_at"], name="schedule_due_idx"),
            models.Index(fields=["owner", "name"], name="schedule_owner_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=(Q(every_seconds__isnull=True) & ~Q(cron=""))
                | (Q(every_seconds__isnull=False) & Q(cron="")),
                name="schedule_cron_xor_every",
            )
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def title(self) -> str:
        return self.name or f"{self.kind} schedule #{self.pk}"

    @property
    def when(self) -> str:
        """How it recurs, in words: "every 10 min" or "0 7 * * * (Europe/Paris)"."""
        if self.every_seconds is None:
            return f"{self.cron} ({self.timezone})"
        seconds = self.every_seconds
        for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
            if seconds % size == 0:
                return f"every {seconds // size} {unit}"
        return f"every {seconds} s"

    @property
    def priority_label(self) -> str:
        return priority_label(self.priority)


def held_back_condition() -> Exists:
    """The condition "an operator paused this job's kind or sub-kind": a look-up of the
    few `KindControl` rows by their unique name, so that every query of claimable jobs
    (and the claim itself, `jobs.engine.sql`) sees a pause the moment it commits."""
    paused = KindControl.objects.filter(paused_at__isnull=False)
    return Exists(
        paused.filter(Q(name=OuterRef("kind")) | Q(name=OuterRef("subkind"))).exclude(name="")
    )


class KindControl(models.Model):
    """An operator's hold on a job kind, a Tasks queue (its kind, `tasks.<queue>`) or a
    sub-kind (a sheet processor such as `llm`): paused since/by/why, and a concurrency
    cap set at run time. One row per name; no row means running with the default cap.
    Written by `jobs.engine.controls` only."""

    name = models.CharField(max_length=100, unique=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    paused_by = models.CharField(max_length=150, blank=True)
    reason = models.CharField(max_length=500, blank=True)
    cap = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="At most this many of its jobs run at once, on all clusters (none: the "
        "kind's default).",
    )
    updated_at = models.DateTimeField(default=timezone.now)
    updated_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_paused(self) -> bool:
        return self.paused_at is not None


class JobEvent(models.Model):
    """Append-only timeline of a job: transitions, log lines, throttled progress."""

    class Kind(models.TextChoices):
        STATE = "state"
        LOG = "log"
        PROGRESS = "progress"
        ERROR = "error"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    status = models.CharField(max_length=16, blank=True, help_text="New status for state events.")
    message = models.TextField(blank=True)
    data = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["job", "id"], name="jobevent_job_idx")]

    def __str__(self) -> str:
        return f"{self.at:%H:%M:%S} {self.kind} {self.status} {self.message}"[:120]


class Notification(models.Model):
    """One per terminal transition of a user's job (or, for the jobs of a batch, one
    when the batch's last job ends); unread until seen. `shown_at`: when a page of the
    user showed it (a toast on an open page, or the next page's "while you were away")."""

    class Level(models.TextChoices):
        SUCCESS = "success"
        ERROR = "error"
        INFO = "info"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="job_notifications"
    )
    job = models.ForeignKey(Job, null=True, on_delete=models.CASCADE, related_name="notifications")
    batch = models.ForeignKey(
        Batch, null=True, blank=True, on_delete=models.CASCADE, related_name="notifications"
    )
    level = models.CharField(max_length=8, choices=Level.choices, default=Level.INFO)
    message = models.CharField(max_length=500)
    url = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    read_at = models.DateTimeField(null=True, blank=True)
    shown_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["user", "read_at"], name="notification_unread_idx")]

    def __str__(self) -> str:
        return self.message


def worker_stale_after() -> timedelta:
    """A worker whose heartbeat is older than this is presumed gone."""
    return timedelta(seconds=max(5.0, settings.CONVEYOR_HEARTBEAT_SECONDS * 5))


class WorkerQuerySet(models.QuerySet):
    def alive(self, now=None) -> WorkerQuerySet:
        return self.filter(last_seen_at__gte=(now or timezone.now()) - worker_stale_after())


class Worker(models.Model):
    """A live django-q2 worker process, kept fresh by its heartbeat thread.

    Dispatch sizes the broker queue by the workers seen here; `/healthz` and the
    metrics page read it to tell whether a cluster is alive.
    """

    name = models.CharField(max_length=200, primary_key=True, help_text="host:pid")
    host = models.CharField(max_length=200)
    pid = models.IntegerField()
    cluster = models.CharField(max_length=200, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now, db_index=True)
    current_job_id = models.BigIntegerField(null=True, blank=True)
    rss_mb = models.FloatField(null=True, blank=True, help_text="Memory (RSS) at the last beat.")

    objects = WorkerQuerySet.as_manager()

    def __str__(self) -> str:
        return self.name

    @property
    def is_alive(self) -> bool:
        return self.last_seen_at >= timezone.now() - worker_stale_after()


class JobChange(models.Model):
    """Change feed for the live relay on SQLite (PostgreSQL uses LISTEN/NOTIFY).

    One row per committed change of a job; SQLite serialises writers, so ids appear
    in commit order and the relay can read `id > last` without missing any.
    """

    job_id = models.BigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"change {self.pk} of job {self.job_id}"


class DemoUnit(models.Model):
    """One unit counted by the demo job kind (`jobs/demo.py`).

    Deliberately without a unique constraint: tests count rows per unit to prove that
    crash recovery records every unit exactly once.
    """

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="demo_units")
    number = models.IntegerField()
    worker = models.CharField(max_length=200)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["job", "number"], name="demounit_job_idx")]

    def __str__(self) -> str:
        return f"unit {self.number} of job {self.job_id}"


class ApiToken(models.Model):
    """A secret that lets a script call `/api/` as its user (`Authorization: Bearer ...`).

    Only the sha256 digest of the secret is stored; `prefix` (its first characters) is
    kept in clear so a listing can name the token and `conveyor_token revoke` find it.
    Created and revoked through `jobs.api.auth`, never by saving rows ad hoc.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, db_index=True)
    digest = models.CharField(max_length=64, unique=True, help_text="sha256 of the secret, hex.")
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name or 'unnamed'})"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class FailedJob(Job):
    """Failed jobs only: the admin's one-click list of failures (like django-q2's Failure)."""

    class Meta:
        proxy = True
        verbose_name = "failed job"
        verbose_name_plural = "failed jobs"


class KindStat(models.Model):
    """What jobs of one kind did in one interval: the history the metrics page charts
    over 30 days and Prometheus exports (jobs/history/). One row per (period, start,
    kind), written by the upkeep's roll-up as jobs finish; `total` rows (start at the
    epoch) only ever grow, for Prometheus' counters and histograms. Durations and queue
    waits are kept as histograms (`HISTOGRAM_BOUNDS` seconds, then +Inf), so p50/p95 come
    from counts that add up across intervals and nothing grows with the number of jobs."""

    class Period(models.TextChoices):
        MINUTE = "minute"
        HOUR = "hour"
        DAY = "day"
        TOTAL = "total"

    period = models.CharField(max_length=6, choices=Period.choices)
    start = models.DateTimeField()
    kind = models.CharField(max_length=100)
    succeeded = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    cancelled = models.PositiveIntegerField(default=0)
    rows_processed = models.BigIntegerField(default=0)
    rows_failed = models.BigIntegerField(default=0)
    tokens = models.BigIntegerField(default=0, help_text="LLM prompt + completion tokens.")
    cost_usd = models.FloatField(default=0.0)
    duration = models.JSONField(default=list, help_text="Run-time histogram: counts per bound.")
    duration_sum = models.FloatField(default=0.0)
    wait = models.JSONField(default=list, help_text="Queue-wait histogram: counts per bound.")
    wait_sum = models.FloatField(default=0.0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["period", "start", "kind"], name="kindstat_unique")
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.period} {self.start:%Y-%m-%d %H:%M}"


class HistoryMark(models.Model):
    """How far the roll-up has read finished jobs (one row): each roll-up moves it
    forward with a compare-and-set, so two workers never count the same jobs."""

    rolled_to = models.DateTimeField()

    def __str__(self) -> str:
        return f"history rolled up to {self.rolled_to:%Y-%m-%d %H:%M:%S}"


class SharedState(models.Model):
    """A small state several worker processes change together, one transaction at a time
    (`jobs.engine.shared_state`): the processors' pacing schedules and breakers
    (sheets/processors/pacing.py) where the deployment has no Redis."""

    key = models.CharField(max_length=100, primary_key=True)
    state = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    def __str__(self) -> str:
        return self.key


from jobs.notice_models import BatchCallback, Webhook, WebhookDelivery  # noqa: E402, F401
