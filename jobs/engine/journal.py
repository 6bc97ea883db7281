"""What a transition leaves behind, written inside its transaction: timeline events,
the owner's notification, the count of its batch's unfinished jobs (and the batch's one
notification when that reaches 0), and the announcement that the job changed.

Announcing is `pg_notify` on PostgreSQL (delivered only if the transaction commits) or
a row in the `JobChange` feed that the SQLite relay polls: either way the live relay
learns of a change only once it is committed, so pages never show uncommitted work.
Each helper takes several jobs at once so that a transaction touching two jobs (one
finishing, the next starting on the same worker) still costs one statement each.
"""

from __future__ import annotations

import functools
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from django.db import connection
from django.db.models import Count
from django.urls import reverse
from django.utils import timezone

from jobs.models import Batch, Job, JobChange, JobEvent, Notification, Webhook, WebhookDelivery

CHANNEL = "conveyor_jobs"
MAX_MESSAGE = 5000
# A journal up to this many rows is one statement on PostgreSQL (a transition writes a
# few; cancelling a long chain of dependents, many, kept below the parameter limit).
ONE_STATEMENT_ROWS = 200


@dataclass
class Event:
    """A timeline entry waiting to be written with its transition."""

    job_id: int
    kind: str
    message: str = ""
    status: str = ""
    data: dict[str, Any] | None = None
    at: Any = field(default_factory=timezone.now)

    def values(self, connection) -> tuple:
        """The row's values in `EVENT_COLUMNS` order, as the database takes them."""
        at = JobEvent._meta.get_field("at").get_db_prep_save(self.at, connection)
        data = None if self.data is None else json.dumps(self.data)
        return (self.job_id, at, self.kind, self.status, self.message[:MAX_MESSAGE], data)


EVENT_COLUMNS = ("job_id", "at", "kind", "status", "message", "data")


@dataclass
class Rows:
    """Rows for one table, as the database takes them, written by one INSERT."""

    table: str
    columns: tuple[str, ...]
    values: list[tuple]

    def sql(self, count: int = 1) -> str:
        """The INSERT of `count` rows (compiled once per shape)."""
        return _insert_sql(connection.vendor, self.table, self.columns, count)

    def write(self) -> None:
        """One row with `execute`: psycopg runs `executemany` in pipeline mode, an extra
        round trip for the usual single event."""
        with connection.cursor() as cursor:
            if len(self.values) == 1:
                cursor.execute(self.sql(), self.values[0])
            else:
                cursor.executemany(self.sql(), self.values)


@functools.lru_cache(maxsize=256)
def _insert_sql(vendor: str, table: str, columns: tuple[str, ...], count: int) -> str:
    quote = connection.ops.quote_name
    names = ", ".join(quote(column) for column in columns)
    row = f"({', '.join(['%s'] * len(columns))})"
    return f"INSERT INTO {quote(table)} ({names}) VALUES {', '.join([row] * count)}"


def event_of_inserted_job_sql(source: str) -> str:
    """INSERT of one event per row of the CTE `source` (its `id` is the job's): its
    parameters are `Event.values()` without the first (the job id)."""
    quote = connection.ops.quote_name
    names = ", ".join(quote(column) for column in EVENT_COLUMNS)
    return (
        f"INSERT INTO {quote(JobEvent._meta.db_table)} ({names}) "
        f"SELECT {source}.id, %s, %s, %s, %s, %s FROM {source}"
    )


def _event_rows(events: list[Event] | tuple[Event, ...]) -> Rows:
    values = [event.values(connection) for event in events]
    return Rows(JobEvent._meta.db_table, EVENT_COLUMNS, values)


def write_events(*events: Event) -> None:
    """All events in one prepared INSERT: every transition writes some, and the ORM
    would build a model and compile the statement each time (bench engine)."""
    if events:
        _event_rows(events).write()


def record_event(
    job_id: int, kind: str, message: str = "", *, status: str = "", data: dict | None = None
) -> None:
    write_events(Event(job_id, kind, message, status, data))


def notification(owner_id: int, job_id: int, level: str, message: str) -> Notification:
    return Notification(
        user_id=owner_id,
        job_id=job_id,
        level=level,
        message=message[:500],
        url=_job_url_pattern().replace(_SOME_ID, str(job_id)),
    )


_SOME_ID = "918273645"


@functools.cache
def _job_url_pattern() -> str:
    """The job page's URL with a placeholder id: `reverse` once per process, not in
    every transaction that finishes a job."""
    return reverse("jobs:detail", args=[int(_SOME_ID)])


# The webhook (and e-mail) event of a job that ended in this status.
JOB_EVENTS = {
    Job.Status.SUCCEEDED: "job.succeeded",
    Job.Status.FAILED: "job.failed",
    Job.Status.CANCELLED: "job.cancelled",
}


@dataclass(frozen=True)
class Notice:
    """An event for the webhooks (and e-mail opt-ins) that subscribe to it: written as
    pending `WebhookDelivery` rows by one INSERT ... SELECT over the matching hooks, in
    the transition's transaction, and sent later by `jobs.notices` (never by the worker
    that ended the job). `mail`: False for the jobs of a batch (their batch's
    `batch.finished` is the one e-mail, as with notifications)."""

    event: str
    owner_id: int | None
    job_id: int | None = None
    batch_id: int | None = None
    mail: bool = True


# How long a process trusts what it last read about active webhooks: a webhook created
# in another process gets events within this time (this process: at once).
HOOKS_CHECK_SECONDS = 1.0


class _Hooks:
    known: bool | None = None
    checked_at = 0.0


def hooks_exist() -> bool:
    """Whether any webhook (or e-mail opt-in) is active, read at most once a second a
    process: with none, a transition writes no notice statement (SQLite has no way to
    fold it into another)."""
    now = time.monotonic()
    if _Hooks.known is None or now - _Hooks.checked_at > HOOKS_CHECK_SECONDS:
        _Hooks.known = Webhook.objects.filter(active=True).exists()
        _Hooks.checked_at = now
    return _Hooks.known


def hooks_changed() -> None:
    """A webhook was added or enabled in this process: read again at the next notice."""
    _Hooks.known = None


def _notice_rows(notices: list[Notice]) -> tuple[str, list]:
    """One INSERT ... SELECT (UNION ALL per notice) of the deliveries the notices make:
    no row, and no round trip of its own on PostgreSQL, when nobody subscribes."""
    quote = connection.ops.quote_name
    hooks = quote(Webhook._meta.db_table)
    now = WebhookDelivery._meta.get_field("created_at").get_db_prep_save(timezone.now(), connection)
    columns = ", ".join(
        quote(name)
        for name in (
            "webhook_id", "event", "job_id", "batch_id", "status", "attempts",
            "next_attempt_at", "created_at", "error", "body",
        )
    )  # fmt: skip
    selects, params = [], []
    for notice in notices:
        email_too = "" if notice.mail else f" AND w.channel = '{Webhook.Channel.WEBHOOK}'"
        selects.append(
            f"SELECT w.id, %s, CAST(%s AS BIGINT), CAST(%s AS BIGINT), "
            f"'{WebhookDelivery.Status.PENDING}', 0, %s, %s, '', '' "
            f"FROM {hooks} w WHERE w.active AND (w.owner_id = %s OR w.owner_id IS NULL) "
            f"AND w.events LIKE %s{email_too}"
        )
        params += [notice.event, notice.job_id, notice.batch_id, now, now, notice.owner_id]
        params.append(f"%,{notice.event},%")
    table = quote(WebhookDelivery._meta.db_table)
    return f"INSERT INTO {table} ({columns}) {' UNION ALL '.join(selects)}", params


def notify(owner_id: int | None, job_id: int, level: str, message: str) -> None:
    """The owner's notification for a job that finished (none for ownerless jobs)."""
    if owner_id:
        write_notifications(notification(owner_id, job_id, level, message))


def write_notifications(*notifications: Notification) -> None:
    """One prepared INSERT, like `write_events` (most finished jobs write one)."""
    if notifications:
        _notification_rows(notifications).write()


def _notification_rows(notifications: list[Notification] | tuple[Notification, ...]) -> Rows:
    fields = _notification_fields()
    values = [
        tuple(field.get_db_prep_save(getattr(note, field.attname), connection) for field in fields)
        for note in notifications
    ]
    return Rows(Notification._meta.db_table, tuple(field.column for field in fields), values)


@functools.cache
def _notification_fields() -> tuple:
    return tuple(field for field in Notification._meta.concrete_fields if not field.primary_key)


class Journal:
    """Events, notifications and announcements collected during one transaction and
    written at its end, one statement per table, however many jobs it touched."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.notifications: list[Notification] = []
        self.job_ids: list[int] = []
        self.batches: Counter[int] = Counter()  # batch id -> its jobs that ended here
        self.notices: list[Notice] = []

    def event(self, job_id: int, kind: str, message: str = "", status: str = "", **kw) -> None:
        self.events.append(Event(job_id, kind, message, status, **kw))

    def notify(
        self, owner_id: int | None, job_id: int, level: str, message: str, batch_id=None
    ) -> None:
        """The owner's notification of a job that ended; a job of a batch has none of its
        own (its batch gets one when its last job ends: `ended`)."""
        if owner_id and not batch_id:
            self.notifications.append(notification(owner_id, job_id, level, message))

    def ended(self, batch_id: int | None, count: int = 1) -> None:
        """A job of the batch ended (`count` -1: a job that had ended was queued again)."""
        if batch_id:
            self.batches[batch_id] += count

    def job_ended(
        self,
        job_id: int,
        owner_id: int | None,
        status: str,
        batch_id: int | None = None,
        schedule_id: int | None = None,
    ) -> None:
        """The job's webhook events (`job.<status>`, and `schedule.failed` for a failed
        run of a schedule)."""
        if event := JOB_EVENTS.get(status):
            self.notices.append(Notice(event, owner_id, job_id=job_id, mail=not batch_id))
        if status == Job.Status.FAILED and schedule_id:
            self.notices.append(Notice("schedule.failed", owner_id, job_id=job_id))

    def changed(self, *job_ids: int) -> None:
        self.job_ids += [job_id for job_id in job_ids if job_id not in self.job_ids]

    def flush(self) -> None:
        for batch_id, count in sorted(self.batches.items()):
            if count:
                self.notifications += settle_batch(batch_id, count, self.notices)
        if self.notices and not hooks_exist():
            self.notices = []
        rows = len(self.events) + len(self.notifications) + len(self.job_ids)
        rows += len(self.notices)
        if connection.vendor == "postgresql" and rows <= ONE_STATEMENT_ROWS:
            _write_in_one_statement(self.events, self.notifications, self.job_ids, self.notices)
        else:
            write_events(*self.events)
            write_notifications(*self.notifications)
            write_notices(self.notices)
            announce(*self.job_ids)
        self.events, self.notifications, self.job_ids, self.notices = [], [], [], []
        self.batches = Counter()


def write_notices(notices: list[Notice]) -> None:
    if notices:
        statement, params = _notice_rows(notices)
        with connection.cursor() as cursor:
            cursor.execute(statement, params)


def _write_in_one_statement(
    events: list[Event],
    notifications: list[Notification],
    job_ids: list[int],
    notices: list[Notice] | None = None,
) -> None:
    """PostgreSQL: the INSERTs as data-modifying CTEs of the `pg_notify` query, so that
    a transition's journal is one round trip, not three (each waits for a server
    process that shares the CPUs with the workers)."""
    inserts = [_event_rows(events)] if events else []
    inserts += [_notification_rows(notifications)] if notifications else []
    if not (inserts or job_ids or notices):
        return
    parts = [f"w{index} AS ({rows.sql(len(rows.values))})" for index, rows in enumerate(inserts)]
    params = [value for rows in inserts for row in rows.values for value in row]
    if notices:
        statement, notice_params = _notice_rows(notices)
        parts.append(f"wn AS ({statement})")
        params += notice_params
    calls = ", ".join(["pg_notify(%s, %s)"] * len(job_ids)) or "1"
    params += [value for job_id in job_ids for value in (CHANNEL, str(job_id))]
    prefix = f"WITH {', '.join(parts)} " if parts else ""
    with connection.cursor() as cursor:
        cursor.execute(f"{prefix}SELECT {calls}", params)


def settle_batch(
    batch_id: int, ended: int, notices: list[Notice] | None = None
) -> list[Notification]:
    """Count `ended` jobs of the batch as ended (negative: queued again) in one UPDATE
    ... RETURNING, which takes the batch row's lock: of concurrent transactions ending its
    last jobs, exactly one sees 0 and returns the batch's one notification (and adds its
    `batch.finished` notice to `notices`)."""
    table = connection.ops.quote_name(Batch._meta.db_table)
    larger = "MAX" if connection.vendor == "sqlite" else "GREATEST"
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET unfinished = {larger}(unfinished - %s, 0) "
            "WHERE id = %s RETURNING unfinished, owner_id",
            [ended, batch_id],
        )
        found = cursor.fetchone()
    if found is None:
        return []
    unfinished, owner_id = found
    if ended < 0:
        Batch.objects.filter(pk=batch_id).update(finished_at=None)
        return []
    if unfinished:
        return []
    Batch.objects.filter(pk=batch_id).update(finished_at=timezone.now())
    if notices is not None:
        notices.append(Notice("batch.finished", owner_id, batch_id=batch_id))
    return [batch_notification(batch_id, owner_id)] if owner_id else []


def batch_notification(batch_id: int, owner_id: int) -> Notification:
    """ "<batch> finished: 3 succeeded, 1 failed" (the one query of the batch's jobs)."""
    batch = Batch.objects.get(pk=batch_id)
    counts = dict(
        Job.objects.filter(batch_id=batch_id)
        .values_list("status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    parts = [f"{counts[s]} {s}" for s in Job.TERMINAL if counts.get(s)]
    ok = set(counts) <= {Job.Status.SUCCEEDED}
    return Notification(
        user_id=owner_id,
        batch_id=batch_id,
        level=Notification.Level.SUCCESS if ok else Notification.Level.ERROR,
        message=f"{batch.title} finished: {', '.join(parts) or 'no jobs'}"[:500],
        url=reverse("jobs:batch", args=[batch_id]),
    )


def announce(*job_ids: int) -> None:
    """Tell the live relays these jobs changed, once the transaction commits."""
    if not job_ids:
        return
    if connection.vendor == "postgresql":
        calls = ", ".join(["pg_notify(%s, %s)"] * len(job_ids))
        params = [value for job_id in job_ids for value in (CHANNEL, str(job_id))]
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {calls}", params)
    else:
        at = JobChange._meta.get_field("created_at").get_db_prep_save(timezone.now(), connection)
        values = [(job_id, at) for job_id in job_ids]
        Rows(JobChange._meta.db_table, ("job_id", "created_at"), values).write()
